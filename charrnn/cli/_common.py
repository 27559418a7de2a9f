"""What every command shares: the registry, the parser class, argument types and loading a model."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, Iterable

from ..checks import NEGATIVE_NUMBER
from ..errors import ConfigError, one_line

Handler = Callable[[argparse.Namespace], int]
# name -> (one-line summary, function that adds the command's flags and returns its handler);
# commands appear in `charrnn --help` in the order their modules register them.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Handler]]] = {}
# name -> the arguments naming a file the command writes, as the user writes them ("--out", "OUT",
# "train --out" for a subcommand's); () for a command that writes no file. Each command declares
# it where it registers, and a test tries every hostile target on every one of them.
OUTPUTS: dict[str, tuple[str, ...]] = {}
# name -> the arguments naming a run directory the command writes (under the run's lock).
RUN_DIRS: dict[str, tuple[str, ...]] = {}
# name -> the arguments naming a trained model or run the command reads, each with what it takes:
# "model" (a run directory, a checkpoint file or a shipped model's name) or "run" (a run of one's
# own: a shipped name is refused in one line). Each goes through `charrnn.pretrained.resolve`; a
# test runs every one of them with a shipped name.
READS: dict[str, dict[str, str]] = {}


def command(name: str, summary: str, *, outputs: tuple[str, ...] | None = None, run_dirs: tuple[str, ...] = (),
            reads: dict[str, str] | None = None):
    """Register a function that adds a subcommand's flags and returns its handler, with the
    arguments that name the files (`outputs`) and run directories (`run_dirs`) it writes and the
    models or runs it reads (`reads`)."""

    def register(fn):
        COMMANDS[name] = (summary, fn)
        if outputs is not None:
            OUTPUTS[name] = tuple(outputs)
        RUN_DIRS[name] = tuple(run_dirs)
        READS[name] = dict(reads or {})
        return fn

    return register


def add_force_flag(p: argparse.ArgumentParser, what: str) -> None:
    """--force: replace `what` when it is an existing regular file (never a run's files)."""
    p.add_argument("--force", action="store_true",
                   help=f"replace {what} if it is an existing regular file (never a checkpoint or a run's files)")


def run_dir_arg(text: str) -> str:
    """An argparse type for a run directory: an empty one is refused (see `io.layout.run_dir_path`)."""
    from ..io.layout import run_dir_path

    try:
        run_dir_path(text, None)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) and exit 2 like our own errors,
    and a negative number is an option's value (NEGATIVE_NUMBER)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def tell(message: str) -> None:
    """A line on stderr that cannot fail: with stderr closed (a pipe read by `head`, a terminal
    gone) there is no one left to tell, and the command's outcome must not depend on it. Whatever
    the message quotes, it stays one line: a control character is shown as its backslash escape."""
    try:
        print(one_line(message), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def escape_what_stdout_cannot_show(command: str, chars: Iterable[str], what: str = "every character to print") -> bool:
    """On a stdout whose encoding lacks some of `chars` (the characters the command is about to
    print: an ASCII terminal, say), write those as backslash escapes, and say so once, rather
    than fail in mid-output. Returns True when escapes are on (JSON output then uses its own
    escapes, ensure_ascii, which a JSON reader understands)."""
    encoding = getattr(sys.stdout, "encoding", None)
    if not encoding:
        return False
    try:
        "".join(chars).encode(encoding)
        return False
    except UnicodeEncodeError:
        try:
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            return True
        tell(f"charrnn {command}: stdout's encoding ({encoding}) cannot show {what}; "
             "those are written as backslash escapes (PYTHONIOENCODING=utf-8 writes them as they are)")
        return True
    except LookupError:
        return False


def dropout_probability(text: str) -> float:
    """A dropout probability: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def seed_int(text: str) -> int:
    """A random seed: a whole number >= 0 (NumPy's generators take no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def bounded(kind: type, low: float, high: float, low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` (int or float) in [low, high] ((low, high] when low_open)."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {'whole ' if kind is int else ''}number in {shown}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be in {shown}, got {text}")
        return value

    return parse



def add_setting_flags(p: argparse.ArgumentParser, config: str, skip: tuple[str, ...] = (),
                      choices: dict[str, tuple[str, ...]] | None = None, notes: dict[str, str] | None = None) -> None:
    """A flag for every setting of `config` ("lm" or "task") in settings.SETTINGS, with its type,
    choices and help from there (`choices` narrows a setting's for this command, `notes` adds to
    its help). Every flag defaults to None: not given, which the run resolves (settings.resolve)."""
    from ..settings import AUTO, settings_of

    for s in settings_of(config):
        if not s.flag or s.name in skip:
            continue
        default = s.default_for(config)
        if s.auto is not None and default in (0, AUTO):
            shown = f" (default: {s.auto})"
        elif default is None or default is False or (default == 0 and s.name in ("steps", "time_budget")):
            shown = ""
        else:
            shown = f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
        text = s.help + ((" " + notes[s.name]) if notes and s.name in notes else "") + shown
        if s.kind is bool:
            p.add_argument(s.option, dest=s.name, action=argparse.BooleanOptionalAction, default=None, help=text)
            continue
        allowed = (choices or {}).get(s.name, s.allowed())
        p.add_argument(s.option, dest=s.name, type=s.kind, default=None, choices=allowed, help=text,
                       metavar=None if allowed else s.name.split("_")[-1].upper())


def given_settings(a: argparse.Namespace, config: str) -> dict[str, object]:
    """The settings given on the command line, by name (a flag at its default value included)."""
    from ..settings import settings_of

    return {s.name: getattr(a, s.name) for s in settings_of(config) if getattr(a, s.name, None) is not None}


def apply_threads(n: int | None) -> None:
    """Use n cores when asked (0 or None keeps charrnn's default; see threads.py)."""
    if n:
        from ..threads import set_threads

        set_threads(n)


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """--backend and --device, for the commands that run a trained model."""
    from ..settings import BACKENDS, DEVICES

    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="numpy (default) or torch (PyTorch: pip install 'charrnn[torch]')")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend: cpu, cuda or mps")


def inference_model(model, backend: str, device: str):
    """The model as the chosen backend runs it: the NumPy model itself, or its weights in torch."""
    if device != "cpu" and backend != "torch":
        raise ConfigError(f"--device {device} needs --backend torch")
    if backend == "numpy":
        return model
    from ..torch_backend import import_torch

    import_torch()
    from ..torch_backend.infer import TorchModel

    return TorchModel.from_numpy(model, device)


def load_for_inference(run: str, dtype: str | None = None):
    """The checkpoint of a run directory, a file or a shipped model's name, refused when it carries
    no vocabulary."""
    from ..io.checkpoint import load_checkpoint
    from ..pretrained import resolve

    c = load_checkpoint(resolve(run, "model"), dtype)
    if c.vocab is None:
        raise ConfigError(f"{c.path}: this model file has no vocabulary; use a run directory or a training checkpoint")
    return c


def needs_run(run: Any, why: str) -> Any:
    """RUN as given, refused in one line when it names a shipped model rather than a run of one's
    own (see READS); `why` says what the command needs the run for."""
    from ..pretrained import resolve

    return resolve(run, "run", why)
