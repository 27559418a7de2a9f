"""How the benchmark driver talks to the processes that run each side of a row.

Every side (charrnn, a PyTorch baseline, the seed-style loop) runs in a process of its own, so
no library's threads or caches are shared with another's: two libraries in one process measured
PyTorch at 65% and 34% of its standalone speed here, their BLAS threads competing. The driver
alternates the sides, asking each in turn for a block of timed calls, so a change in the
machine's load hits both.

A side process is started with one JSON argument (its `spec`), builds its job, and then answers
JSON lines on stdin/stdout:

    -> (start)                  <- {"check": <number or list>, "chars": <per call>}
    -> {"run": n}               <- {"times": [seconds of each of n calls]}
    -> {"quit": true}           (exits)

`check` is what the two sides must agree on before anything is timed (a loss, or logits).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Protocol


class Job(Protocol):
    chars: int  # characters processed by one call

    def check(self) -> Any: ...

    def __call__(self) -> None: ...


# Environment variables that fix a process's BLAS / OpenMP thread counts before the libraries load.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment of a side process: the current one, with thread counts pinned (or, with
    None, left to each library's default)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    if threads is not None:
        env.update({k: str(threads) for k in THREAD_ENV})
    return env


def serve(make_job: Callable[[dict[str, Any]], Job]) -> None:
    """The side process's main loop (see the module docstring)."""
    spec = json.loads(sys.argv[1])
    job = make_job(spec)
    _send({"check": job.check(), "chars": job.chars})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            return
        times = []
        for _ in range(int(cmd["run"])):
            t0 = time.perf_counter()
            job()
            times.append(time.perf_counter() - t0)
        _send({"times": times})


def _send(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
