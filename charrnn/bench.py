"""Speed of charrnn against PyTorch (and the seed's batch-1 loop), side by side in one run.

    python -m charrnn.bench [--quick] [--threads N] [--rows train,seed,gen,eval,peak] [--json PATH]

For every row the two sides first compute the same loss (or logits) from the same parameters
and data, which is checked, and are then timed alternately (ours, theirs, ours, theirs, ...,
in turns of about 50 ms for short calls, see `alternate`) so that a change in the machine's load
hits both; the table reports medians. Training rows feed a fresh window to every call. Both sides use the
same number of BLAS threads (`--threads`, default: charrnn's default), and the run also
measures the machine's float32 matrix-product peak, so FLOP/s can be read as a fraction of it.

FLOPs are the model's nominal count, the same for both sides: a layer's forward pass is
2*B*T*(H*I + H*H) (I = V for the first layer, whose one-hot product charrnn folds into the step's
product; PyTorch multiplies the one-hot input densely too), the output layer 2*B*T*H*V, and a
training step three times the forward pass (the backward pass costs twice the forward).

PyTorch is needed only here (pip install 'charrnn[bench]'); it is imported when a row needs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import threads
from .errors import ConfigError
from .model import CharRNN

V = 65  # tiny-shakespeare's alphabet; every row uses random text over it
ROW_GROUPS = ("peak", "train", "seed", "gen", "eval")


@dataclass
class Row:
    name: str
    setting: str
    ours: float  # chars/s (or GFLOP/s for the peak row)
    theirs: float | None
    baseline: str
    unit: str = "chars/s"
    gflops: float | None = None  # our sustained GFLOP/s, nominal count
    check: str = ""  # how closely the two sides agreed before timing
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.theirs else self.ours / self.theirs


# ------------------------------------------------------------------------------------------------
# helpers


def _torch() -> Any:
    """Import PyTorch, or exit with a message saying how to get it."""
    try:
        import torch
    except ImportError:
        sys.exit("charrnn bench compares against PyTorch, which is not installed: pip install 'charrnn[bench]'")
    return torch


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Time each function `repeats` times, alternating between them; seconds per call.

    The sides take turns in blocks of about BLOCK_SECONDS (one call per turn for calls longer
    than that): a change in the machine's load during the run hits both sides alike. The first
    call of a block of several is a warm-up and is not kept: on this machine a short call made
    right after another program's work (or a sleep) runs up to 1.6x slower (caches and clock
    speed), which would charge each side for the other's run rather than for its own work.
    """
    block = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        per_call = (time.perf_counter() - t0) / max(warmup, 1)
        block[name] = max(1, min(repeats, round(BLOCK_SECONDS / max(per_call, 1e-9))))
    times: dict[str, list[float]] = {k: [] for k in fns}
    while any(len(times[k]) < repeats for k in fns):
        for name, fn in fns.items():
            n = block[name]
            for i in range(n + (1 if n > 1 else 0)):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if n == 1 or i > 0:
                    times[name].append(dt)
    return {k: v[:repeats] for k, v in times.items()}


# Length of one side's turn in `alternate`, in seconds.
BLOCK_SECONDS = 0.05


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def train_flops(V: int, H: int, L: int, B: int, T: int) -> float:
    """Nominal FLOPs of one training step (forward + backward), see the module docstring."""
    forward = sum(2 * B * T * (H * (V if k == 0 else H) + H * H) for k in range(L)) + 2 * B * T * H * V
    return 3.0 * forward


def torch_model(model: CharRNN, torch: Any) -> tuple[Any, Any]:
    """nn.RNN + nn.Linear holding a copy of our parameters (same names, same layouts)."""
    rnn = torch.nn.RNN(model.vocab_size, model.hidden_size, model.num_layers)
    head = torch.nn.Linear(model.hidden_size, model.vocab_size)
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.copy_(torch.from_numpy(model.params["rnn." + name]))
        for name, p in head.named_parameters():
            p.copy_(torch.from_numpy(model.params["head." + name]))
    return rnn, head


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def _agree(what: str, rel: float, tol: float = 1e-4) -> str:
    if not rel <= tol:
        raise SystemExit(f"bench: {what} differ by {rel:.2e} (relative) between charrnn and the baseline")
    return f"{what} agree to {rel:.1e}"


# ------------------------------------------------------------------------------------------------
# rows


def peak_row(repeats: int) -> Row:
    """The machine's float32 matrix-product rate with the current thread setting (2048^3)."""
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    t = alternate({"sgemm": lambda: np.matmul(a, b, out=c)}, repeats, warmup=1)["sgemm"]
    g = 2 * n**3 / median(t) / 1e9
    return Row("peak", f"sgemm {n}^3 float32", g, None, "", unit="GFLOP/s", gflops=g, samples={"ours": t})


class Windows:
    """Consecutive windows of one long random text, a fresh one for every call.

    Training sees new text at every step; timing one window over and over would instead let the
    model memorise it (within a few hundred steps at B=1). Each side walks through its own copy
    of the same windows.
    """

    def __init__(self, B: int, T: int, count: int, seed: int) -> None:
        self.text = np.random.default_rng(seed).integers(0, V, size=(B, T * count + 1))
        self.T, self.count, self.i = T, count, 0

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        start = (self.i % self.count) * self.T
        self.i += 1
        return self.text[:, start : start + self.T], self.text[:, start + 1 : start + self.T + 1]


def train_row(H: int, B: int, T: int, repeats: int, L: int = 1, lr: float = 1e-3) -> Row:
    """chars/s of forward + BPTT + Adam, ours against nn.RNN + nn.Linear + torch.optim.Adam."""
    torch = _torch()
    from .optim import make_optimizer

    calls = repeats + 3
    ours_data, their_data = Windows(B, T, calls, seed=1), Windows(B, T, calls, seed=1)
    model = CharRNN(V, H, L, dtype="float32", seed=0)
    rnn, head = torch_model(model, torch)

    def torch_loss(x: np.ndarray, y: np.ndarray) -> Any:
        tx = torch.from_numpy(np.ascontiguousarray(x.T))  # PyTorch's default time-major layout
        ty = torch.from_numpy(np.ascontiguousarray(y.T)).reshape(-1)
        out, _ = rnn(torch.nn.functional.one_hot(tx, V).float())
        return torch.nn.functional.cross_entropy(head(out).reshape(-1, V), ty)

    x, y = Windows(B, T, 1, seed=1)()
    check = _agree("losses", _rel(model.loss_and_grads(x, y)[0], torch_loss(x, y).item()))
    opt = make_optimizer("adam", model.params, lr)
    topt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=lr)

    def ours() -> None:
        _, grads, _ = model.loss_and_grads(*ours_data())
        opt.step(grads)

    def theirs() -> None:
        loss = torch_loss(*their_data())
        topt.zero_grad()
        loss.backward()
        topt.step()

    t = alternate({"ours": ours, "theirs": theirs}, repeats)
    chars = B * T
    o, th = chars / median(t["ours"]), chars / median(t["theirs"])
    g = train_flops(V, H, L, B, T) / median(t["ours"]) / 1e9
    name = f"train H={H}" + (f" L={L}" if L > 1 else "")
    return Row(name, f"H={H} B={B} T={T} L={L}", o, th, "PyTorch nn.RNN+Adam", gflops=g, check=check, samples=t)


def _load_minchar() -> Any:
    """benchmarks/minchar.py from the source tree (it is not part of the installed package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "minchar.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("charrnn_bench_minchar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def seed_row(repeats: int, H: int = 100, T: int = 25) -> Row | None:
    """The seed's setting (B=1): ours with the seed's Adagrad and clipping against its loop."""
    minchar = _load_minchar()
    if minchar is None:
        print("bench: benchmarks/minchar.py not found (run from a source checkout); skipping the seed row")
        return None
    from .optim import clip_grad_value_, make_optimizer

    calls = repeats + 3
    ours_data, their_data = Windows(1, T, calls, seed=2), Windows(1, T, calls, seed=2)
    model = CharRNN(V, H, 1, dtype="float32", seed=0, init="normal")
    base = minchar.MinCharRNN(model.params, lr=0.1)
    h_prev = np.zeros((H, 1), dtype=np.float32)
    x, y = Windows(1, T, 1, seed=2)()
    ours_loss = model.loss_and_grads(x, y)[0]
    check = _agree("losses", _rel(ours_loss, base.loss_fun(x[0].tolist(), y[0].tolist(), h_prev)[0] / T))
    opt = make_optimizer("adagrad", model.params, 0.1, eps=1e-8, eps_inside_sqrt=True)

    def ours() -> None:
        _, grads, _ = model.loss_and_grads(*ours_data())
        clip_grad_value_(grads, 5.0)
        opt.step(grads)

    def theirs() -> None:
        x, y = their_data()
        base.train_step(x[0].tolist(), y[0].tolist(), h_prev)

    t = alternate({"ours": ours, "theirs": theirs}, repeats)
    o, th = T / median(t["ours"]), T / median(t["theirs"])
    g = train_flops(V, H, 1, 1, T) / median(t["ours"]) / 1e9
    return Row(f"seed H={H}", f"H={H} B=1 T={T}, Adagrad+clip", o, th, "seed-style NumPy loop", gflops=g,
               check=check, samples=t)


def gumbel_noise(rng: np.random.Generator, n: int, dtype: Any = np.float32) -> np.ndarray:
    """(n, V) Gumbel(0, 1) noise: argmax(logits + g) is an exact draw from softmax(logits).

    Drawing the noise for many steps at once turns sampling into one add and one argmax per
    character (the Gumbel-max trick), instead of a softmax, a cumulative sum and a search.
    """
    return rng.gumbel(size=(n, V)).astype(dtype)


def gen_row(repeats: int, H: int = 512, chars: int = 500) -> Row:
    """One stream, sampled, character by character: model.stepper against nn.RNN stepping.

    Ours samples with the Gumbel-max trick (see `gumbel_noise`); PyTorch with softmax and
    torch.multinomial, as its users write it. Both are exact draws from softmax(logits).
    """
    torch = _torch()
    model = CharRNN(V, H, 1, dtype="float32", seed=0)
    rnn, head = torch_model(model, torch)
    # same logits from the same state before timing
    tok = np.array([3])
    h = model.initial_state(1)
    for _ in range(3):
        ours_logits, h = model.step(tok, h)
    with torch.no_grad():
        th = torch.zeros(1, 1, H)
        for _ in range(3):
            xo = torch.zeros(1, 1, V)
            xo[0, 0, 3] = 1
            out, th = rnn(xo, th)
            their_logits = head(out[0]).numpy()
    rel = float(np.abs(ours_logits - their_logits).max() / np.abs(their_logits).max())
    check = _agree("logits", rel)
    rng = np.random.default_rng(3)
    gen = torch.Generator().manual_seed(3)

    def ours() -> None:
        step = model.stepper(1)
        tok = 0
        noise = gumbel_noise(rng, chars)
        for i in range(chars):
            tok = (step(tok)[0] + noise[i]).argmax()

    def theirs() -> None:
        with torch.no_grad():
            h = torch.zeros(1, 1, H)
            tok = 0
            for _ in range(chars):
                xo = torch.zeros(1, 1, V)
                xo[0, 0, tok] = 1
                out, h = rnn(xo, h)
                p = torch.softmax(head(out[0, 0]), dim=-1)
                tok = int(torch.multinomial(p, 1, generator=gen))

    t = alternate({"ours": ours, "theirs": theirs}, repeats, warmup=1)
    o, th = chars / median(t["ours"]), chars / median(t["theirs"])
    return Row(f"generate H={H}", f"H={H}, 1 stream, {chars} chars", o, th, "PyTorch step loop", check=check,
               samples=t)


def eval_row(repeats: int, H: int = 512, B: int = 64, T: int = 100) -> Row:
    """Forward only (the loss of a window) with `model.loss`, against nn.RNN under no_grad."""
    torch = _torch()
    rng = np.random.default_rng(4)
    x = rng.integers(0, V, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    model = CharRNN(V, H, 1, dtype="float32", seed=0)
    rnn, head = torch_model(model, torch)
    tx = torch.from_numpy(np.ascontiguousarray(x.T))
    ty = torch.from_numpy(np.ascontiguousarray(y.T)).reshape(-1)

    def ours() -> float:
        return model.loss(x, y)[0]

    def theirs() -> float:
        with torch.no_grad():
            out, _ = rnn(torch.nn.functional.one_hot(tx, V).float())
            return torch.nn.functional.cross_entropy(head(out).reshape(-1, V), ty).item()

    check = _agree("losses", _rel(ours(), theirs()))
    t = alternate({"ours": ours, "theirs": theirs}, repeats)
    o, th = B * T / median(t["ours"]), B * T / median(t["theirs"])
    g = train_flops(V, H, 1, B, T) / 3 / median(t["ours"]) / 1e9
    return Row(f"evaluate H={H}", f"H={H} B={B} T={T}", o, th, "PyTorch no_grad", gflops=g, check=check, samples=t)


# ------------------------------------------------------------------------------------------------
# the run


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        pass
    from .core import _jit

    out["numba"] = _jit.numba.__version__ if _jit.available() else "not used"
    blas = threads.thread_info()["blas"]
    if blas:
        out["blas"] = f"{blas[0]['library']} {blas[0]['version']} ({blas[0]['architecture']})"
    return out


def format_table(rows: list[Row], peak: float | None) -> str:
    lines = [
        "| row | setting | charrnn | baseline | ratio | GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.name == "peak":
            pct = f"{100 * r.ours / peak:.0f}%" if peak else ""
            lines.append(f"| peak | {r.setting} | {r.ours:.0f} GFLOP/s | | | {r.ours:.0f} | {pct} |")
            continue
        theirs = f"{r.theirs:,.0f} ({r.baseline})" if r.theirs else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        g = f"{r.gflops:.0f}" if r.gflops else ""
        pct = f"{100 * r.gflops / peak:.0f}%" if r.gflops and peak else ""
        lines.append(f"| {r.name} | {r.setting} | {r.ours:,.0f} {r.unit} | {theirs} | {ratio} | {g} | {pct} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m charrnn.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and no H=1024 row (about a minute)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads for both sides (default: charrnn's)")
    p.add_argument("--rows", default=",".join(ROW_GROUPS), help=f"comma-separated subset of {','.join(ROW_GROUPS)}")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 15, quick 5)")
    p.add_argument("--json", type=Path, default=None, help="also write the results (with every sample) here")
    p.add_argument(
        "--burn", action="store_true",
        help="keep one core busy with another process during the run, to measure the contention collapse",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    groups = [g.strip() for g in args.rows.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(ROW_GROUPS))
    if unknown:
        print(f"bench: unknown rows {unknown}; choose from {', '.join(ROW_GROUPS)}", file=sys.stderr)
        return 2
    if args.threads is not None:
        try:
            threads.set_threads(args.threads)
        except ConfigError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
    else:
        threads.ensure_threads()
    n_threads = threads.thread_info()["blas"][0]["threads"] if threads.thread_info()["blas"] else None
    if any(g != "peak" for g in groups):
        torch = _torch()
        torch.set_num_threads(n_threads or 1)
        torch_threads = torch.get_num_threads()
    else:
        torch_threads = None
    reps = args.repeats or (5 if args.quick else 15)

    print(f"threads: numpy BLAS {n_threads}, torch {torch_threads}; {versions()}", flush=True)
    burner = None
    if args.burn:
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        print(f"a busy process (pid {burner.pid}) shares the machine during this run", flush=True)
    try:
        rows = run_rows(groups, reps, args.quick)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    peak = max((r.ours for r in rows if r.name == "peak"), default=None)
    print()
    print(format_table(rows, peak))
    if args.json:
        doc = {
            "command": "python -m charrnn.bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "threads": {"numpy_blas": n_threads, "torch": torch_threads},
            "versions": versions(),
            "burn": args.burn,
            "peak_gflops": peak,
            "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
        }
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


def run_rows(groups: list[str], reps: int, quick: bool) -> list[Row]:
    rows: list[Row] = []

    def add(row: Row | None) -> None:
        if row is not None:
            rows.append(row)
            extra = f", {row.ratio:.2f}x" if row.ratio else ""
            print(f"  {row.name}: {row.ours:,.0f} {row.unit}{extra}  {row.check}", flush=True)

    if "peak" in groups:
        add(peak_row(max(3, reps // 2)))
    if "train" in groups:
        add(train_row(512, 64, 100, reps))
        add(train_row(128, 32, 64, reps * 4))
        add(train_row(100, 1, 25, reps * 20))
        if not quick:
            add(train_row(1024, 64, 100, max(3, reps // 3)))
    if "seed" in groups:
        add(seed_row(reps * 20))
    if "gen" in groups:
        add(gen_row(max(3, reps // 2)))
    if "eval" in groups:
        add(eval_row(reps * 2))
    if "peak" in groups and not quick:
        add(peak_row(max(3, reps // 2)))  # again at the end: the machine's speed drifts during a run
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
