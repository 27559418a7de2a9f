"""The NumPy engine data-parallel over torch.distributed (gloo), against charrnn's worker threads.

Each process computes the loss and gradients of its B/N streams with the NumPy model (one BLAS
thread) and the gradients are summed over the processes with one all-reduce of a flat buffer, as
DDP's buckets do; the optimizer's update is left out (it is the same on both sides). Run the two
sides one after the other, in the same conditions:

    torchrun --standalone --nproc-per-node 2 benchmarks/numpy_gloo.py 512 lstm 64
    python benchmarks/numpy_gloo.py 512 lstm 64 --threads 2     # worker threads, one process
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("hidden", type=int)
    p.add_argument("cell")
    p.add_argument("batch", type=int)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1, help="worker threads (without torchrun)")
    a = p.parse_args()

    from charrnn import CharRNN, threads

    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
        torch.set_num_threads(1)
        rank, size = dist.get_rank(), dist.get_world_size()
        threads.set_threads(1)
    else:
        rank, size = 0, 1
        threads.set_threads(a.threads)
    model = CharRNN(65, a.hidden, 1, "float32", seed=0, cell=a.cell)
    rng = np.random.default_rng(rank)
    x, y = (rng.integers(0, 65, (a.batch // size, a.seq_len)) for _ in range(2))

    def step() -> None:
        _, grads, _ = model.loss_and_grads(x, y)
        if distributed:
            flat = torch.from_numpy(np.concatenate([g.ravel() for g in grads.values()]))
            dist.all_reduce(flat)

    def finished(started: float) -> bool:
        late = time.perf_counter() - started >= a.seconds
        if not distributed:
            return late
        flag = torch.tensor([int(late)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every process stops after the same step
        return bool(flag.item())

    for _ in range(3):
        step()
    started, steps = time.perf_counter(), 0
    while True:
        step()
        steps += 1
        if finished(started):
            break
    speed = steps * a.batch * a.seq_len / (time.perf_counter() - started)
    if rank == 0:
        side = f"{size} gloo processes" if distributed else f"{a.threads} worker thread(s)"
        print(f"{side}, {a.cell} H={a.hidden} B={a.batch}: {speed:,.0f} chars/s")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
