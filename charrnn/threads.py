"""How many threads the BLAS library (OpenBLAS, MKL, ...) behind NumPy may use.

Almost all of charrnn's time is spent in matrix products, so this one number decides its speed.
The default is chosen from measurements (BENCHMARKS.md), not from the core count alone:

* the recurrence multiplies small (H, K) x (K, B) blocks, one per time step, and every product
  split over two threads ends with both threads waiting for each other;
* when another busy process shares the cores, that wait lasts a scheduler time slice: such
  products become tens of times *slower* with two threads than with one, while single-threaded
  calls lose only their share of the machine.

So the default is one thread per process (`DEFAULT_THREADS`): on a quiet 2-core machine two
threads made whole benchmark rows 1.0-1.6x faster, with one busy neighbour 5-13x slower
(BENCHMARKS.md). Whoever has the machine to themselves can ask for more with `set_threads(n)` or
the environment variable CHARRNN_THREADS=n; `thread_info()` reports what is in force.

Precedence: `set_threads(n)` > CHARRNN_THREADS > a count the program already gave the library
(the BLAS variables OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, OMP_NUM_THREADS, or a threadpoolctl
limit in force: then charrnn leaves the library alone) > DEFAULT_THREADS. The choice is applied
lazily, the first time the model computes something, so that importing charrnn changes nothing.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ConfigError

ENV_VAR = "CHARRNN_THREADS"
# Variables through which a user may already have told the BLAS library what to use.
BLAS_ENV_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")
DEFAULT_THREADS = 1

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
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where} must be a whole number of threads >= 1, got {value!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ConfigError(f"{where} must be a whole number of threads >= 1, got {value!r}"
                          if n < 1 else f"{where} must be at most {MAX_THREADS}, got {value!r}")
    return n


def set_threads(n: int | str) -> int:
    """Let the BLAS library use `n` threads from now on (in this process). Returns n."""
    if isinstance(n, bool):
        raise ConfigError(f"threads must be a whole number >= 1, got {n!r}")
    n = _parse(n, "threads")
    _blas_controller().limit(limits=n)
    _state.update(applied=True, threads=n, source="set_threads")
    return n


def requested_threads() -> tuple[int | None, str]:
    """(threads, where the number comes from) before anything is applied; threads None = leave alone."""
    if os.environ.get(ENV_VAR, "").strip():
        return _parse(os.environ[ENV_VAR], ENV_VAR), ENV_VAR
    for var in BLAS_ENV_VARS:
        if os.environ.get(var, "").strip():
            return None, var
    return DEFAULT_THREADS, "default"


def ensure_threads() -> None:
    """Apply the default / CHARRNN_THREADS once, unless set_threads was called first.

    Called by the model before its first computation; after that it is one dict lookup.
    """
    if _state["applied"]:
        return
    n, source = requested_threads()
    controller = _blas_controller()
    if source == "default" and any(lib.num_threads != usable_cpus() for lib in controller.lib_controllers):
        # BLAS libraries start with one thread per usable core; another count means the program
        # has already chosen one (threadpoolctl, say), and a default must not override a choice
        n, source = None, "left as found"
    if n is not None:
        controller.limit(limits=n)
    _state.update(applied=True, threads=n, source=source)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
        "threads": _state["threads"],
        "source": _state["source"] if _state["applied"] else "not applied yet",
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "blas": libs,
    }
