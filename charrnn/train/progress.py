"""What the trainer shows while it runs, and what it records about the machine.

On a terminal (or in a notebook) a tqdm bar; where stderr is a pipe or a log file, a plain line
every PLAIN_SECONDS instead of the bar's carriage-return redraws. Progress lines are a courtesy:
metrics.jsonl and the checkpoints are the run's record, so a closed pipe or a vanished terminal
never stops training (`Tolerant`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

import numpy as np

# Seconds between the plain progress lines written where no bar can be redrawn (a log file).
PLAIN_SECONDS = 10.0


def make_bar(stream: Any, total: int, initial: int) -> Any:
    """A progress bar of `total` steps (0: unknown) from `initial`, as the stream can show it."""
    if not interactive(stream):  # a pipe or a log file: plain lines now and then, no redrawn bar
        return Lines(stream, total, initial)
    from tqdm.auto import tqdm  # a widget in notebooks, text in a terminal

    return tqdm(total=total or None, initial=initial, unit="step", file=stream, dynamic_ncols=True, smoothing=0.1)


def interactive(stream: Any) -> bool:
    """Whether progress can be redrawn in place: a terminal, or a notebook (its own widget)."""
    ipython = sys.modules.get("IPython")  # imported by a notebook's kernel; never imported here
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if type(shell).__name__ == "ZMQInteractiveShell":  # a notebook's kernel, not a program that imported it
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Lines:
    """The progress bar's place when stderr is not a terminal: one plain line every
    `PLAIN_SECONDS` (and the messages the run says), never the bar's carriage-return redraws,
    which fill a log file (tqdm's interface, as much of it as the loop uses)."""

    def __init__(self, stream: Any, total: int, initial: int) -> None:
        self.stream, self.total, self.n = stream, total, initial
        self.postfix = ""
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= PLAIN_SECONDS:
            self.last = now
            self._line()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def write(self, message: str, file: Any = None) -> None:
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        pass

    def _line(self) -> None:
        where = f"step {self.n:,}" + (f" of {self.total:,}" if self.total else "")
        print(where + (f": {self.postfix}" if self.postfix else ""), file=self.stream, flush=True)


class Tolerant:
    """A text stream whose failures to write (a closed pipe, a terminal gone, a closed file) are
    swallowed: after the first one it stays silent. None stands for sys.stdout as it is at each
    write."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.broken = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except (OSError, ValueError):
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def environment(objective: Any, resume: bool) -> dict[str, Any]:
    """What trained this invocation: the versions of charrnn and what it runs on, and the machine."""
    import platform
    from datetime import datetime, timezone
    from importlib import metadata

    from .. import __version__
    from ..threads import cpu_name, thread_info, workers

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    threads = workers()  # applies charrnn's choice, which training does anyway
    info = thread_info()
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "invocation": "resume" if resume else "new run", "step": objective.state.step,
        "backend": getattr(objective.cfg, "backend", "numpy"), "charrnn": __version__,
        "python": platform.python_version(), "numpy": np.__version__, "numba": version("numba"),
        "torch": version("torch"), "platform": platform.platform(), "machine": platform.machine(),
        "cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": info.get("usable_cpus"),
        "threads": threads, "threads_from": info.get("source"), "blas": [{k: lib.get(k) for k in ("library", "version", "architecture")}
                                     for lib in info.get("blas", [])],
    }
