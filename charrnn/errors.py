"""The project's own exceptions.

Every failure a user can cause (a bad file, a bad flag, a bad checkpoint) raises a subclass of
`CharRNNError`; the command line prints its message as one line on stderr and exits with status 2.
Anything else escaping is a bug.
"""

from __future__ import annotations

import os
import unicodedata


class CharRNNError(Exception):
    """Base class: a problem with the user's input, reported as one clear line."""


class ConfigError(CharRNNError, ValueError):
    """A flag, option, argument or hyperparameter that cannot be used. Also a ValueError, as
    Python's own functions raise for a bad argument, so that code catching that keeps working."""


class DataError(CharRNNError):
    """A text file that cannot be read or encoded, or text outside a model's vocabulary."""


class CheckpointError(CharRNNError):
    """A checkpoint or run directory that cannot be loaded or written."""


# Characters that break a message's one line, hide text or reorder it on a terminal: controls
# (newline, tab, escape...), invisible format characters (bidirectional overrides, zero widths),
# lone surrogates and the Unicode line and paragraph separators.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def _hidden(c: str) -> bool:
    return unicodedata.category(c) in _HIDDEN


def one_line(message: str) -> str:
    """`message` with every hidden character (see _HIDDEN) written as its backslash escape, so that
    it prints as the one line it is meant to be, whatever names or values it quotes."""
    if message.isprintable():  # the usual case, decided in C
        return message
    return "".join(repr(c)[1:-1] if _hidden(c) else c for c in message)


def show_path(path: str | os.PathLike[str]) -> str:
    """A path as an error message shows it: as it is, or quoted with backslash escapes when it holds
    a hidden character (a file named with a newline must not split the message in two)."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    return repr(s) if any(_hidden(c) for c in s) else s
