"""The streams of a window shared out among worker threads (see threads.py for why threads).

    shards = stream_shards(B, H, workers)     # contiguous slices of the B streams
    results = run_shards(fn, shards)          # fn(shard) for each, in the workers, in order

Each shard is a window of B_i streams that the model runs exactly as it runs a whole window, on
its own arrays; the caller combines the results in shard order, so a fixed number of workers
always gives the same numbers (exact resume), and one worker is the plain path itself.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ..core import _jit

# A shard below this many numbers per step (B_i * H) stays whole. Each step of a shard makes a
# few NumPy calls that hold the GIL for a microsecond or two around a product that releases it;
# when the product itself takes only a few microseconds, the workers queue for the GIL, and on a
# loaded machine a worker preempted while holding it stalls the others. Measured side by side on
# a 2-core machine shared with other work (`charrnn bench --rows cores`, BENCHMARKS.md): two
# workers of 16 streams at H=128 ran at 0.57x one thread, two of 32 at H=512 at 1.09x. This holds
# for the tanh cell, whose steps are NumPy calls.
MIN_SHARD_WORK = 4096
# The same for the LSTM and GRU when their steps run as compiled kernels (numba), which hold no
# GIL inside a step: a quarter of the tanh cell's. Measured idle and with one core busy, a long
# run of each side in its own process (BENCHMARKS.md): two workers of 16 streams at H=128 (LSTM)
# ran 1.86x one thread idle and 1.05x beside a busy process, two of 16 at H=64 1.88x and 1.41x,
# where the tanh cell's two of 16 at H=128 lost (0.73x) beside the busy process.
MIN_SHARD_WORK_COMPILED = 1024


def min_shard_work(cell: str) -> int:
    """The smallest shard worth a worker for this cell: MIN_SHARD_WORK_COMPILED where its steps
    run as compiled kernels (the gated cells, when numba is there), else MIN_SHARD_WORK."""
    return MIN_SHARD_WORK_COMPILED if cell != "rnn" and _jit.available() else MIN_SHARD_WORK


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def stream_shards(batch_size: int, hidden_size: int, workers: int, min_work: int | None = None) -> list[slice]:
    """Contiguous slices of the B streams, one per worker (sizes within one of each other);
    fewer when the streams are too few or the work too small to be worth splitting: each shard
    has at least `min_work` numbers per step (default MIN_SHARD_WORK)."""
    min_work = MIN_SHARD_WORK if min_work is None else min_work
    n = max(1, min(workers, batch_size, (batch_size * hidden_size) // min_work))
    base, extra = divmod(batch_size, n)
    out, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        out.append(slice(start, stop))
        start = stop
    return out


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="charrnn")
            _pool_size = size
        return _pool


def run_shards(fn: Callable[[slice], Any], shards: list[slice]) -> list[Any]:
    """[fn(s) for s in shards], the first in the calling thread and the others in the pool's
    threads at the same time. An exception in any is raised here once all have finished."""
    if len(shards) == 1:
        return [fn(shards[0])]
    pool = _executor(len(shards) - 1)
    err = np.geterr()  # NumPy's error handling is per thread: the workers take the caller's

    def call(s: slice) -> Any:
        with np.errstate(**err):
            return fn(s)

    futures = [pool.submit(call, s) for s in shards[1:]]
    try:
        first = fn(shards[0])
    finally:
        for f in futures:
            f.exception()  # waits for every one, whatever happened in this thread
    return [first, *[f.result() for f in futures]]
