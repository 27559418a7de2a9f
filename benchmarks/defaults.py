"""Choosing `charrnn train`'s defaults: candidate configurations, each run as the default plan runs.

    python benchmarks/defaults.py TEXT_FILE [TEXT_FILE ...] [--budget 900] [--jobs 2]
        [--candidates "rnn-256" "gru-512-d0.1" ...] [--out runs/defaults]
    python benchmarks/defaults.py --build-code-corpus code.txt   # the second corpus, built offline

Every candidate is `charrnn train TEXT` with its own flags and otherwise the defaults: the
automatic plan (10 epochs and at least 2000 steps, validation about 20 times, early stopping after
5 without a new best) within the time budget (`--budget`, the default plan's 15 minutes unless
changed: only the budget of the plan is replaced, in each candidate's own process). Candidates run
`--jobs` at a time, one BLAS thread each, so on a machine with at least that many cores each has
one to itself. The score is the best validation loss (nats/char over the whole held-out last
tenth) that the run reached, which is the model `best.safetensors` keeps.

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

# Runs in each candidate's process: the default plan with only its time budget replaced.
RUNNER = """
import sys
import charrnn.settings as settings
settings.AUTO_TIME_BUDGET = float(sys.argv[1])
from charrnn.cli import main
sys.exit(main(sys.argv[2:]))
"""


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


def run_candidate(text: Path, name: str, flags: list[str], budget: float, out: Path) -> dict:
    run_dir = out / f"{text.stem}--{name}"
    cmd = [sys.executable, "-c", RUNNER, str(budget), "train", str(text), "--out", str(run_dir), "--force",
           "--quiet", "--threads", "1", "--sample-every", "0", *flags]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    records = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    vals = [r["val_nats_per_char"] for r in records if r.get("val_nats_per_char") is not None]
    last = records[-1] if records else {}
    return {"text": text.name, "candidate": name, "flags": flags, "status": proc.returncode,
            "best_val": min(vals) if vals else None, "evaluations": len(vals), "step": last.get("step"),
            "chars": last.get("chars"), "wall_s": round(wall, 1), "stderr": proc.stderr[-400:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("texts", nargs="*", type=Path)
    ap.add_argument("--budget", type=float, default=900.0, help="seconds of training per candidate")
    ap.add_argument("--jobs", type=int, default=2, help="candidates trained at the same time")
    ap.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=FIRST_ROUND)
    ap.add_argument("--out", type=Path, default=Path("runs/defaults"))
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--build-code-corpus", type=Path, metavar="FILE", help="write the code corpus and exit")
    a = ap.parse_args(argv)
    if a.build_code_corpus:
        build_code_corpus(a.build_code_corpus)
        return 0
    if not a.texts:
        ap.error("give at least one text file")
    jobs = [(t, n) for t in a.texts for n in a.candidates]
    print(f"{len(jobs)} runs, {a.jobs} at a time, {a.budget:g} s each, one thread each; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores", flush=True)
    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda j: run_candidate(j[0], j[1], CANDIDATES[j[1]], a.budget, a.out), jobs))
    print(f"\n| text | candidate | best val nats/char | characters trained | steps | exit |\n|---|---|---|---|---|---|")
    for r in results:
        best = f"{r['best_val']:.4f}" if r["best_val"] is not None else "-"
        chars = f"{r['chars']:,}" if r["chars"] else "-"
        print(f"| {r['text']} | {r['candidate']} | {best} | {chars} | {r['step']} | {r['status']} |")
        if r["status"]:
            print(f"    stderr: {r['stderr']!r}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
