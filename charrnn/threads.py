"""How many cores charrnn uses, and how: worker threads over the streams, one BLAS thread each.

Almost all of charrnn's time is spent in matrix products. The recurrence multiplies small
(H, K) x (K, B) blocks, one per time step, and a BLAS library (OpenBLAS) that splits every such
product over two threads makes both wait for each other at every step; when another busy process
shares the cores, that wait lasts a scheduler time slice, and such products become tens of times
slower (BENCHMARKS.md). So charrnn never lets the BLAS library thread: it keeps it at one thread
and uses the cores itself, splitting the B streams of a window across worker threads
(model/parallel.py). The streams' recurrences are independent; each worker runs its share's
forward and backward pass with its own single-threaded BLAS calls (NumPy and the compiled
kernels release the GIL), and the weight gradients are summed once at the end. The workers meet
once per window instead of once per product, so a busy neighbour slows them down by its share of
the machine and no more.

`threads` is the total number of cores used (the number of workers). `set_threads(n)` or the
environment variable CHARRNN_THREADS=n chooses it; "all" means every core the process may use:
its CPU affinity (`os.sched_getaffinity`) bounded by its cgroup's CPU quota (cgroup v2 `cpu.max`,
or v1 `cpu.cfs_quota_us`). `thread_info()` reports what is in force.

The default is DEFAULT_CORES, every usable core, chosen from the measurements in BENCHMARKS.md
("Using the whole machine": with and without a busy neighbour, against one thread and against
OpenBLAS's own threads, which collapse when another process runs). A window too
small to split (core/tuning.py: at least MIN_SHARD_WORK numbers per worker) runs on
one worker whatever the count. Training goes further where nothing else chose a count
(`chosen_elsewhere()` is None): it measures its own step with one worker and with every core,
idle and beside a busy process, and keeps every core only where it wins both (threadplan.py).

Precedence: `set_threads(n)` > CHARRNN_THREADS > a count the program already gave the library
(the BLAS variables OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, OMP_NUM_THREADS, or a threadpoolctl
limit in force: then charrnn leaves the library alone and runs one worker) > the default. The
choice is applied lazily, the first time the model computes something, so that importing charrnn
changes nothing.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ConfigError

ENV_VAR = "CHARRNN_THREADS"
# Variables through which a user may already have told the BLAS library what to use.
BLAS_ENV_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")
# Each worker's BLAS threads: the library never threads (module docstring).
BLAS_THREADS = 1
# Cores used when nothing says otherwise: a number, or "all" (module docstring).
DEFAULT_CORES: int | str = "all"

_state: dict[str, Any] = {"applied": False, "threads": None, "source": None}
_controller: Any = None


def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded by NumPy (built once: it scans the process)."""
    global _controller
    if _controller is None:
        import numpy  # noqa: F401  (the BLAS library must be loaded before it can be found)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


# More threads than any machine has cores; the BLAS libraries take a C int.
MAX_THREADS = 4096


def _parse(value: Any, where: str) -> int:
    if str(value).strip().lower() == "all":
        return usable_cpus()
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where} must be a whole number of cores >= 1 or 'all', got {value!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ConfigError(f"{where} must be a whole number of cores >= 1 or 'all', got {value!r}"
                          if n < 1 else f"{where} must be at most {MAX_THREADS}, got {value!r}")
    return n


# Where a count may come from that training's own plan (threadplan.py) may replace: the default,
# or a plan made earlier in this process (for another run).
PLAN_SOURCES = ("default", "measured", "cache", "checkpoint", "one worker")


def set_threads(n: int | str, source: str = "set_threads") -> int:
    """Use `n` cores from now on (in this process): n workers, one BLAS thread each. Returns n.

    `source` says who chose it (`thread_info()` reports it): the caller by default, which no
    plan of training's overrides; threadplan.py passes one of PLAN_SOURCES."""
    if isinstance(n, bool):
        raise ConfigError(f"threads must be a whole number >= 1, got {n!r}")
    n = _parse(n, "threads")
    _blas_controller().limit(limits=BLAS_THREADS)
    _state.update(applied=True, threads=n, source=source)
    return n


def chosen_elsewhere() -> str | None:
    """Where a thread count that training must keep comes from (set_threads, CHARRNN_THREADS, a
    BLAS variable, a BLAS limit the program set), or None where only a default decides."""
    if _state["applied"]:
        return None if _state["source"] in PLAN_SOURCES else _state["source"]
    _, source = requested_threads()
    if source != "default":
        return source
    return "left as found" if _blas_already_limited() else None


def _blas_already_limited() -> bool:
    """Whether the program gave the BLAS library a count of its own before charrnn applied one:
    the libraries start with one thread per usable core."""
    return any(lib.num_threads != _affinity_cpus() for lib in _blas_controller().lib_controllers)


def workers() -> int:
    """How many worker threads share a window's streams (1: the plain single-thread path)."""
    ensure_threads()
    return _state["threads"] or 1


def requested_threads() -> tuple[int | None, str]:
    """(threads, where the number comes from) before anything is applied; threads None = leave alone."""
    if os.environ.get(ENV_VAR, "").strip():
        return _parse(os.environ[ENV_VAR], ENV_VAR), ENV_VAR
    for var in BLAS_ENV_VARS:
        if os.environ.get(var, "").strip():
            return None, var
    return _parse(DEFAULT_CORES, "DEFAULT_CORES"), "default"


def ensure_threads() -> None:
    """Apply the default / CHARRNN_THREADS once, unless set_threads was called first.

    Called by the model before its first computation; after that it is one dict lookup.
    """
    if _state["applied"]:
        return
    n, source = requested_threads()
    if source == "default" and _blas_already_limited():
        # BLAS libraries start with one thread per usable core; another count means the program
        # has already chosen one (threadpoolctl, say), and a default must not override a choice
        n, source = None, "left as found"
    if n is not None:
        _blas_controller().limit(limits=BLAS_THREADS)
    _state.update(applied=True, threads=n, source=source)


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in cores (quota / period), or None for none.

    cgroup v2 writes "QUOTA PERIOD" (or "max PERIOD") in cpu.max; v1 has cpu.cfs_quota_us (-1
    for none) and cpu.cfs_period_us. Only the process's own cgroup is read, where a container
    puts its limit."""
    try:
        quota, period = open(os.path.join(root, "cpu.max")).read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open(os.path.join(root, "cpu", "cpu.cfs_quota_us")).read())
        period = int(open(os.path.join(root, "cpu", "cpu.cfs_period_us")).read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """Cores this process may use: its affinity mask, bounded by its cgroup's CPU quota
    (rounded up: a quota of 1.5 cores keeps two workers busy three quarters of the time)."""
    n = _affinity_cpus()
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return n


def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), or what the platform says."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages, where the platform tells: other work on
    the machine moves every measurement of speed, so the measurements record it."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def thread_info() -> dict[str, Any]:
    """What is in force: charrnn's choice, where it came from, and each BLAS library's own view."""
    libs = []
    for lib in _blas_controller().lib_controllers:
        info = lib.info()
        libs.append(
            {
                "library": info.get("internal_api"),
                "version": info.get("version"),
                "threads": info.get("num_threads"),
                "architecture": info.get("architecture"),
                "threading_layer": info.get("threading_layer"),
            }
        )
    return {
        "threads": _state["threads"],  # cores used: worker threads over the streams
        "source": _state["source"] if _state["applied"] else "not applied yet",
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "blas": libs,
    }
