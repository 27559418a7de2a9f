"""One recurrent layer, forward + backward of a window: charrnn.core's cells against nn.LSTM / nn.GRU.

    python benchmarks/cells.py --cell lstm --hidden 512 --batch 64 --steps 100 [--rounds 5] [--dense]

Input ids over V=65 symbols (PyTorch gets them as a one-hot float tensor, built before the clock
starts), or with --dense a (T, B, H) float input whose gradient is computed too (a layer above
the first); float32, one thread on both sides. CHARRNN_JIT=0 in the environment times charrnn's
NumPy code instead of its compiled kernels. Each side runs in its own process (the two libraries
never share one), the processes alternate, ours first, for --rounds rounds; each process times
--windows windows after a warm-up and reports its median, and the table gives the median of those.
With --side ours|torch a single process runs and prints its per-window median in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

V = 65


def _ours(args):
    import numpy as np

    from charrnn.core import cell as cell_module

    cell = cell_module(args.cell)
    rng = np.random.default_rng(0)
    H, B, T, G = args.hidden, args.batch, args.steps, cell.GATES
    k = 1 / np.sqrt(H)
    I = H if args.dense else V
    sizes = {"G*H": G * H, "H": H, "I": I}
    # the layer's parameters in the order of the cell's table, PyTorch's uniform initialisation
    params = tuple(rng.uniform(-k, k, [sizes[d] for d in p.shape]).astype(np.float32) for p in cell.PARAMS)
    grads = tuple(np.zeros_like(a) for a in params)
    x = rng.standard_normal((T, B, I)).astype(np.float32) if args.dense else rng.integers(0, V, (T, B))
    state0 = tuple(np.zeros((B, H), np.float32) for _ in cell.STATE)
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)

    def window():
        hs, _, cache = cell.forward(x, params, state0)
        cell.backward(dhs, cache, params, grads, need_dx=args.dense)

    return window


def _torch(args):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    H, B, T = args.hidden, args.batch, args.steps
    I = H if args.dense else V
    from charrnn.core import cell as cell_module

    module = getattr(torch.nn, cell_module(args.cell).TORCH_MODULE)(I, H)
    if args.dense:
        inp = torch.randn(T, B, I, requires_grad=True)
    else:
        inp = torch.nn.functional.one_hot(torch.randint(0, V, (T, B)), V).float()
    state0 = torch.zeros(1, B, H)
    parts = len(cell_module(args.cell).STATE)  # (h, c) for the LSTM
    state0 = (state0, state0.clone()) if parts == 2 else state0
    dhs = torch.randn(T, B, H)

    def window():
        out, _ = module(inp, state0)
        out.backward(dhs)

    return window


def run_side(args) -> float:
    window = (_ours if args.side == "ours" else _torch)(args)
    for _ in range(args.warmup):
        window()
    times = []
    for _ in range(args.windows):
        t0 = time.perf_counter()
        window()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--dense", action="store_true", help="(T, B, H) float input, with its gradient")
    p.add_argument("--windows", type=int, default=0, help="timed windows per process (default: about 1.5 s)")
    p.add_argument("--warmup", type=int, default=0, help="untimed windows first (default: about 0.3 s)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--side", choices=("ours", "torch"))
    args = p.parse_args()
    if not args.windows or not args.warmup:
        work = args.hidden * args.hidden * args.batch * args.steps  # about 1 ms per 2e6 at H=512, B=64
        per_ms = max(work / 2.5e6, 0.05)
        args.windows = args.windows or max(5, int(1500 / per_ms))
        args.warmup = args.warmup or max(2, int(300 / per_ms))
    if args.side:
        print(json.dumps(run_side(args)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    base = [sys.executable, __file__, "--cell", args.cell, "--hidden", str(args.hidden), "--batch",
            str(args.batch), "--steps", str(args.steps), "--windows", str(args.windows), "--warmup",
            str(args.warmup)] + (["--dense"] if args.dense else [])
    res = {"ours": [], "torch": []}
    for _ in range(args.rounds):
        for side in ("ours", "torch"):
            out = subprocess.run(base + ["--side", side], env=env, capture_output=True, text=True, check=True)
            res[side].append(json.loads(out.stdout))
    ours, theirs = statistics.median(res["ours"]), statistics.median(res["torch"])
    name = f"{args.cell} H={args.hidden} B={args.batch} T={args.steps}{' dense' if args.dense else ''}"
    print(f"{name}: ours {ours:.3f} ms, "
          f"torch {theirs:.3f} ms, {theirs / ours:.2f}x   "
          f"(ours {' '.join(f'{v:.3g}' for v in res['ours'])}; torch {' '.join(f'{v:.3g}' for v in res['torch'])})")


if __name__ == "__main__":
    main()
