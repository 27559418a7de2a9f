"""The one writer: every file the project puts in place goes through here.

A file is written whole to a temporary name beside its target, fsynced, and renamed over it, and
the folder is fsynced, so that after a crash at any moment the target is the old file or the new
one, never a torn mix: `atomic_write_bytes` / `atomic_copy`, or `replace_durably` for a file
streamed to a temporary of its own (the encoded text).

A command's output (an export, a PNG, a report, a JSON file) goes through `write_file`, which first
asks `check_target`: a command writes a new file or replaces a regular one, never a run's training
files, a checkpoint, a link, a FIFO, a device, a socket or a directory, and an existing file only
with `--force` (or where it is the command's own output inside a run, `own`).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from ..errors import CharRNNError, CheckpointError, ConfigError
from . import formats
from .lock import LOCK


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


def _atomic_replace(path: str | Path, fill: Callable[[Path], None], suffix: str = "",
                    before_replace: Callable[[], None] | None = None) -> None:
    """Create `path` so that a crash at any moment leaves either the old file or the new one,
    never a torn mix: `fill` writes a temporary file beside it (its name ends in `suffix`, for
    writers that insist on one), which is fsynced and renamed over `path`, and the folder is
    fsynced so the rename itself is durable. `before_replace` runs once the new file is safely
    on disk, just before the rename: what goes with the old version goes then, and not when the
    new one could not be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    _remove_stale_temporaries(path, suffix)
    try:
        fill(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
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


def _remove_stale_temporaries(path: Path, suffix: str = "") -> None:
    """Remove the temporary files of earlier writes of `path` whose process is gone (killed in the
    middle of the write); a live process's are left alone. Best effort."""
    from .lock import pid_alive

    prefix = f".{path.name}.tmp"
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(suffix)]
    except OSError:
        return
    for e in entries:
        pid = e.name[len(prefix): len(e.name) - len(suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                os.unlink(e.path)
            except OSError:
                pass


def _filler(data: bytes | memoryview) -> Callable[[Path], None]:
    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return fill


def atomic_write_bytes(path: str | Path, data: bytes | memoryview,
                       before_replace: Callable[[], None] | None = None) -> None:
    """Write `data` to `path` atomically (see `_atomic_replace`)."""
    _atomic_replace(path, _filler(data), before_replace=before_replace)


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy `src` to `dst` atomically (see `_atomic_replace`)."""
    _atomic_replace(dst, lambda tmp: shutil.copyfile(src, tmp))


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


def check_target(path: str | os.PathLike[str], *, force: bool = False, own: str | None = None) -> Path:
    """`path` as the file a command may write, or a ConfigError saying in one line why not.

    Refused always: an empty path, a directory, a symbolic link (even to a regular file: the
    write would go through it), a FIFO (opening it would hang), a device, a socket, a file of a
    training run by its name inside a run directory (its checkpoints, config.json, metrics.jsonl,
    tokens.bin, samples.txt, lock) and a training checkpoint anywhere, by its content. An existing
    regular file is replaced with `force`, or without it where its name is `own`, the command's
    own output, inside a run directory (report.html, curves.png). Nothing is opened but a regular
    file's header, so a FIFO never blocks the check."""
    from .layout import RUN_FILES

    text = os.fspath(path)
    if not isinstance(text, str):
        raise ConfigError(f"{text!r}: a file to write is named by a text path")
    if text == "":
        raise ConfigError("an empty path names no file: give the path of the file to write")
    if text.endswith(("/", os.sep)):  # Path() would drop the slash
        raise ConfigError(f"{text} names a directory: give the path of the file to write")
    p = Path(text)
    if p.name.casefold() in {n.casefold() for n in (*RUN_FILES, LOCK)} and _in_a_run(p.parent):
        raise ConfigError(f"{p} is a file of the run in {p.parent}: its training writes it, no other command does")
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        if not p.parent.is_dir():
            raise ConfigError(f"cannot write {p}: no such directory {p.parent}") from None
        return p
    except OSError as e:
        raise CheckpointError(f"cannot write {p}: {e.strerror or e}") from None
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        what = _KINDS.get(kind, "not a regular file")
        raise ConfigError(f"{p} is {what}: only a regular file is written or replaced")
    if _is_training_checkpoint(p):
        raise ConfigError(f"{p} is a training checkpoint: no command but training replaces one")
    if force or (own is not None and p.name == own and _in_a_run(p.parent)):
        return p
    raise ConfigError(f"{p} already exists: --force replaces it")


def write_file(path: str | os.PathLike[str], data: bytes | memoryview | Callable[[Path], None], *,
               force: bool = False, own: str | None = None, suffix: str = "") -> Path:
    """Write a command's output: `path` is checked (`check_target`), then written atomically with
    `data`, bytes or a function that fills the temporary file it is given (whose name ends in
    `suffix`). A failure (a full disk included) leaves the previous file as it was and no
    temporary behind, and is one CheckpointError line. Returns the path written."""
    p = check_target(path, force=force, own=own)
    _atomic_replace(p, data if callable(data) else _filler(data), suffix)
    return p


def _in_a_run(d: Path) -> bool:
    """Whether folder `d` holds a run, or one being set up (its lock is there already)."""
    from .layout import holds_run

    return holds_run(d) or os.path.lexists(d / LOCK)


def _is_training_checkpoint(path: Path) -> bool:
    from .arrays import read_header

    try:
        meta, _ = read_header(path)
    except CharRNNError:
        return False
    return meta.get("format") in (formats.CHECKPOINT, formats.TASK)
