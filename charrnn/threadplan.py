"""Training's count of cores, decided per configuration from what the machine measures.

Worker threads over the streams (threads.py) win on an idle machine for most windows, but not for
all: beside a busy process two workers of a small window may get one core between them and lose
what splitting costs (BENCHMARKS.md, "Using the whole machine": the GRU at H=128 ran 4-9% slower on
two cores than on one). So when a run starts and nothing chose a count (no --threads, no
CHARRNN_THREADS, no BLAS variable: `threads.chosen_elsewhere()`), its own step is timed:

    measure_step_times(model, B, T, cores)   `model.loss_and_grads` on a synthetic window with one
                                             worker and with `cores`, alternately, as the machine
                                             is and then beside a busy process started for it
    decide(timings, cores, busy)             `cores` where that is faster by
                                             tuning.THREADS_MIN_SPEEDUP in the condition the
                                             machine is in now (`busy_now`), else 1

The measurement (both conditions' speedups) is cached in threads.json of the user's cache folder
(io/cache.py: $CHARRNN_CACHE_DIR, $XDG_CACHE_HOME/charrnn or ~/.cache/charrnn), keyed by the
configuration (`plan_key`) and the machine (`fingerprint`), so each configuration is measured once
per machine; a cache that cannot be read or written is ignored. Each new run decides from the
cached speedups and the condition the machine is in when it starts: where another process is
running, the busy figure decides, and two workers that would lose to one beside it are not
started; on a machine left to the run, the figure as measured without a neighbour decides, and
the workers that pay off there are used. (Deciding once for both conditions would give up the
1.5-1.8x of two workers on an idle two-core machine to avoid losing 6-17% beside a busy process:
BENCHMARKS.md.) A run records its worker count in each checkpoint (the state's "workers"), and a
resume reuses it without measuring or deciding again: the shards' gradients are summed in order,
so another count changes the rounding. A count given on resume (--threads, CHARRNN_THREADS)
overrides the record, and the resume stays exact only where it gives the recorded count.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import numpy as np

from . import threads
from .core import tuning
from .errors import CharRNNError

CACHE_NAME = "threads.json"
CACHE_FORMAT = "charrnn-thread-plans"
CACHE_VERSION = 2  # 2: the speedups of both conditions, decided per run (1: a count decided once)
# The conditions a measurement times, in order: the machine as it is, and beside a busy process.
CONDITIONS = ("as is", "busy")
# The machine counts as busy when, on average over BUSY_SAMPLES readings BUSY_INTERVAL seconds
# apart, at least this many other processes are running (the kernel's count of runnable tasks,
# this one's own left out).
BUSY_OTHERS = 0.5
BUSY_SAMPLES = 5
BUSY_INTERVAL = 0.02
# Time steps of the short window that warms the step up and tells how long a step of the run's takes.
GAUGE_STEPS = 8

# condition -> worker count -> median seconds of one training step
Timings = dict[str, dict[int, float]]
Measure = Callable[[Any, int, int, int], Timings]


@dataclass(frozen=True)
class Plan:
    """The count a run trains with and where it came from (one of threads.PLAN_SOURCES but "default")."""

    threads: int
    source: str
    speedups: dict[str, float] | None = None  # condition -> one worker's step time / every core's
    condition: str | None = None  # the condition that decided (CONDITIONS)


# ------------------------------------------------------------------------------------------------
# the measurement and the rule


@contextmanager
def busy_neighbour() -> Iterator[subprocess.Popen]:
    """Another process spinning on one core for as long as the block runs (the block gets it)."""
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", "print(flush=True)\nwhile True: pass"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        proc.stdout.readline()  # it spins from here on
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def measure_step_times(model: Any, batch_size: int, seq_len: int, cores: int,
                       clock: Callable[[], float] = time.perf_counter,
                       neighbour: Callable[[], ContextManager[Any]] = busy_neighbour) -> Timings:
    """Median seconds of `model.loss_and_grads` on a synthetic (batch_size, seq_len) window with
    one worker and with `cores`, taken alternately (tuning.THREADS_MEASURE_REPEATS each), as the
    machine is and inside `neighbour()`. A step longer than the budget allows
    (tuning.THREADS_MEASURE_SECONDS) is timed over fewer time steps. The model is left as found
    (its dropout generator included); the thread count is left at `cores`."""
    rng = np.random.default_rng(0)
    V = model.vocab_size
    saved = model.dropout_rng.bit_generator.state

    def window(T: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, V, (batch_size, T)), rng.integers(0, V, (batch_size, T))

    def step(n: int, x: np.ndarray, y: np.ndarray) -> float:
        threads.set_threads(n, source="measured")
        t0 = clock()
        model.loss_and_grads(x, y)
        return clock() - t0

    try:
        short = window(min(seq_len, GAUGE_STEPS))
        step(1, *short)  # the first call compiles the kernels
        per_step = max(step(1, *short) / short[0].shape[1], 1e-9)
        T, repeats = _measured_window(seq_len, per_step)
        x, y = window(T)
        step(cores, x, y)  # the workers' pool started, their caches warm

        def alternate() -> dict[int, float]:
            t: dict[int, list[float]] = {1: [], cores: []}
            for _ in range(repeats):
                for n in t:
                    t[n].append(step(n, x, y))
            return {n: statistics.median(v) for n, v in t.items()}

        timings = {CONDITIONS[0]: alternate()}
        with neighbour():
            timings[CONDITIONS[1]] = alternate()
        return timings
    finally:
        model.dropout_rng.bit_generator.state = saved
        threads.set_threads(cores, source="measured")


def _measured_window(seq_len: int, per_step: float) -> tuple[int, int]:
    """(time steps, repeats) of the timed calls: the run's window and tuning.THREADS_MEASURE_REPEATS
    where they fit in tuning.THREADS_MEASURE_SECONDS at `per_step` seconds a time step (one
    worker's), else a shorter window (at least THREADS_MEASURE_MIN_STEPS) and then fewer repeats."""
    calls_per_repeat = len(CONDITIONS) * 2
    for repeats in (tuning.THREADS_MEASURE_REPEATS, tuning.THREADS_MEASURE_MIN_REPEATS):
        fits = int(tuning.THREADS_MEASURE_SECONDS / (calls_per_repeat * repeats * per_step))
        if fits >= min(seq_len, tuning.THREADS_MEASURE_MIN_STEPS):
            return min(seq_len, fits), repeats
    return min(seq_len, tuning.THREADS_MEASURE_MIN_STEPS), tuning.THREADS_MEASURE_MIN_REPEATS


def decide(timings: Timings, cores: int, busy: bool = False) -> tuple[int, dict[str, float]]:
    """(count, speedups): `cores` where its step is at least tuning.THREADS_MIN_SPEEDUP times as
    fast as one worker's in the condition the machine is in (`busy`: another process runs), else
    1; speedups per condition."""
    speedups = speedups_of(timings, cores)
    return choose(speedups, cores, busy), speedups


def speedups_of(timings: Timings, cores: int) -> dict[str, float]:
    """Per condition: one worker's step time over every core's (what the cache keeps)."""
    return {c: t[1] / max(t[cores], 1e-12) for c, t in timings.items()}


def choose(speedups: dict[str, float], cores: int, busy: bool) -> int:
    """The count the speedups give in the machine's condition (an untimed condition: one worker)."""
    condition = CONDITIONS[1] if busy else CONDITIONS[0]
    return cores if speedups.get(condition, 0.0) >= tuning.THREADS_MIN_SPEEDUP else 1


def others_running(samples: int = BUSY_SAMPLES, interval: float = BUSY_INTERVAL) -> float:
    """How many other processes run on the machine now: the mean over `samples` readings of the
    kernel's count of runnable tasks (Linux's /proc/loadavg), less this one; elsewhere, the
    one-minute load average."""
    counts = []
    for k in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            load = threads.load_average()
            return load[0] if load else 0.0
        if k + 1 < samples:
            time.sleep(interval)
    return max(0.0, statistics.fmean(counts))


def busy_now() -> bool:
    """Whether another process keeps a core busy as the run starts (tests replace it)."""
    return others_running() >= BUSY_OTHERS


# ------------------------------------------------------------------------------------------------
# the cache


def cache_path() -> Path:
    from .io.cache import default_cache_dir

    return default_cache_dir() / CACHE_NAME


def plan_key(model: Any, batch_size: int, seq_len: int) -> str:
    """What a training step's speed depends on, as the cache's key (the machine aside)."""
    from .core import _jit

    return (f"train {model.cell} H={model.hidden_size} L={model.num_layers} B={batch_size} T={seq_len} "
            f"V={model.vocab_size} {np.dtype(model.dtype).name} numba={'on' if _jit.available() else 'off'}")


def fingerprint() -> dict[str, Any]:
    """The machine, as far as a step's speed goes: its processor, the cores this process may use,
    NumPy and its BLAS library, and numba."""
    from importlib import metadata

    try:
        numba = metadata.version("numba")
    except metadata.PackageNotFoundError:
        numba = None
    blas = [f"{lib['library']} {lib['version']} {lib['architecture']}" for lib in threads.thread_info()["blas"]]
    return {"cpu": threads.cpu_name(), "usable_cores": threads.usable_cpus(), "numpy": np.__version__,
            "blas": blas, "numba": numba}


def _entry_key(key: str, machine: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key} | machine {digest}"


def read_plans(path: Path) -> dict[str, Any]:
    """The cached plans by key; {} for a missing, unreadable or malformed cache (never an error:
    it is measured again and replaced)."""
    from .io.readers import read_json

    try:
        doc = read_json(path, what="cache of thread plans")
    except (CharRNNError, OSError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("version") != CACHE_VERSION:
        return {}
    plans = doc.get("plans")
    return plans if isinstance(plans, dict) else {}


def cached_speedups(plans: dict[str, Any], key: str) -> dict[str, float] | None:
    """The speedups cached under `key`, where they are a number for each condition."""
    entry = plans.get(key)
    found = entry.get("speedups") if isinstance(entry, dict) else None
    if not (isinstance(found, dict) and set(found) == set(CONDITIONS)):
        return None
    if not all(type(v) in (int, float) and np.isfinite(v) and v > 0 for v in found.values()):
        return None
    return {c: float(found[c]) for c in CONDITIONS}


def write_plans(path: Path, plans: dict[str, Any]) -> bool:
    """Write the cache atomically (io/writer.py); False, and nothing raised, where it cannot be."""
    from .io.writer import atomic_write_bytes

    doc = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "plans": plans}
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(doc, indent=1, sort_keys=True).encode())
    except (OSError, CharRNNError):
        return False
    return True


# ------------------------------------------------------------------------------------------------
# a run's count


def plan_training(model: Any, batch_size: int, seq_len: int, *, given: int = 0, recorded: int = 0,
                  measure: Measure | None = None, cache: Path | None = None,
                  say: Callable[[str], None] | None = None) -> Plan | None:
    """Set the count of cores a run of `model` on (batch_size, seq_len) windows trains with, and
    say where it came from; None where it was chosen elsewhere (see the module docstring).

    given: a count the run's settings name (0: none). recorded: the count its checkpoint records
    (0: none, a new run). measure: measure_step_times, or a stand-in. cache: the cache file
    (default cache_path())."""
    if given:
        threads.set_threads(given)
        return None
    if threads.chosen_elsewhere() is not None:
        return None
    if recorded:
        threads.set_threads(recorded, source="checkpoint")
        return Plan(recorded, "checkpoint")
    return default_plan(model, batch_size, seq_len, measure=measure, cache=cache, say=say)


def default_plan(model: Any, batch_size: int, seq_len: int, *, measure: Measure | None = None,
                 cache: Path | None = None, say: Callable[[str], None] | None = None) -> Plan:
    """The count a new run of this configuration takes where nothing else chooses one (from the
    cache, or measured and cached), set in force as plan_training does."""
    cores = threads.set_threads(threads.usable_cpus(), source="one worker")
    if cores == 1 or model.workers_for(batch_size) == 1:
        return Plan(cores, "one worker")  # a window of one shard whatever the count: nothing to choose
    path = cache_path() if cache is None else Path(cache)
    machine = fingerprint()
    key = _entry_key(plan_key(model, batch_size, seq_len), machine)
    plans = read_plans(path)
    speedups, source, kept = cached_speedups(plans, key), "cache", False
    if speedups is None:
        timings = (measure or measure_step_times)(model, batch_size, seq_len, cores)
        speedups, source = speedups_of(timings, cores), "measured"
        # the load average says how busy "as is" was: a measurement made on a loaded machine is
        # kept too (pessimistic for the idle condition), until the file is deleted
        plans[key] = {"cores": cores, "speedups": speedups, "machine": machine,
                      "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "load_average": threads.load_average()}
        kept = write_plans(path, plans)
    busy = busy_now()
    n = choose(speedups, cores, busy)
    threads.set_threads(n, source=source)
    condition = CONDITIONS[1] if busy else CONDITIONS[0]
    if say is not None:
        ratios = ", ".join(f"{s:.2f}x {c}" for c, s in speedups.items())
        where = (f"from {path}" if source == "cache" else f"measured, kept in {path}" if kept
                 else f"measured, not kept: {path} cannot be written")
        say(f"charrnn: training on {n} core(s): {cores} workers' step against one worker's {ratios} ({where}); "
            f"the machine is {'busy' if busy else 'free'} now, so the {condition} figure decides (at least "
            f"{tuning.THREADS_MIN_SPEEDUP:.2f}x keeps them); --threads N chooses")
    return Plan(n, source, speedups, condition)
