"""Two checkouts of charrnn side by side: the whole model's training step (forward and backward
of one window, CharRNN.loss_and_grads) in each, for every cell and size asked.

    python benchmarks/ab.py OLD_TREE NEW_TREE [--cells rnn,lstm,gru] [--sizes 128x32x64,512x64x100]
                            [--rounds 5] [--windows 20] [--old-env K=V] [--new-env K=V]

The same tree twice with an environment variable that differs compares two paths of one engine:
`python benchmarks/ab.py . . --old-env CHARRNN_JIT=0` times NumPy alone against the compiled kernels.

A size is HxBxT. Each measurement is a process of its own that imports charrnn from one tree
(its folder first on sys.path), warms up, times --windows windows and prints their median; the
two trees' processes alternate, old first, for --rounds rounds, and the table gives the median of
each side's medians and new/old as a speed ratio (above 1: the new tree is faster). One BLAS
thread and one charrnn worker on both sides, so that the comparison is of the code, not of how
the machine's cores are shared at that moment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

V = 65  # the vocabulary of tiny-shakespeare

CHILD = r"""
import sys, time, statistics
sys.path.insert(0, sys.argv[1])
import numpy as np
from charrnn import CharRNN, threads
threads.set_threads(1)
cell, H, B, T, windows = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
model = CharRNN(%d, H, 1, dtype="float32", seed=0, cell=cell)
rng = np.random.default_rng(0)
x, y = rng.integers(0, %d, (B, T)), rng.integers(0, %d, (B, T))
for _ in range(3):
    model.loss_and_grads(x, y)
times = []
for _ in range(windows):
    t = time.perf_counter()
    model.loss_and_grads(x, y)
    times.append(time.perf_counter() - t)
print(statistics.median(times))
""" % (V, V, V)


def measure(tree: str, cell: str, size: tuple[int, int, int], windows: int, extra: dict[str, str]) -> float:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree), cell, *map(str, size), str(windows)],
                         capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--sizes", default="128x32x64,512x64x100")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--windows", type=int, default=20)
    p.add_argument("--old-env", action="append", default=[], metavar="K=V", help="set for the old side only")
    p.add_argument("--new-env", action="append", default=[], metavar="K=V", help="set for the new side only")
    args = p.parse_args()
    old_env = dict(kv.split("=", 1) for kv in args.old_env)
    new_env = dict(kv.split("=", 1) for kv in args.new_env)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print("| cell | H x B x T | old ms | new ms | new speed / old |\n|---|---|---|---|---|")
    for cell in args.cells.split(","):
        for size in sizes:
            old, new = [], []
            for _ in range(args.rounds):
                old.append(measure(args.old, cell, size, args.windows, old_env))
                new.append(measure(args.new, cell, size, args.windows, new_env))
            a, b = statistics.median(old), statistics.median(new)
            print(f"| {cell} | {'x'.join(map(str, size))} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.3f} |", flush=True)


if __name__ == "__main__":
    main()
