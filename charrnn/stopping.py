"""One flag that says "take no new work": set when the command line gets SIGINT, SIGTERM or SIGHUP.

The command line (cli/__init__.py) turns those signals into an exception raised in the main
thread where it stands (KeyboardInterrupt for Ctrl-C, `Stopped` for the others), so that every
`finally` runs on the way out. An exception reaches the main thread only: the streams that
generate_many shares out among worker threads (model/parallel.py) would run on to their end, and
the process would wait for them before it could exit (a minute for 20,000 samples). So the
handler also sets this flag, and every long loop checks it between its steps (`check`), which
stops a worker thread within a step: generation, evaluation's windows, the diagnostics' loops and
the novelty index's construction. Training has its own handler, which lets the step in progress
finish and writes a checkpoint (train/loop.py), and never sets the flag.
"""

from __future__ import annotations

import threading

_requested = threading.Event()
_signum: list[int] = [0]  # the signal that set the flag, for the exception a worker raises


class Stopped(BaseException):
    """SIGTERM or SIGHUP (or, in a worker thread, any stop signal), raised where the program
    stands so that every `finally` and clean-up runs (the default action would end the process
    with its temporary files left behind). A BaseException, as KeyboardInterrupt is: no
    `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def request(signum: int) -> None:
    """Ask every long loop to stop at its next step (the signal handler's job)."""
    _signum[0] = signum
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Between two steps of a long loop: raise Stopped once a stop was requested. Costs a
    fraction of a microsecond, against a step's tens at least."""
    if _requested.is_set():
        raise Stopped(_signum[0])


def clear() -> None:
    """Forget a request: a command run again in the same process starts afresh."""
    _requested.clear()
