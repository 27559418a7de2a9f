"""Speed of charrnn against PyTorch (and Karpathy's min-char-rnn loop at batch 1), side by side in one run.

    charrnn bench [--quick] [--threads N] [--baseline-threads matched|default] [--busy]
                  [--rows peak,train,sizes,seed,gen,eval,cores,cli,cli-cores] [--cells rnn,lstm,gru]
                  [--json PATH [--force]] [--backend numpy|torch]

With --backend torch, charrnn's side is its torch backend (TorchEngine's step, TorchModel's
evaluation and generation) and each row reads as that backend's overhead over bare PyTorch.

Every side of a row runs in a process of its own (see `protocol`): charrnn through its public
API, PyTorch written as its users write it (`sides`), the seed's loop as the seed writes it
(benchmarks/minchar.py, in a source checkout). The sides first compute the same loss (or logits)
from the same parameters and data, which is checked, and are then timed alternately, in turns of
about 50 ms, so that a change in the machine's load hits both; the table reports medians.
PyTorch is run with its characters fed both as `F.one_hot` and through `nn.Embedding`, and its
faster form is the baseline. charrnn uses `--threads` cores (default: charrnn's default, see
threads.py, and in the train and sizes rows training's own count for the configuration, see
threadplan.py; more than one are worker threads with one BLAS thread each) and PyTorch as many
threads as --threads, or as charrnn's default; with `--baseline-threads default` PyTorch keeps
its own default instead (all cores). The run also
measures the machine's float32 matrix-product peak with all of charrnn's cores (and, with the
`peak` rows asked for, with one), and every row with a FLOP count reports, beside its ratio, the
fraction of that same run's all-core peak its matrix products reach: the peak is measured even
when `peak` is not among --rows, as soon as a row needs it.

Other rows: `sizes` trains at H = 64, 256 and 1024 (with the train rows' 128 and 512, the range
from 64 to 1024); `cores` times charrnn at training's default count of cores for the setting
(threadplan.py: read from its cache, or measured before any `--busy` process starts) against
itself with one thread and with one worker on all cores' BLAS threads; `cli` times the
real `charrnn train` command end to end against a plain PyTorch script (torch_train.py) at
PyTorch's default threads; `cli-cores` times that command on all cores against itself with
CHARRNN_THREADS=1, each running as long as a training run does (where `cores` alternates short
turns); `--busy` keeps one core busy with another process for the whole run.
Every row group but `seed` and `peak` runs for each of `--cells`.

FLOPs are the model's nominal count, the same for both sides: a layer's training step per
character as its cell declares it (`train_flops`: for the built-in cells three times the forward
pass's 2*G*(H*I + H*H), G gate blocks, I = V for the first layer, whose one-hot input PyTorch
multiplies densely), and the output layer's three times 2*H*V. Rows are for the cells that have a
PyTorch twin (a torch.nn module).

PyTorch is needed only here (pip install 'charrnn[bench]').
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .. import threads
from ..checks import NEGATIVE_NUMBER
from ..core import CELLS
from ..errors import CharRNNError, ConfigError
from ..settings import BACKENDS
from ..model import CharRNN
from ..model.params import cell_module, torch_module_name
from ..io.writer import check_target, write_file
from .protocol import thread_env
from .sides import V

ROW_GROUPS = ("peak", "train", "sizes", "seed", "gen", "eval", "cores", "cli", "cli-cores")
# The hidden sizes of the `sizes` rows (B=64, T=100, every cell), which with the train rows' 128
# and 512 span the 64..1024, and each one's multiplier of the repeats (0: a third of them).
SIZES = ((64, 4), (256, 2), (1024, 0))
# The settings of the `cores` rows; the first only for a cell for which two cores of H=128 make one
# worker (the tanh cell: the same program on both sides, the rows' noise floor).
CORES_SETTINGS = ((128, 32, 64), (128, 64, 100), (512, 64, 100))
# The train row kept from the first version's goals (the tanh cell at H=1024), when its cell is asked.
LARGE_TRAIN_ROW = ("rnn", 1024, 64, 100)
BASELINE_THREADS = ("matched", "default")
# What a `cli` row's command runs against: the PyTorch script, or the same command on one thread.
CLI_BASELINES = ("torch", "1 thread")
# The seed-style loop, a script of the source tree (not part of the installed package).
MINCHAR = Path(__file__).resolve().parents[2] / "benchmarks" / "minchar.py"
# Length of one side's turn in `alternate`, in seconds.
BLOCK_SECONDS = 0.05
# PyTorch's input forms, each timed; the faster is reported.
TORCH_INPUTS = ("onehot", "embedding")


@dataclass
class Row:
    name: str
    setting: str
    ours: float  # chars/s (or GFLOP/s for the peak row)
    theirs: float | None
    baseline: str
    unit: str = "chars/s"
    gflops: float | None = None  # our sustained GFLOP/s, nominal count
    peak_fraction: float | None = None  # gflops / the all-core float32 peak of the same run (peak_fractions)
    check: str = ""  # how closely the two sides agreed before timing
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.theirs else self.ours / self.theirs


class Side:
    """One side of a row, running in its own process."""

    def __init__(self, spec: dict[str, Any], threads: int | None) -> None:
        if spec["side"] == "minchar":
            argv = [sys.executable, str(MINCHAR), json.dumps(spec)]
        else:
            argv = [sys.executable, "-m", "charrnn.bench.sides", json.dumps(spec)]
        self.name = spec["side"] + (f" ({spec['input']})" if "input" in spec else "")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=thread_env(threads))
        hello = self._read()
        self.check, self.chars = hello["check"], hello["chars"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            raise SystemExit(f"bench: the {self.name} process failed: {err[-1] if err else 'no output'}")
        return json.loads(line)

    def run(self, n: int) -> list[float]:
        self.proc.stdin.write(json.dumps({"run": n}) + "\n")
        self.proc.stdin.flush()
        return self._read()["times"]

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


def alternate(sides: dict[str, Side], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each side, `repeats` each, the sides taking turns.

    A turn lasts about BLOCK_SECONDS (one call for calls longer than that). The first call of a
    turn of several is a warm-up and is not kept: on this machine a short call made right after
    another program's work runs up to 1.6x slower (caches and clock speed), which would charge
    each side for the other's run rather than for its own work.
    """
    block = {}
    for name, side in sides.items():
        per_call = statistics.median(side.run(warmup))
        block[name] = max(1, min(repeats, round(BLOCK_SECONDS / max(per_call, 1e-9))))
    times: dict[str, list[float]] = {k: [] for k in sides}
    while any(len(times[k]) < repeats for k in sides):
        for name, side in sides.items():
            n = block[name]
            got = side.run(n + (1 if n > 1 else 0))
            times[name] += got[1:] if n > 1 else got
    return {k: v[:repeats] for k, v in times.items()}


def _agreement(ours: Any, theirs: Any, what: str, tol: float = 1e-4) -> str:
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    rel = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
    if not rel <= tol:
        raise SystemExit(f"bench: {what} differ by {rel:.2e} (relative) between charrnn and the baseline")
    return f"{what} agree to {rel:.1e}"


def train_flops(V: int, H: int, L: int, B: int, T: int, cell: str = "rnn") -> float:
    """Nominal FLOPs of one training step (forward + backward), see the module docstring."""
    layer = cell_module(cell).train_flops
    return B * T * (sum(layer(V if k == 0 else H, H) for k in range(L)) + 3.0 * 2 * H * V)


# ------------------------------------------------------------------------------------------------
# rows


def peak_row(repeats: int, cores: int = 1) -> Row:
    """The machine's float32 matrix-product rate (2048^3) with the BLAS library on `cores`
    threads: with all of charrnn's cores, the limit that the "% of peak" column measures against."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cores, user_api="blas"):
        row = _peak(repeats)
    row.setting += f", {cores} thread{'s' if cores > 1 else ''}"
    return row


def _peak(repeats: int) -> Row:
    import time

    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        t.append(time.perf_counter() - t0)
    g = 2 * n**3 / statistics.median(t) / 1e9
    return Row("peak", f"sgemm {n}^3 float32", g, None, "", unit="GFLOP/s", gflops=g, samples={"ours": t})


@dataclass
class Setting:
    job: str  # "train", "eval", "gen"
    cell: str = "rnn"
    H: int = 512
    B: int = 64
    T: int = 100
    L: int = 1
    chars: int = 500  # generation rows: characters per call
    seed_style: bool = False  # the seed's setting: normal init, Adagrad + clip, against its own loop


def compare(s: Setting, repeats: int, threads: int | None, baseline_threads: str, workdir: Path,
            backend: str = "numpy", default: Any = None) -> Row | None:
    """Build the row of one setting: both sides in their own processes, checked, then timed.
    `default`: training's plan for the setting (threadplan.Plan), whose count charrnn's side then
    runs with instead of `threads`."""
    params = workdir / f"{s.cell}-{s.H}-{s.L}.safetensors"
    CharRNN(V, s.H, s.L, "float32", seed=0, init="normal" if s.seed_style else "pytorch", cell=s.cell).save(params)
    common = {"job": s.job, "cell": s.cell, "torch_module": torch_module_name(s.cell), "B": s.B, "T": s.T,
              "chars": s.chars, "params": str(params), "calls": repeats + 8, "data_seed": 1, "threads": threads}
    ours_threads = default.threads if default is not None else threads
    ours_spec = common | {"side": "ours", "seed_optimizer": s.seed_style, "backend": backend, "threads": ours_threads}
    if s.seed_style and backend == "torch":
        return None  # the seed's Adagrad has no torch.optim counterpart
    if s.seed_style:
        if not MINCHAR.exists():
            print("bench: benchmarks/minchar.py not found (run from a source checkout); skipping the min-char-rnn row")
            return None
        theirs_specs = {"seed loop": common | {"side": "minchar"}}
        their_threads = threads
    else:
        theirs_specs = {form: common | {"side": "torch", "input": form} for form in TORCH_INPUTS}
        their_threads = threads if baseline_threads == "matched" else None
        if baseline_threads == "default":
            theirs_specs = {k: v | {"threads": None} for k, v in theirs_specs.items()}
    sides: dict[str, Side] = {}
    try:
        sides["ours"] = Side(ours_spec, ours_threads)
        for name, spec in theirs_specs.items():
            sides[name] = Side(spec, their_threads)
        theirs = [side.check for name, side in sides.items() if name != "ours"]
        check = _agreement([sides["ours"].check] * len(theirs), theirs, "logits" if s.job == "gen" else "losses")
        t = alternate(sides, repeats, warmup=1 if s.job == "gen" else 2)
    finally:
        for side in sides.values():
            side.close()
    chars = sides["ours"].chars
    speeds = {k: chars / statistics.median(v) for k, v in t.items()}
    best = max((k for k in speeds if k != "ours"), key=speeds.get)
    flops = train_flops(V, s.H, s.L, s.B, s.T, s.cell) / (1 if s.job == "train" else 3)
    g = flops / statistics.median(t["ours"]) / 1e9 if s.job != "gen" else None
    what = {"train": "train", "eval": "evaluate", "gen": "generate"}[s.job]
    name = f"{what} {s.cell} H={s.H}" + (f" L={s.L}" if s.L > 1 else "") + (f" B={s.B}" if s.job != "gen" else "")
    setting = f"H={s.H} B={s.B} T={s.T} L={s.L}" if s.job != "gen" else f"H={s.H}, 1 stream, {s.chars} chars"
    if default is not None:
        setting += f", charrnn on {_cores(default.threads)} ({default.source})"
    if s.seed_style:
        name, setting, baseline = (f"min-char-rnn H={s.H}", f"H={s.H} B=1 T={s.T}, Adagrad+clip",
                                    "Karpathy's min-char-rnn NumPy loop")
    else:
        torch_cls = f"nn.{torch_module_name(s.cell)}"
        baseline = {"train": f"PyTorch {torch_cls}+Adam", "eval": "PyTorch no_grad", "gen": "PyTorch step loop"}[s.job]
        baseline += f", {best}"
    if backend == "torch":
        name += " (torch backend)"
    return Row(name, setting, speeds["ours"], speeds[best], baseline, gflops=g, check=check, samples=t)


def _one_worker(cell: str, H: int, B: int, T: int) -> bool:
    """Whether two cores share a window of this size as one worker (model/parallel.py)."""
    from ..model.parallel import min_shard_work, stream_shards

    return len(stream_shards(B, H, 2, min_shard_work(cell))) == 1


def compare_cores(s: Setting, repeats: int, cores: int, workdir: Path, workers: int | None = None,
                  label: str | None = None) -> list[Row]:
    """charrnn against itself: `workers` workers over the streams (one BLAS thread each; default
    `cores`, what --threads all gives; `label` says where the count comes from), one thread, and
    one worker with the BLAS library's own `cores` threads; each in its own process, alternating.
    Two rows: the workers against each of the others."""
    workers = cores if workers is None else workers
    params = workdir / f"{s.cell}-{s.H}-{s.L}.safetensors"
    CharRNN(V, s.H, s.L, "float32", seed=0, init="pytorch", cell=s.cell).save(params)
    common = {"job": s.job, "cell": s.cell, "B": s.B, "T": s.T, "chars": s.chars, "params": str(params),
              "calls": repeats + 8, "data_seed": 1, "side": "ours"}
    specs = {"workers": common | {"threads": workers}, "1 thread": common | {"threads": 1},
             f"BLAS {cores} threads": common | {"blas_threads": cores}}
    rows = []
    # one pair at a time: OpenBLAS's threads spin for a while after each call, and would slow
    # down whichever process ran next in a three-way rotation
    for other in list(specs)[1:]:
        sides: dict[str, Side] = {}
        try:
            for name in ("workers", other):
                sides[name] = Side(specs[name], None)
                sides[name].name = name
            check = _agreement([sides["workers"].check], [sides[other].check], "losses")
            t = alternate(sides, repeats)
        finally:
            for side in sides.values():
                side.close()
        rows.append(_cores_row(s, workers, label or _cores(workers), other, sides["workers"].chars, t, check))
    return rows


def _cores_row(s: Setting, cores: int, label: str, other: str, chars: int, t: dict[str, list[float]],
               check: str) -> Row:
    from ..model.parallel import min_shard_work, stream_shards

    speeds = {k: chars / statistics.median(v) for k, v in t.items()}
    flops = train_flops(V, s.H, s.L, s.B, s.T, s.cell) / (1 if s.job == "train" else 3)
    g = flops / statistics.median(t["workers"]) / 1e9
    workers = len(stream_shards(s.B, s.H, cores, min_shard_work(s.cell)))
    setting = f"H={s.H} B={s.B} T={s.T}, {_cores(cores)}: {workers} worker{'s' if workers > 1 else ''}"
    return Row(f"cores {s.cell} H={s.H}: {label} vs {other}", setting, speeds["workers"], speeds[other],
               f"charrnn, {other}", gflops=g, check=check, samples=t)


def synthetic_text(path: Path, n: int, seed: int = 0) -> Path:
    """n characters over V symbols with some structure (a random walk), written to `path`."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\n-"))[:V]
    ids = np.cumsum(np.random.default_rng(seed).integers(-2, 3, n)) % V
    path.write_text("".join(alphabet[ids]), encoding="utf-8")
    return path


def _timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds the command took; a failure ends the benchmark with its last line."""
    import time

    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        raise SystemExit(f"bench: {' '.join(argv[:4])} failed: {err[-1] if err else proc.returncode}")
    return elapsed


def compare_cli(s: Setting, steps: tuple[int, int], rounds: int, cores: int, workdir: Path,
                against: str = "torch") -> Row:
    """The real commands end to end: `charrnn train` (data, metrics, validation, checkpoints and
    all, at its defaults but for the sizes) on `cores` cores against a plain PyTorch script
    (torch_train.py) at PyTorch's default threads, or with against="1 thread" against the same
    command with CHARRNN_THREADS=1. Each is run for two step counts, the runs alternating, and the
    speed is the extra characters over the extra seconds (start-up and the final validation
    cancel out); the median over `rounds`. Unlike the other rows' short alternating turns, each
    side runs for as long as a training run does, as a user's would."""
    text = synthetic_text(workdir / "cli-text.txt", 1_000_000)
    sizes = ["--hidden-size", str(s.H), "--batch-size", str(s.B), "--seq-len", str(s.T)]
    env = thread_env(None)

    def charrnn(threads: int) -> Any:
        def command(n: int) -> tuple[list[str], dict[str, str]]:
            return ([sys.executable, "-m", "charrnn", "train", str(text), "--out", str(workdir / "cli-run"), "--force",
                     "--steps", str(n), "--cell", s.cell, *sizes, "--quiet", "--eval-every", "0"],
                    dict(env, CHARRNN_THREADS=str(threads)))
        return command

    def torch_script(n: int) -> tuple[list[str], dict[str, str]]:
        return ([sys.executable, "-m", "charrnn.bench.torch_train", str(text), "--steps", str(n), "--hidden", str(s.H),
                 "--batch", str(s.B), "--seq-len", str(s.T), "--module", torch_module_name(s.cell),
                 "--out", str(workdir / "cli-torch.safetensors")], env)

    if against == "torch":
        name, baseline, theirs = "charrnn train", "PyTorch script (torch_train.py), default threads", torch_script
    elif against == "1 thread":
        name, baseline, theirs = f"charrnn train, {cores} cores vs 1 thread,", "charrnn train, 1 thread", charrnn(1)
    else:
        raise ValueError(f"against: one of {', '.join(map(repr, CLI_BASELINES))}, got {against!r}")
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(rounds):
        for side, cmd in (("ours", charrnn(cores)), ("theirs", theirs)):
            short = _timed(*cmd(steps[0]))
            long = _timed(*cmd(steps[1]))
            times[side].append(long - short)
    chars = (steps[1] - steps[0]) * s.B * s.T
    label, setting = f"{name} {s.cell} H={s.H} B={s.B}", f"H={s.H} B={s.B} T={s.T}, whole command"
    if min(statistics.median(v) for v in times.values()) <= 0:
        # the extra steps took less time than the runs' own variation: no speed can be read
        return Row(label, setting, float("nan"), None, baseline,
                   check=f"steps {steps[0]} and {steps[1]}: too few to measure", samples=times)
    speeds = {k: chars / statistics.median(v) for k, v in times.items()}
    g = train_flops(V, s.H, s.L, s.B, s.T, s.cell) * (steps[1] - steps[0]) / statistics.median(times["ours"]) / 1e9
    return Row(label, setting, speeds["ours"], speeds["theirs"], baseline, gflops=g,
               check=f"steps {steps[0]} and {steps[1]}", samples=times)


def settings(groups: list[str], cells: list[str], quick: bool) -> list[tuple[Setting, int]]:
    """(setting, repeat multiplier) of every row of the chosen groups, in order."""
    out: list[tuple[Setting, int]] = []
    if "train" in groups:
        for cell in cells:
            out += [(Setting("train", cell, 512, 64, 100), 1), (Setting("train", cell, 128, 64, 100), 4),
                    (Setting("train", cell, 100, 1, 25), 20)]
        if not quick and LARGE_TRAIN_ROW[0] in cells and "sizes" not in groups:
            out.append((Setting("train", *LARGE_TRAIN_ROW), 0))
    if "sizes" in groups:
        out += [(Setting("train", cell, H, 64, 100), mult) for cell in cells for H, mult in SIZES]
    if "seed" in groups:
        out.append((Setting("train", "rnn", 100, 1, 25, seed_style=True), 20))
    if "gen" in groups:
        out += [(Setting("gen", cell, 512), 0) for cell in cells]
    if "eval" in groups:
        out += [(Setting("eval", cell, 512, 64, 100), 2) for cell in cells]
    return out


# ------------------------------------------------------------------------------------------------
# the run


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        pass
    from ..core import _jit

    out["numba"] = _jit.numba.__version__ if _jit.available() else "not used"
    blas = threads.thread_info()["blas"]
    if blas:
        out["blas"] = f"{blas[0]['library']} {blas[0]['version']} ({blas[0]['architecture']})"
    return out


def peak_fractions(rows: list[Row]) -> float | None:
    """The run's all-core float32 peak (the larger of its `peak` rows: the machine's speed drifts
    between the start and the end), and each row's fraction of it (`Row.peak_fraction`), for
    every row with a FLOP count; None, and no fractions, in a run without a peak row."""
    peak = max((r.ours for r in rows if r.name == "peak"), default=None)
    for r in rows:
        r.peak_fraction = r.gflops / peak if peak and r.gflops else None
    return peak


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table, each row's fraction of the peak beside its ratio
    (peak_fractions first)."""
    lines = [
        "| row | setting | charrnn | baseline | ratio | % of peak | GFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pct = f"{100 * r.peak_fraction:.0f}%" if r.peak_fraction else ""
        if r.name.startswith("peak"):
            lines.append(f"| {r.name} | {r.setting} | {r.ours:.0f} GFLOP/s | | | {pct} | {r.ours:.0f} |")
            continue
        theirs = f"{r.theirs:,.0f} ({r.baseline})" if r.theirs else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        g = f"{r.gflops:.0f}" if r.gflops else ""
        lines.append(f"| {r.name} | {r.setting} | {r.ours:,.0f} {r.unit} | {theirs} | {ratio} | {pct} | {g} |")
    return "\n".join(lines)


def document(command: str, args: argparse.Namespace, n_threads: int, rows: list[Row], peak: float | None,
             defaults: dict[str, Any] | None = None, load_at_start: list[float] | None = None) -> dict[str, Any]:
    """What --json writes: the run's conditions (the machine's load averages at its start and
    end), its peak, and every row with its samples, ratio and fraction of the peak."""
    return {
        "command": command,
        "threads": {"charrnn": n_threads, "baseline": args.baseline_threads},
        "versions": versions(),
        "burn": args.burn,
        "load_average": {"start": load_at_start, "end": threads.load_average()},
        "peak_gflops": peak,
        "training_defaults": defaults or {},
        "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
    }


def _list_of(text: str, choices: tuple[str, ...]) -> list[str]:
    items = [g.strip() for g in text.split(",") if g.strip()]
    unknown = sorted(set(items) - set(choices))
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}, got {text!r}")
    return items


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is a ConfigError, said in one line as every command says it
    (not argparse's usage dump), and a negative number is an option's value, as for every
    command (charrnn.checks.NEGATIVE_NUMBER)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _refuse(message: str) -> int:
    print(f"charrnn bench: error: {message}", file=sys.stderr)
    return 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def twin_cells() -> tuple[str, ...]:
    """The registered cells torch.nn also has, which the rows time against their PyTorch twin (a
    TORCH_MODULE "module:Class" is a module of the torch backend's own, not PyTorch's)."""
    return tuple(n for n, m in CELLS.items() if m.TORCH_MODULE is not None and ":" not in m.TORCH_MODULE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="charrnn bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats and rounds, and the train rows without H=1024 (the sizes rows keep it)")
    p.add_argument("--threads", type=int, default=None,
                   help="cores for charrnn and threads for PyTorch (default: charrnn's default)")
    p.add_argument("--baseline-threads", choices=BASELINE_THREADS, default="matched",
                   help="PyTorch's threads: the same as charrnn's, or PyTorch's own default")
    p.add_argument("--rows", default=",".join(ROW_GROUPS), type=lambda t: _list_of(t, ROW_GROUPS),
                   help=f"comma-separated subset of {','.join(ROW_GROUPS)} (seed: Karpathy's min-char-rnn setting)")
    twins = twin_cells()
    p.add_argument("--cells", default=",".join(twins), type=lambda t: _list_of(t, twins),
                   help=f"cells of the train, sizes, gen, eval, cores and cli rows: subset of {','.join(twins)}")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 15, quick 5)")
    p.add_argument("--json", default=None, help="also write the results (with every sample) here")
    p.add_argument("--force", action="store_true",
                   help="replace --json's file if it is an existing regular file (never a checkpoint or a run's files)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="charrnn's side: the NumPy engine, or the torch backend (its overhead over bare PyTorch)")
    p.add_argument(
        "--busy", "--burn", dest="burn", action="store_true",
        help="keep one core busy with another process during the run, to measure the contention collapse",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except ConfigError as e:
        return _refuse(str(e))
    if args.repeats is not None and args.repeats < 1:
        return _refuse(f"--repeats must be >= 1, got {args.repeats}")
    if args.json is not None:
        try:
            check_target(args.json, force=args.force)  # refused now, not after minutes of measuring
        except CharRNNError as e:
            return _refuse(str(e))
    try:
        if args.threads is not None:
            threads.set_threads(args.threads)
        else:
            threads.ensure_threads()
    except ConfigError as e:
        return _refuse(str(e))
    n_threads = threads.workers()
    if any(g != "peak" for g in args.rows):
        try:
            import torch  # noqa: F401
        except ImportError:
            print("charrnn bench compares against PyTorch, which is not installed: pip install 'charrnn[bench]'",
                  file=sys.stderr)
            return 2
    reps = args.repeats or (5 if args.quick else 15)
    load_at_start = threads.load_average()
    print(f"cores: charrnn {n_threads} (worker threads, one BLAS thread each), PyTorch "
          f"{n_threads if args.baseline_threads == 'matched' else 'its default'} threads; "
          f"{versions()}; load average {load_at_start}", flush=True)
    defaults = training_defaults(planned_settings(args))
    burner = None
    if args.burn:
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        print(f"a busy process (pid {burner.pid}) shares the machine during this run", flush=True)
    try:
        rows = run_rows(args, reps, n_threads, defaults)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    peak = peak_fractions(rows)
    print()
    print(format_table(rows))
    if args.json:
        command = "charrnn bench " + " ".join(sys.argv[2:] if argv is None else argv)
        doc = document(command, args, n_threads, rows, peak, {k: asdict(p) for k, p in defaults.items()},
                       load_at_start)
        write_file(args.json, json.dumps(doc, indent=1).encode(), force=args.force)
    return 0


def cores_settings(cell: str) -> list[tuple[int, int, int]]:
    """(H, B, T) of the `cores` rows of `cell` (CORES_SETTINGS; the first only where two cores
    make one worker of it, the rows' noise floor)."""
    first, *rest = CORES_SETTINGS
    return ([first] if _one_worker(cell, *first) else []) + rest


def planned_settings(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """(cell, H, B, T) of the rows that time training at its default count of cores: the `cores`
    rows, and the NumPy engine's train and sizes rows where --threads is not given."""
    out = [(cell, *hbt) for cell in args.cells for hbt in cores_settings(cell)] if "cores" in args.rows else []
    if getattr(args, "threads", None) is None and args.backend == "numpy":
        out += [(s.cell, s.H, s.B, s.T) for s, _ in settings(args.rows, args.cells, args.quick)
                if s.job == "train" and not s.seed_style and s.L == 1]
    return list(dict.fromkeys(out))


def training_defaults(configs: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    """Training's default count of cores (threadplan.default_plan) for each (cell, H, B, T), by
    "cell H=.. B=.. T=..": read from the cache, or measured now (before any --busy process
    starts, which would otherwise be timed beside its own busy neighbour)."""
    from .. import threadplan

    out = {}
    for cell, H, B, T in configs:
        model = CharRNN(V, H, 1, "float32", seed=0, init="pytorch", cell=cell)
        plan = threadplan.default_plan(model, B, T)
        out[_setting_key(cell, H, B, T)] = plan
        print(f"training's default for {_setting_key(cell, H, B, T)}: {_cores(plan.threads)} ({plan.source})",
              flush=True)
    return out


def _setting_key(cell: str, H: int, B: int, T: int) -> str:
    return f"{cell} H={H} B={B} T={T}"


def _cores(n: int) -> str:
    return f"{n} core{'s' if n > 1 else ''}"


def _needs_peak(groups: list[str]) -> bool:
    """Whether a row of these groups has a FLOP count, whose fraction of the peak is reported."""
    return any(g not in ("peak", "gen") for g in groups)


def run_rows(args: argparse.Namespace, reps: int, n_threads: int,
             defaults: dict[str, Any] | None = None) -> list[Row]:
    rows: list[Row] = []

    def add(row: Row | None) -> None:
        if row is not None:
            rows.append(row)
            extra = f", {row.ratio:.2f}x" if row.ratio else ""
            print(f"  {row.name}: {row.ours:,.0f} {row.unit}{extra}  {row.check}", flush=True)

    all_cores = threads.usable_cpus()
    if "peak" in args.rows or _needs_peak(args.rows):  # the fractions of the peak need this run's own
        add(peak_row(max(3, reps // 2), all_cores))
        if all_cores > 1 and "peak" in args.rows:
            one = peak_row(max(3, reps // 2), 1)
            one.name = "peak, 1 core"
            add(one)
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
        for setting, mult in settings(args.rows, args.cells, args.quick):
            n = reps * mult if mult else max(3, reps // 3)
            plan = (defaults or {}).get(_setting_key(setting.cell, setting.H, setting.B, setting.T))
            add(compare(setting, n, n_threads, args.baseline_threads, Path(tmp), args.backend,
                        plan if setting.job == "train" and not setting.seed_style else None))
    if "cores" in args.rows:
        with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
            for cell in args.cells:
                for H, B, T in cores_settings(cell):
                    plan = (defaults or {}).get(_setting_key(cell, H, B, T))
                    workers, label = (plan.threads, f"default ({_cores(plan.threads)}, {plan.source})") if plan else (None, None)
                    for row in compare_cores(Setting("train", cell, H, B, T), reps * (4 if H == 128 else 1),
                                             max(2, all_cores), Path(tmp), workers, label):
                        add(row)
    if "cli" in args.rows:
        with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
            rounds = 1 if args.quick else 3
            for cell in args.cells:
                for (H, B, T), steps in (((512, 64, 100), (4, 14)), ((128, 32, 64), (40, 240)),
                                         ((100, 1, 25), (1000, 5000))):
                    if args.quick:
                        steps = (steps[0], steps[0] + (steps[1] - steps[0]) // 2)
                    add(compare_cli(Setting("train", cell, H, B, T), steps, rounds, n_threads, Path(tmp)))
    if "cli-cores" in args.rows:
        with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
            for cell in args.cells:
                for (H, B, T), steps in (((128, 64, 100), (20, 120)), ((512, 64, 100), (4, 14))):
                    if args.quick:
                        steps = (steps[0], steps[0] + (steps[1] - steps[0]) // 2)
                    add(compare_cli(Setting("train", cell, H, B, T), steps, 1 if args.quick else 3,
                                    max(2, all_cores), Path(tmp), against="1 thread"))
    if ("peak" in args.rows or _needs_peak(args.rows)) and not args.quick:
        add(peak_row(max(3, reps // 2), all_cores))  # again at the end: the machine's speed drifts
    return rows
