"""The `charrnn` command line: a thin shell over the Python API, one module per command.

Every user error is one line on stderr and exit status 2; `--debug` shows the traceback instead.
So is a failure to write standard output (a full disk, an I/O error), whichever command prints;
a closed pipe (`| head`) ends the command quietly. A command registers itself with `@command`
when its module is imported below; the import order is the order of `charrnn --help`.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
from typing import Sequence

from .. import __version__, stopping
from ..errors import CharRNNError
from ..stopping import Stopped
from ..threads import requested_threads
from . import hello, gradcheck, explain, train, sample, evaluate, export, importer, bench  # noqa: F401  (registration)
from . import impulse, diagnose, heatmap, report, plot  # noqa: F401
from . import classify, tag  # noqa: F401
from . import serve, models  # noqa: F401
from ._common import COMMANDS, Handler, Parser, tell


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = Parser(prog="charrnn", description="Character-level recurrent language models.")
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    handlers = {}
    for name, (summary, add) in COMMANDS.items():
        sp = sub.add_parser(name, help=summary, description=summary)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        handlers[name] = add(sp)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    stdout = _guard_stdout()
    try:
        return _main(argv)
    finally:
        if stdout is not None:
            _unguard_stdout(stdout)


def _main(argv: Sequence[str] | None) -> int:
    parser, handlers = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        args = argparse.Namespace(command="bench", debug=False, bench_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous = _stop_on_signals()
    unraisable = sys.unraisablehook
    sys.unraisablehook = _signal_in_a_callback(unraisable)
    try:
        requested_threads()  # a bad CHARRNN_THREADS is refused before any command starts work
        status = handlers[args.command](args)
        sys.stdout.flush()  # the last of the output fails here, not in the interpreter's exit
        return status
    except StdoutError as e:  # `charrnn sample ... > /dev/full`
        if args.debug:
            raise
        _silence_stdout()
        tell(f"charrnn {args.command}: error: cannot write to standard output: {e.strerror or e}")
        return 2
    except CharRNNError as e:
        if args.debug:
            raise
        tell(f"charrnn {args.command}: error: {e}")
        return 2
    except BrokenPipeError:  # `charrnn sample ... | head` closed the pipe: not an error
        _silence_stdout()
        return 0
    except KeyboardInterrupt:  # Ctrl-C outside training's own handler (setup, sampling, a second Ctrl-C)
        if args.debug:
            raise
        tell(f"charrnn {args.command}: interrupted")
        return 130
    except Stopped as e:  # SIGTERM / SIGHUP outside training's own handler (or a stop seen by a long loop)
        if args.debug:
            raise
        said = "interrupted" if e.signum == signal.SIGINT else f"stopped by {signal.Signals(e.signum).name}"
        tell(f"charrnn {args.command}: {said}")
        return 128 + e.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = unraisable
        stopping.clear()


def _raise_stopped(signum: int, frame: object) -> None:
    stopping.request(signum)  # worker threads stop too, at their next step
    raise Stopped(signum)


def _raise_interrupt(signum: int, frame: object) -> None:
    stopping.request(signum)
    raise KeyboardInterrupt


def _stop_on_signals() -> dict[int, object]:
    """Turn SIGINT into KeyboardInterrupt and SIGTERM and SIGHUP into `Stopped`, each also asking
    every long loop to stop (charrnn.stopping); a signal already ignored (SIGHUP under nohup,
    SIGINT in a background job) stays ignored. Returns the handlers to put back."""
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name, handler in (("SIGINT", _raise_interrupt), ("SIGTERM", _raise_stopped), ("SIGHUP", _raise_stopped)):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    return previous


def _signal_in_a_callback(hook):
    """An unraisable-exception hook that drops the exception of a stop signal which landed in a
    C callback (numba compiling a kernel calls back into Python), where it cannot propagate and
    Python would print it as a traceback: the flag it set stops the work at the next step of its
    loop instead (charrnn.stopping)."""

    def unraisable(u):  # type: ignore[no-untyped-def]
        if not (isinstance(u.exc_value, (KeyboardInterrupt, Stopped)) and stopping.requested()):
            hook(u)

    return unraisable


class StdoutError(OSError):
    """Standard output could not take what a command printed (not a closed pipe: that stays a
    BrokenPipeError). An OSError still, so that code tolerating a broken stdout (training's
    --json-log) goes on tolerating it."""


class _GuardedStdout(io.RawIOBase):
    """The file under sys.stdout, whose failures to write are told apart from every other
    OSError a command may meet: a failure here is standard output's, whatever was printing."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def write(self, data) -> int | None:  # type: ignore[override]
        try:
            return self._raw.write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutError(e.errno, e.strerror) from None

    def fileno(self) -> int:
        return self._raw.fileno()

    def isatty(self) -> bool:
        return self._raw.isatty()


def _guard_stdout() -> io.TextIOWrapper | None:
    """Put sys.stdout on a `_GuardedStdout`, keeping its encoding and buffering; returns the
    stream to put back, or None where stdout is no file (a StringIO in a test, a closed one)."""
    out = sys.stdout
    raw = getattr(out, "buffer", None)
    raw = raw if isinstance(raw, io.FileIO) else getattr(raw, "raw", None)  # FileIO itself under python -u
    if not isinstance(out, io.TextIOWrapper) or not isinstance(raw, io.FileIO) or raw.closed:
        return None
    try:
        out.flush()
    except (OSError, ValueError):
        return None
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(_GuardedStdout(raw)), encoding=out.encoding, errors=out.errors,
                                  line_buffering=out.line_buffering, write_through=out.write_through)
    return out


def _unguard_stdout(original: io.TextIOWrapper) -> None:
    """Put the original stdout back; what the guarded one still holds (after an error reported
    already) goes to wherever stdout now points, or is dropped."""
    guarded, sys.stdout = sys.stdout, original
    try:
        guarded.flush()
    except (OSError, ValueError):
        _silence_stdout()
        try:
            guarded.flush()
        except (OSError, ValueError):
            pass
    try:
        guarded.detach()  # closing the wrapper must not close the real stdout under it
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush of text a closed
    pipe can no longer take does not fail loudly on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
