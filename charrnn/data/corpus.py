"""A run's text made of several files: files given one by one, or every file of a folder.

The files are read in order (a folder's recursively, sorted by path) and joined with one newline
between two files, as one text; a folder's hidden files and folders (a name starting with ".")
are skipped, and in UTF-8 mode so are its binary files (a NUL byte in their first block), each
with a note saying how many. The files, their sizes and the content hash of the joined text are
recorded in the run, so that a resume can tell when the text changed (train/lm.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError, show_path
from ..io.readers import check_path

SEPARATOR = b"\n"  # between two files of a corpus
# A file whose first block holds a NUL byte is binary (as git and grep decide).
BINARY_PROBE = 8192


@dataclass(frozen=True)
class Corpus:
    """The files of a text, in reading order, and what a folder's walk left out."""

    files: tuple[Path, ...]
    hidden: int = 0  # hidden files and folders skipped
    binary: int = 0  # binary files skipped

    def listing(self) -> list[dict[str, Any]]:
        """[{"path", "size"}] of every file, absolute paths: what a run records."""
        out = []
        for f in self.files:
            try:
                size = f.stat().st_size
            except OSError as e:
                raise DataError(f"cannot read {show_path(f)}: {e.strerror or e}") from None
            out.append({"path": str(f.resolve()), "size": size})
        return out

    def describe(self) -> str:
        n = len(self.files)
        return show_path(self.files[0]) if n == 1 else f"{n:,} files ({show_path(self.files[0])}, ...)"

    def notes(self) -> list[str]:
        """What the walk skipped, for the user to hear."""
        out = []
        if self.hidden:
            out.append(f"{self.hidden:,} hidden file(s) or folder(s) skipped (a name starting with '.')")
        if self.binary:
            out.append(f"{self.binary:,} binary file(s) skipped (a NUL byte near the start; --encoding bytes "
                       "reads them)")
        return out


def expand(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], encoding: str = "utf-8") -> Corpus:
    """The corpus of `paths`: a file, a folder (its files, recursively, sorted by path), or a list
    of either, in the order given. A path that does not exist, or a folder without a file to read,
    is one DataError line."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise DataError("no text file given")
    files: list[Path] = []
    hidden = binary = 0
    for item in items:
        p = Path(check_path(item, DataError, "text file"))
        if p.is_dir():
            found, h, b = _walk(p, encoding)
            if not found:
                raise DataError(f"{show_path(p)} holds no file to train on" + (
                    f" ({h:,} hidden and {b:,} binary skipped)" if h or b else ""))
            files += found
            hidden, binary = hidden + h, binary + b
        elif p.exists() or p.is_symlink():
            files.append(p)
        else:
            raise DataError(f"{show_path(p)}: no such file or folder")
    return Corpus(tuple(files), hidden, binary)


def _walk(folder: Path, encoding: str) -> tuple[list[Path], int, int]:
    """The regular files under `folder`, sorted by path, without hidden ones (or binary ones in
    UTF-8 mode); and how many of each were skipped."""
    files, hidden, binary = [], 0, 0
    for root, dirs, names in os.walk(folder, onerror=_walk_error):
        keep = sorted(d for d in dirs if not d.startswith("."))
        hidden += len(dirs) - len(keep)
        dirs[:] = keep  # os.walk descends into these only, in this order
        for name in sorted(names):
            p = Path(root) / name
            if name.startswith("."):
                hidden += 1
            elif not p.is_file():
                continue  # links to folders, FIFOs, devices: not text
            elif encoding != "bytes" and _binary(p):
                binary += 1
            else:
                files.append(p)
    return sorted(files), hidden, binary


def _walk_error(e: OSError) -> None:
    raise DataError(f"cannot read {show_path(e.filename or '')}: {e.strerror or e}")


def _binary(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return b"\0" in f.read(BINARY_PROBE)
    except OSError as e:
        raise DataError(f"cannot read {show_path(p)}: {e.strerror or e}") from None
