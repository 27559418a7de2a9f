"""Choosing `charrnn train`'s defaults and its time-budget plan: candidate configurations, each run
as a user runs `charrnn train TEXT --time-budget S` with the candidate's flags.

    python benchmarks/defaults.py TEXT_FILE [TEXT_FILE ...] [--budget 900] [--jobs 2] [--threads 1]
        [--candidates "rnn-256" "gru-512-d0.1" ...] [--out runs/defaults]
    python benchmarks/defaults.py TEXT ... --budget 300 --jobs 1 --threads 0 --candidates SCREEN   # the search's screen
    python benchmarks/defaults.py --build-code-corpus code.txt   # the second corpus, built offline

Every candidate is `charrnn train TEXT --time-budget BUDGET` with its own flags: the time-budget
plan (train/plan.py) with the candidate's settings given, so that the plan chooses only what a
candidate leaves open (the `plan` candidate gives nothing: the plan's own choice); validation
about 20 times, early stopping after 5 without a new best. Candidates run `--jobs` at a time,
`--threads` cores each (1: one core each, so that on a machine with at least that many cores each
has one to itself; 0: charrnn's default, every usable core, as the goals are stated). The score is
`charrnn eval` of the run's `best.safetensors` over the whole held-out last tenth of the text,
beside the best validation the run logged. `SCREEN` stands for the search's screening candidates
(every cell, widths 256-1024, depths 1-3, dropout, batch and window, learning rate and warm-up,
weight decay, the stack options); `FIRST_ROUND` for the first round of the defaults measurement.

The code corpus: the `.py` files of this interpreter's standard library outside test folders,
sorted by path and concatenated until 3,000,000 characters (UTF-8), each preceded by a line naming
it; it differs slightly between Python versions, which the output names.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# name -> flags; the first is the command line's default at the time of writing.
CANDIDATES: dict[str, list[str]] = {
    "rnn-256": ["--cell", "rnn", "--hidden-size", "256"],
    "lstm-256-pt": ["--cell", "lstm", "--hidden-size", "256", "--init", "pytorch"],
    "lstm-512-d0.1-pt": ["--cell", "lstm", "--hidden-size", "512", "--dropout", "0.1", "--lr", "2e-3", "--init", "pytorch"],
    "gru-256": ["--cell", "gru", "--hidden-size", "256"],
    "gru-384-d0.1": ["--cell", "gru", "--hidden-size", "384", "--dropout", "0.1"],
    "gru-512-d0.1": ["--cell", "gru", "--hidden-size", "512", "--dropout", "0.1", "--lr", "2e-3"],
    "gru-512-d0.1-pt": ["--cell", "gru", "--hidden-size", "512", "--dropout", "0.1", "--lr", "2e-3", "--init", "pytorch"],
    "lstm-2x256-d0.1-pt": ["--cell", "lstm", "--num-layers", "2", "--hidden-size", "256", "--dropout", "0.1", "--init", "pytorch"],
    # the second round: the init, the learning rate, the batch and a wider LSTM around the first round's best
    "lstm-256": ["--cell", "lstm", "--hidden-size", "256"],
    "gru-256-pt": ["--cell", "gru", "--hidden-size", "256", "--init", "pytorch"],
    "lstm-384-pt": ["--cell", "lstm", "--hidden-size", "384", "--init", "pytorch"],
    "lstm-384-d0.1-pt": ["--cell", "lstm", "--hidden-size", "384", "--dropout", "0.1", "--init", "pytorch"],
    "lstm-256-pt-lr2e-3": ["--cell", "lstm", "--hidden-size", "256", "--init", "pytorch", "--lr", "2e-3"],
    "lstm-256-pt-lr5e-3": ["--cell", "lstm", "--hidden-size", "256", "--init", "pytorch", "--lr", "5e-3"],
    "lstm-256-pt-b64": ["--cell", "lstm", "--hidden-size", "256", "--init", "pytorch", "--batch-size", "64"],
}
FIRST_ROUND = list(CANDIDATES)[:8]
CODE_CORPUS_CHARS = 3_000_000


def _c(cell: str, layers: int, hidden: int, dropout: float, lr: float, *extra: str) -> list[str]:
    return ["--cell", cell, "--num-layers", str(layers), "--hidden-size", str(hidden), "--dropout", str(dropout),
            "--lr", str(lr), *extra]


# The recipe search's screen: each a whole model and optimisation, so that the plan chooses only
# the run's length; "plan" gives nothing and trains what the plan chooses.
SCREEN: dict[str, list[str]] = {
    "plan": [],
    "lstm-256-d0.1": _c("lstm", 1, 256, 0.1, 5e-3),
    "lstm-512-d0.1": _c("lstm", 1, 512, 0.1, 3e-3),
    "lstm-512-d0.2": _c("lstm", 1, 512, 0.2, 3e-3),
    "lstm-512-d0.2-t128": _c("lstm", 1, 512, 0.2, 3e-3, "--seq-len", "128"),
    "lstm-512-d0.2-b64": _c("lstm", 1, 512, 0.2, 3e-3, "--batch-size", "64"),
    "lstm-512-d0.2-lr2e-3-wu200": _c("lstm", 1, 512, 0.2, 2e-3, "--warmup-steps", "200"),
    "lstm-512-d0.2-adamw-wd0.1": _c("lstm", 1, 512, 0.2, 3e-3, "--optimizer", "adamw", "--weight-decay", "0.1"),
    "lstm-768-d0.2": _c("lstm", 1, 768, 0.2, 2e-3),
    "lstm-1024-d0.3": _c("lstm", 1, 1024, 0.3, 2e-3),
    "lstm-2x384-d0.2": _c("lstm", 2, 384, 0.2, 3e-3),
    "lstm-2x512-d0.2": _c("lstm", 2, 512, 0.2, 2e-3),
    "lstm-2x512-d0.2-res-ln": _c("lstm", 2, 512, 0.2, 2e-3, "--residual", "--layer-norm"),
    "lstm-3x512-d0.2-res-ln": _c("lstm", 3, 512, 0.2, 2e-3, "--residual", "--layer-norm"),
    "gru-512-d0.2": _c("gru", 1, 512, 0.2, 2e-3),
    "gru-2x512-d0.2": _c("gru", 2, 512, 0.2, 2e-3),
    "mingru-3x512-d0.1-res-ln": _c("mingru", 3, 512, 0.1, 3e-3, "--residual", "--layer-norm"),
    "mingru-3x768-d0.2-res-ln": _c("mingru", 3, 768, 0.2, 2e-3, "--residual", "--layer-norm"),
    "minlstm-3x512-d0.1-res-ln": _c("minlstm", 3, 512, 0.1, 3e-3, "--residual", "--layer-norm"),
    "minlstm-3x768-d0.2-res-ln": _c("minlstm", 3, 768, 0.2, 2e-3, "--residual", "--layer-norm"),
}
CANDIDATES.update(SCREEN)
GROUPS = {"FIRST_ROUND": FIRST_ROUND, "SCREEN": list(SCREEN)}
VAL_FRAC = 0.1  # charrnn train's default: the last tenth is held out


def build_code_corpus(path: Path) -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for f in sorted(lib.rglob("*.py")):
        rel = f.relative_to(lib)
        if any(p in ("test", "tests", "idle_test", "site-packages") for p in rel.parts):
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        piece = f"# ---- {rel.as_posix()}\n{text}\n"
        parts.append(piece)
        total += len(piece)
        if total >= CODE_CORPUS_CHARS:
            break
    corpus = "".join(parts)[:CODE_CORPUS_CHARS]
    path.write_text(corpus, encoding="utf-8")
    print(f"wrote {path}: {len(corpus):,} characters of Python {sys.version.split()[0]}'s standard library")


def held_out(text: Path, out: Path) -> Path:
    """The text's held-out last tenth as `charrnn train` splits it (by characters, the one before
    the first scored character included: eval scores every character after its first)."""
    chars = text.read_text(encoding="utf-8")
    path = out / f"{text.stem}--val.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(chars[len(chars) - int(len(chars) * VAL_FRAC) - 1:], encoding="utf-8")
    return path


def run_candidate(text: Path, name: str, flags: list[str], budget: float, threads: int, out: Path) -> dict:
    run_dir = out / f"{text.stem}--{name}--{budget:g}s"
    cmd = [sys.executable, "-m", "charrnn", "train", str(text), "--out", str(run_dir), "--force", "--quiet",
           "--time-budget", str(budget), "--sample-every", "0", *flags]
    env = dict(os.environ, **({"CHARRNN_THREADS": str(threads)} if threads else {}))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    records = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    vals = [r["val_nats_per_char"] for r in records if r.get("val_nats_per_char") is not None]
    last = records[-1] if records else {}
    scored = None
    if proc.returncode == 0:
        ev = subprocess.run([sys.executable, "-m", "charrnn", "eval", str(run_dir / "best.safetensors"),
                             str(held_out(text, out)), "--json", "--quiet"], env=env, capture_output=True, text=True)
        scored = json.loads(ev.stdout)["nats_per_char"] if ev.returncode == 0 else None
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    return {"text": text.name, "candidate": name, "flags": flags, "budget_s": budget, "status": proc.returncode,
            "eval_best": scored, "best_val": min(vals) if vals else None, "evaluations": len(vals),
            "step": last.get("step"), "chars": last.get("chars"), "wall_s": round(wall, 1), "plan": config.get("plan"),
            "load_average": os.getloadavg()[0], "stderr": proc.stderr[-400:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("texts", nargs="*", type=Path)
    ap.add_argument("--budget", type=float, default=900.0, help="seconds of training per candidate")
    ap.add_argument("--jobs", type=int, default=2, help="candidates trained at the same time")
    ap.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES) + sorted(GROUPS), default=["SCREEN"])
    ap.add_argument("--threads", type=int, default=1, help="cores per candidate (0: charrnn's default, every core)")
    ap.add_argument("--out", type=Path, default=Path("runs/defaults"))
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--build-code-corpus", type=Path, metavar="FILE", help="write the code corpus and exit")
    a = ap.parse_args(argv)
    if a.build_code_corpus:
        build_code_corpus(a.build_code_corpus)
        return 0
    if not a.texts:
        ap.error("give at least one text file")
    names = [n for c in a.candidates for n in GROUPS.get(c, [c])]
    jobs = [(t, n) for t in a.texts for n in names]
    print(f"{len(jobs)} runs, {a.jobs} at a time, {a.budget:g} s each, {a.threads or 'every'} core(s) each; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores", flush=True)
    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda j: run_candidate(j[0], j[1], CANDIDATES[j[1]], a.budget, a.threads, a.out), jobs))
    print("\n| text | candidate | eval of best.safetensors | best val logged | characters trained | steps | exit |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        score = f"{r['eval_best']:.4f}" if r["eval_best"] is not None else "-"
        best = f"{r['best_val']:.4f}" if r["best_val"] is not None else "-"
        chars = f"{r['chars']:,}" if r["chars"] else "-"
        print(f"| {r['text']} | {r['candidate']} | {score} | {best} | {chars} | {r['step']} | {r['status']} |")
        if r["status"]:
            print(f"    stderr: {r['stderr']!r}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
