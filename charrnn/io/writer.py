"""The one writer: every file the project puts in place goes through here.

A file is written whole to a temporary name beside its target, fsynced, and renamed over it, and
the folder is fsynced, so that after a crash at any moment the target is the old file or the new
one, never a torn mix: `atomic_write_bytes` / `atomic_copy`, or `replace_durably` for a file
streamed to a temporary of its own (the encoded text).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from ..errors import CheckpointError


def fsync_dir(directory: str | Path, *, best_effort: bool = True) -> None:
    """Make the renames in `directory` durable. Not every platform can open a directory, so a
    failure is ignored unless `best_effort` is False, when it is raised as the OSError."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not best_effort:
            raise
    finally:
        os.close(fd)


def replace_durably(tmp: str | Path, path: str | Path, *, best_effort: bool = True) -> None:
    """Rename the finished (and fsynced) file `tmp` over `path` and fsync the folder, so that
    after a crash `path` is either the old file or the new one. The OSError of a failed rename
    is the caller's to report; `best_effort` is `fsync_dir`'s."""
    os.replace(tmp, path)
    fsync_dir(Path(path).parent, best_effort=best_effort)


def _atomic_replace(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Create `path` so that a crash at any moment leaves either the old file or the new one,
    never a torn mix: `fill` writes a temporary file beside it, which is fsynced and renamed over
    `path`, and the folder is fsynced so the rename itself is durable."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove_stale_temporaries(path)
    try:
        fill(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # strict: a write whose rename may not survive a crash is reported as failed, so no
        # checkpoint is taken for safe when it may not be
        replace_durably(tmp, path, best_effort=False)
    except BaseException as e:  # Ctrl-C included: never leave the temporary file behind
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of earlier writes of `path` whose process is gone (killed in the
    middle of the write); a live process's are left alone. Best effort."""
    from .lock import pid_alive

    prefix = f".{path.name}.tmp"
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for e in entries:
        pid = e.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                os.unlink(e.path)
            except OSError:
                pass


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` atomically (see `_atomic_replace`)."""

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    _atomic_replace(path, fill)


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy `src` to `dst` atomically (see `_atomic_replace`)."""
    _atomic_replace(dst, lambda tmp: shutil.copyfile(src, tmp))
