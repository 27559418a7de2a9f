"""Reading what charrnn is given, one way: files read whole, text, JSON, TOML and JSON Lines.

Files. `open_regular` opens a regular file only: a FIFO would wait for a writer forever and a device
such as /dev/zero never ends. The path is opened once, without blocking, and checked by its
descriptor, so what is checked is what is read. `read_file` reads such a file whole, no larger than
its reader's limit; an empty path, a missing, special, too large or (unless allowed) empty file is
one line naming it.

Text. Strict UTF-8, and a byte order mark at the start of a file is dropped by every reader: it
says how the file is encoded, it is not text (the training text drops it too, in data/text.py).

Documents. `parse_json` and `parse_toml` refuse, in one line naming the file (and the line of a JSON
Lines file): nesting deeper than MAX_DEPTH, found by counting brackets before a parser that recurses
could exhaust the stack (and a TOML key of more parts than that, which tomllib takes quadratic time
over); duplicate keys, which a JSON parser would silently resolve to the last one; NaN and Infinity,
unless the reader asks for them; numbers beyond a float's range; lone surrogates, which no UTF-8 file
can hold but a JSON escape can.

READERS names every function that reads a file charrnn is given, by what it reads, so that one test
(tests/io/test_readers.py) puts each of them through the same hostile files: a reader added later
with `@reader` is covered by that test, and one reading files any other way fails it.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import tomllib
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

from ..errors import CharRNNError, DataError, show_path

ErrorType = type[CharRNNError]

# Far deeper than any document charrnn reads (3 levels: a metrics record's spectral radii), far
# shallower than the 1,000 frames that Python's recursion limit allows a parser or a repr.
MAX_DEPTH = 64
# The documents read whole (a config file, config.json, a vocabulary, a lock record): a generous
# bound that a runaway file still cannot pass.
MAX_DOCUMENT_BYTES = 16 * 2**20
# Data read whole into memory (labelled examples, a prime).
MAX_DATA_BYTES = 2**30
# One line of a JSON Lines log, streamed: a metrics record is well under a kilobyte.
MAX_LINE_BYTES = 2**20
# A float's range ends below 2**1024: a longer integer fits no float, and none is ever written.
MAX_INT_BITS = 1024
BOM = "\ufeff"


# ------------------------------------------------------------------------------------------------
# Paths and files


def check_path(path: Any, error: ErrorType = DataError, what: str = "file") -> str:
    """The path as a string, or `error` for one that names no file: empty (which would otherwise
    mean the current folder), holding a NUL, or not a path at all."""
    try:
        s = os.fspath(path)
    except TypeError:
        raise error(f"the {what} path must be a string, got {type(path).__name__}") from None
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    if s == "":
        raise error(f"the {what} path is empty")
    if "\0" in s:
        raise error(f"{show_path(s)}: a path cannot hold a NUL character")
    return s


def path_setting_problem(value: str) -> str | None:
    """Why a path given as a setting's value (in a config file) cannot be one, or None: empty, or
    holding a control character (a NUL cannot be passed to the system; a newline or an escape is
    surely a mistake, and would make every message naming the file ambiguous)."""
    if value == "":
        return "is empty"
    bad = next((c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        return f"holds the control character {bad!r}, which no path should hold"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO or pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket"


def open_regular(path: Any, error: ErrorType = DataError, what: str = "text file") -> BinaryIO:
    """`path` opened to read in binary, if it is a regular file; every other case is `error` in one
    line naming it. Opened without blocking and checked by its descriptor, so a FIFO is refused at
    once, and a file swapped in after the check is never the one read."""
    s = check_path(path, error, what)
    where = show_path(s)
    try:
        fd = os.open(s, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{where}: no such file") from None
    except PermissionError:
        raise error(f"{where}: permission denied") from None
    except IsADirectoryError:
        raise error(f"{where} is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"cannot read {where}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{where} is a directory, not a {what}")
        if not stat.S_ISREG(mode):
            raise error(f"{where} is {_kind(mode)}, not a regular file: save it to a file and give that")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError as e:
        os.close(fd)
        raise error(f"cannot read {where}: {e.strerror or e}") from None
    except BaseException:
        os.close(fd)
        raise


def _too_large(where: str, size: int, limit: int, what: str) -> str:
    return f"{where} holds {size:,} bytes, more than the {limit:,} a {what} may have"


def read_file(path: Any, error: ErrorType = DataError, what: str = "text file", limit: int = MAX_DATA_BYTES,
              allow_empty: bool = False) -> bytes:
    """A whole regular file's bytes, read once through `open_regular`: larger than `limit` or
    (unless `allow_empty`) empty is `error` too."""
    with open_regular(path, error, what) as f:
        where = show_path(path)
        try:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise error(_too_large(where, size, limit, what))
            data = f.read(limit + 1)  # a file growing meanwhile is still read no further than this
        except OSError as e:
            raise error(f"cannot read {where}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(_too_large(where, len(data), limit, what))
    if not data and not allow_empty:
        raise error(f"{where} is empty")
    return data


def decode_text(data: bytes, where: str, error: ErrorType = DataError, lines: bool = True) -> str:
    """Strict UTF-8, a leading byte order mark dropped; invalid UTF-8 is `error` naming the byte
    offset of the first bad byte, and its line (when `lines`: `where` names a file, not a line)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        n = data.count(b"\n", 0, e.start) + 1
        line = f":{n}" if lines else ""
        raise error(f"{where}{line}: not valid UTF-8 (byte 0x{data[e.start]:02X} at byte offset {e.start})") from None
    return text[1:] if text.startswith(BOM) else text


def read_text(path: Any, error: ErrorType = DataError, what: str = "text file", limit: int = MAX_DATA_BYTES,
              allow_empty: bool = False) -> str:
    """A whole UTF-8 text file (see `read_file` and `decode_text`)."""
    return decode_text(read_file(path, error, what, limit, allow_empty), show_path(path), error)


def text_lines(path: Any, error: ErrorType = DataError, what: str = "text file", max_line: int = MAX_LINE_BYTES,
               strict: bool = True) -> Iterator[tuple[int, str | None]]:
    """(line number from 1, the line without its newline) of a UTF-8 text file read line by line,
    its leading byte order mark dropped, so a log of any length is never held whole. A line longer
    than `max_line` bytes or not valid UTF-8 is `error` naming it, or with `strict` False is given
    as (number, None) for the caller to skip and count. An empty file has no lines."""
    where = show_path(path)
    with open_regular(path, error, what) as f:
        n = 0
        while True:
            try:
                raw = f.readline(max_line + 1)
            except OSError as e:
                raise error(f"cannot read {where}: {e.strerror or e}") from None
            if not raw:
                return
            n += 1
            if len(raw) > max_line and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # the rest of the overlong line, unread
                    raw = f.readline(max_line)
                if strict:
                    raise error(f"{where}:{n}: a line longer than {max_line:,} bytes")
                yield n, None
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if strict:
                    raise error(f"{where}:{n}: not valid UTF-8 (byte 0x{raw[e.start]:02X} at byte {e.start} of "
                                "the line)") from None
                yield n, None
                continue
            if n == 1 and line.startswith(BOM):
                line = line[1:]
            yield n, line[:-1] if line.endswith("\n") else line


# ------------------------------------------------------------------------------------------------
# Documents


class _Refused(Exception):
    """Why a parser's hook refused a value; becomes the caller's error, naming the place."""


def _clip(s: str, n: int = 24) -> str:
    return s if len(s) <= n else s[:n] + "..."


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for key, value in pairs:
        if key in d:
            raise _Refused(f"duplicate key {_clip(key)!r}")
        d[key] = value
    return d


def _finite(s: str) -> float:
    value = float(s)
    if not math.isfinite(value):
        raise _Refused(f"the number {_clip(s)} is beyond a float's range")
    return value


def _integer(s: str) -> int:
    # decided on the digits first: Python refuses to convert 4,300 of them, with an error of its own
    digits = len(s) - (s[:1] in "+-")
    if digits > 310:  # 2**1024 has 309 digits
        raise _Refused(f"an integer of {digits:,} digits is beyond a float's range")
    value = int(s)
    if value.bit_length() > MAX_INT_BITS:
        raise _Refused(f"the integer {_clip(s)} is beyond a float's range")
    return value


def _no_constant(name: str) -> Any:
    raise _Refused(f"not valid JSON ({name} is not a number JSON allows)")


_STRICT = json.JSONDecoder(object_pairs_hook=_object, parse_float=_finite, parse_int=_integer,
                           parse_constant=_no_constant)
# For the logs charrnn writes itself, where a diverged step's loss is NaN and an overflowed norm inf.
_CONSTANTS = json.JSONDecoder(object_pairs_hook=_object, parse_float=_finite, parse_int=_integer,
                              parse_constant=float)

# What is cut out before brackets are counted: strings (and TOML's comments), whose brackets do not
# nest. Each alternative ends at the end of the text when its string does not, so every match
# attempt succeeds in one pass and the scan stays linear on any input.
_JSON_STRINGS = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')
_TOML_SKIPPED = re.compile(r'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
                           r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*(?:"|\\?$)|\'[^\'\n]*(?:\'|$)|#[^\n]*', re.M)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
# A dotted TOML key of more than MAX_DEPTH parts (its quoted parts already cut out).
_LONG_KEY = re.compile(r"(?:\.[ \t]*[A-Za-z0-9_-]*[ \t]*){%d}" % (MAX_DEPTH + 1))
# A \u escape of a surrogate: only then can a parsed JSON string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _deeper_than(skeleton: str, depth: int) -> bool:
    """Whether the brackets of `skeleton` (strings cut out) nest deeper than `depth`: one pass over
    them, with no recursion."""
    import numpy as np  # the whole package's dependency; imported when a document holds many brackets

    b = np.frombuffer(_NOT_BRACKETS.sub("", skeleton).encode("ascii"), dtype=np.uint8)
    if b.size == 0:
        return False
    steps = np.where((b == ord("[")) | (b == ord("{")), 1, -1)
    return int(np.cumsum(steps).max()) > depth


def _check_depth(text: str, strings: re.Pattern[str]) -> None:
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # the usual case: it cannot nest deeper
        return
    if _deeper_than(strings.sub("", text), MAX_DEPTH):
        raise _Refused(f"nested deeper than {MAX_DEPTH} levels")


def _check_values(value: Any, toml: bool = False) -> None:
    """Walk a parsed document without recursion for lone surrogates in its keys and strings; and
    for TOML, whose tables nest through dotted keys without brackets and whose integers are not
    checked as they are parsed, its depth and integers."""
    stack = [(value, 1)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, str):
            if m := _SURROGATE.search(v):
                raise _Refused(f"a lone surrogate U+{ord(m.group()):04X}, which is not a character")
        elif isinstance(v, int) and not isinstance(v, bool):
            if toml and v.bit_length() > MAX_INT_BITS:
                raise _Refused(f"an integer of {len(str(abs(v))):,} digits is beyond a float's range")
        elif isinstance(v, (dict, list)):
            if toml and level > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for k, x in items:
                if k is not None:
                    stack.append((k, level))
                stack.append((x, level + 1))


def _as_text(text: str | bytes, where: str, error: ErrorType) -> str:
    if isinstance(text, (bytes, bytearray, memoryview)):
        return decode_text(bytes(text), where, error, lines=False)
    return text[1:] if text.startswith(BOM) else text


def parse_json(text: str | bytes, where: str, error: ErrorType = DataError, constants: bool = False) -> Any:
    """One JSON document (see the module's docstring for what is refused); `where` names it in the
    error, `constants` lets NaN and Infinity through (as floats) for charrnn's own logs."""
    text = _as_text(text, where, error)
    try:
        _check_depth(text, _JSON_STRINGS)
        value = (_CONSTANTS if constants else _STRICT).decode(text)
        if _SURROGATE_ESCAPE.search(text):
            _check_values(value)
    except _Refused as e:
        raise error(f"{where}: {e}") from None
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e})") from None
    except RecursionError:  # not reached after _check_depth; kept so that no input can bring a traceback
        raise error(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise error(f"{where}: not valid JSON ({_clip(str(e), 120)})") from None
    return value


def _toml_float(s: str) -> float:
    if s.lstrip("+-") in ("inf", "nan"):
        raise _Refused(f"{s} is not a number a setting can take")
    return _finite(s)


def parse_toml(text: str | bytes, where: str, error: ErrorType = DataError) -> dict[str, Any]:
    """One TOML document, refused as `parse_json` refuses (TOML itself refuses duplicate keys and
    lone surrogates)."""
    text = _as_text(text, where, error)
    try:
        if text.count(".") > MAX_DEPTH and _LONG_KEY.search(_TOML_SKIPPED.sub("", text)):
            raise _Refused(f"a key of more than {MAX_DEPTH} dotted parts")
        _check_depth(text, _TOML_SKIPPED)
        value = tomllib.loads(text, parse_float=_toml_float)
        _check_values(value, toml=True)
    except _Refused as e:
        raise error(f"{where}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{where}: not valid TOML ({e})") from None
    except RecursionError:  # as in parse_json: a last guard
        raise error(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise error(f"{where}: an integer of over {sys.get_int_max_str_digits():,} digits, beyond a float's "
                    "range") from None
    return value


def read_json(path: Any, error: ErrorType = DataError, what: str = "JSON file", limit: int = MAX_DOCUMENT_BYTES,
              constants: bool = False) -> Any:
    """A whole JSON file: `read_text`, then `parse_json` naming the file."""
    return parse_json(read_text(path, error, what, limit), show_path(path), error, constants)


# ------------------------------------------------------------------------------------------------
# Every reader, by what it reads


@dataclass(frozen=True)
class Reader:
    name: str  # what it reads, as its user would say
    read: Callable[[Any], Any]  # reads the file at one path
    format: str  # "json", "json lines", "toml or json", "tsv", "text", "safetensors"
    # reads what it can of a damaged file (skipping and counting lines, or nothing) instead of
    # refusing it; a file that is not a regular file is refused all the same
    tolerant: bool = False


READERS: dict[str, Reader] = {}


def reader(name: str, format: str, tolerant: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function that reads a file of charrnn's given its path (see READERS)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        READERS[name] = Reader(name, fn, format, tolerant)
        return fn

    return register
