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

from ..core import tuning
from .params import cell_module


def min_shard_work(cell: str) -> int:
    """The smallest shard worth a worker for this cell (core/tuning.py): MIN_SHARD_WORK_COMPILED
    where a shard of that size runs as compiled kernels, which hold no GIL inside a step (the
    gated cells, when numba is there), else MIN_SHARD_WORK."""
    module, small = cell_module(cell), tuning.MIN_SHARD_WORK_COMPILED
    if module.KERNELS and module.compiled(1, small):
        return small
    return tuning.MIN_SHARD_WORK


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def stream_shards(batch_size: int, hidden_size: int, workers: int, min_work: int | None = None) -> list[slice]:
    """Contiguous slices of the B streams, one per worker (sizes within one of each other);
    fewer when the streams are too few or the work too small to be worth splitting: each shard
    has at least `min_work` numbers per step (default tuning.MIN_SHARD_WORK)."""
    min_work = tuning.MIN_SHARD_WORK if min_work is None else min_work
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
