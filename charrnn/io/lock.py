"""Run directories: one writer at a time.

A process that writes to a run directory (a training run, fresh or resumed) holds its lock, the
file ``RUN/.lock``, from before its first change there until it is done. Readers (`sample`,
`eval`, `export`) never take it: every file a writer replaces is replaced atomically, so a reader
sees the old file or the new one.

The lock is an advisory `flock` on that file, which the kernel drops when its holder dies, however
it dies; the file also names the holder (host and pid), so that a refused writer can say who holds
it. A lock file left by a process that is gone is taken over: on this host that is certain when the
`flock` is free. A lock file naming another host is refused even when the `flock` is free, since
not every shared filesystem carries locks between hosts; the message says how to clear it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .readers import parse_json, read_file, reader

try:
    import fcntl
except ImportError:  # not POSIX: the holder's pid, checked for life, is the only lock
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class RunLocked(CheckpointError):
    """Another process is writing to the run directory."""


def _host() -> str:
    return socket.gethostname() or "localhost"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one of another user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def read_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Who the lock file of `run_dir` names ({"host", "pid", "since"}), or None."""
    return read_lock_file(Path(run_dir) / LOCK)


@reader("lock record (.lock)", "json", tolerant=True)
def read_lock_file(path: Any) -> dict[str, Any] | None:
    """The holder a lock file names, or None for one that names no one (missing, not a regular
    file, damaged): the flock decides alone then."""
    try:
        return _parse(read_file(path, CheckpointError, "lock file", _MAX_RECORD))
    except CheckpointError:
        return None


# A lock record is one short JSON line.
_MAX_RECORD = 4096
_MAX_PID = 2**31 - 1  # pid_t: a larger number is no process, and os.kill could not even be asked


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        d = parse_json(data, "lock record", CheckpointError)
    except CheckpointError:
        return None
    if isinstance(d, dict) and isinstance(d.get("host"), str) and d["host"] \
            and type(d.get("pid")) is int and 0 < d["pid"] <= _MAX_PID:
        return d
    return None


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another process"
    return f"pid {holder['pid']} on host {holder['host']}"


class RunLock:
    """The write lock of one run directory; `acquire` refuses with `RunLocked` naming the holder.

    Re-entrant within its own object (`acquire` on a held lock does nothing); another RunLock of
    the same directory, even in this process, is refused.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        for _ in range(20):  # each retry means the lock was released and removed meanwhile
            try:
                opened = self._open()
            except OSError as e:
                raise CheckpointError(f"cannot lock {self.run_dir}: {e.strerror or e}") from None
            if opened is None:
                continue
            fd, created = opened
            locked = False
            try:
                if not self._try_lock(fd):
                    raise self._refusal(_parse(_read_fd(fd)))
                locked = True
                if not _same_file(fd, self.path):
                    os.close(fd)
                    continue
                holder = _parse(_read_fd(fd))
                if holder is not None and not self._stale(holder):
                    raise self._refusal(holder, other_host=holder["host"] != _host())
                record = {"host": _host(), "pid": os.getpid(), "since": round(time.time(), 3)}
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                _write_record(fd, (json.dumps(record) + "\n").encode())
            except BaseException as e:
                # a lock file this process made and could not fill (a full disk) names no one:
                # it goes, so that a refused writer leaves the directory as it found it
                if created and locked and _same_file(fd, self.path):
                    try:
                        self.path.unlink()
                    except OSError:
                        pass
                os.close(fd)
                if isinstance(e, OSError):
                    raise CheckpointError(f"cannot lock {self.run_dir}: {e.strerror or e}") from None
                raise
            self._fd = fd
            return self
        raise CheckpointError(f"cannot lock {self.run_dir}: its lock keeps changing hands")

    def _open(self) -> tuple[int, bool] | None:
        """The lock file's descriptor and whether this call created the file; None when the file
        went away between the two tries (its holder released it). A link is never followed."""
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            pass
        try:
            return os.open(self.path, flags), False
        except FileNotFoundError:
            return None

    def release(self) -> None:
        """Remove the lock file and let go (removed first, so that a process that opened the old
        file sees it is gone and starts over)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # a lock file left behind names this pid: the next writer takes it over
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        # closing drops the flock; the file stays, naming a process that no longer writes
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _try_lock(self, fd: int) -> bool:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return True  # a filesystem without locks: the holder's record decides alone
        return True

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        """A lock file whose holder no longer writes, known without asking another host."""
        if holder["host"] != _host():
            return False
        # with the flock ours, a live process of that pid is not a writer of this run (a reused
        # pid, or this very process through another RunLock, which the flock has refused already)
        return fcntl is not None or not pid_alive(holder["pid"])

    def _refusal(self, holder: dict[str, Any] | None, other_host: bool = False) -> RunLocked:
        message = f"{self.run_dir} is being written by {_describe(holder)}: wait for it to finish, or stop it"
        if other_host:
            message += f"; if no charrnn runs there any more, delete {self.path}"
        return RunLocked(message)


def _write_record(fd: int, data: bytes) -> None:
    """Write the holder's record whole (a short write is retried; a full disk raises)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_fd(fd: int) -> bytes:
    """The record in an open lock file; nothing from one that is not a regular file (a FIFO put
    in its place would never answer a read)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, _MAX_RECORD)
    except OSError:
        return b""


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
