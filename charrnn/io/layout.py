"""A run directory's layout, and the steps that make, replace and tidy one.

A run directory (of any objective: language model, classifier, tagger) holds:
    config.json           the resolved configuration (what ran, every default filled in)
    latest.safetensors    the most recent checkpoint
    best.safetensors      the checkpoint with the lowest validation loss so far
    metrics.jsonl         one JSON object per report
    samples.txt           text sampled during training (language model)
    tokens.bin            the text's token ids, memory-mapped while training (language model)
    text.txt              the text itself, when it was given as strings (charrnn.fit(texts=...))
    step-000500.safetensors  numbered checkpoints (--keep-every), the newest --keep-last of them
    environment.json      one entry per invocation: the versions and the machine that trained
    .lock                 while a process writes to the run (lock.py)

Set-up takes the lock before anything in the directory changes, and on any failure removes what
it made (`claim`, `release_claim`), so that a refused training leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .lock import RunLock
from .writer import atomic_write_bytes

LATEST = "latest.safetensors"
BEST = "best.safetensors"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.txt"
TOKENS = "tokens.bin"
ENVIRONMENT = "environment.json"
TEXT = "text.txt"  # the run's text, when it was given as strings (charrnn.fit(texts=...))
# What a run writes while it trains; replacing a run (--force) removes all of them first.
RUN_FILES = (LATEST, BEST, CONFIG, METRICS, SAMPLES, TOKENS, ENVIRONMENT, TEXT)
SNAPSHOT = re.compile(r"step-(\d{6,})\.safetensors")  # numbered checkpoints (--keep-every)
# The commands' own outputs inside a run: the next run of the same command replaces its own without
# --force (io.writer), and a replaced run loses them with the rest, since they describe its model.
REPORT = "report.html"
CURVES = "curves.png"
COMMAND_OUTPUTS = (REPORT, CURVES)


def snapshot_name(step: int) -> str:
    return f"step-{step:06d}.safetensors"


def snapshots(d: Path) -> list[Path]:
    """The numbered checkpoints of run directory `d`, oldest first."""
    try:
        found = [(int(m.group(1)), p) for p in d.iterdir() if (m := SNAPSHOT.fullmatch(p.name)) and p.is_file()]
    except OSError:
        return []
    return [p for _, p in sorted(found)]
# The files whose presence makes a directory a run.
MARKERS = (LATEST, BEST, CONFIG)


def run_dir_path(value: str | os.PathLike[str], what: str | None = "--out") -> Path:
    """A run directory given by the user (`what` names the flag or argument, None for none). An
    empty path is refused: Path("") is the current folder, and a run written there would mix
    with the user's own files."""
    prefix = f"{what}: " if what else ""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{prefix}a run directory is a path, got {type(value).__name__}")
    if os.fspath(value) in ("", b""):
        raise ConfigError(f"{prefix}an empty path names no run directory (it would be the current folder)")
    return Path(value)


def holds_run(d: Path) -> bool:
    return d.is_dir() and any((d / n).exists() for n in MARKERS)


def check_new_run_dir(d: Path, force: bool, hint: str) -> bool:
    """Whether `d` holds a run to replace (with `force`); refused without it. `hint` ends the refusal."""
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--out {d} exists and is not a directory")
    replacing = holds_run(d)
    if replacing and not force:
        raise ConfigError(f"{d} already holds a run: {hint}")
    return replacing


def clear_run(d: Path) -> None:
    """Remove the files of the run in `d` (the lock held): a replaced run's files, and the
    commands' outputs about it, would contradict the new one."""
    for n in RUN_FILES + COMMAND_OUTPUTS:
        (d / n).unlink(missing_ok=True)
    for p in snapshots(d):
        p.unlink(missing_ok=True)


class Claim:
    """Run directory `d` made (with its missing parents) and locked, before anything in it is
    touched (another writer's files are its own). `undo()` on a failed set-up removes the files
    listed in `written`, releases the lock and removes the directories it made."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.created = _missing_dirs(d)
        self.written: list[Path] = []
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create {d}: {e.strerror or e}") from None
        self.lock = RunLock(d)
        try:
            self.lock.acquire()
        except BaseException:
            _remove_dirs(self.created)
            raise

    def undo(self) -> None:
        for p in self.written:
            discard(p)
        self.lock.release()
        _remove_dirs(self.created)


def discard(p: Path) -> None:
    """Remove a file on the way out of a failure: one that cannot be removed (a directory made
    read-only meanwhile) must not hide the failure being reported."""
    try:
        p.unlink(missing_ok=True)
    except OSError:
        pass


def _remove_dirs(created: list[Path]) -> None:
    """Remove the directories `_missing_dirs` listed, innermost first, where they are empty."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            pass


def _missing_dirs(d: Path) -> list[Path]:
    """The directories `d.mkdir(parents=True)` would create, outermost first."""
    missing = []
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing[::-1]


def remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process never renamed. Called
    with the run's lock held, so no live process is writing any of them."""
    try:
        for p in run_dir.iterdir():
            bare = p.name.lstrip(".")
            ours = any(bare.startswith(n + ".") for n in RUN_FILES) or SNAPSHOT.match(bare)
            if p.name.startswith(".") and ours and p.is_file():
                p.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: a leftover wastes space, it cannot be mistaken for a checkpoint


def append_environment(d: Path, entry: dict[str, Any]) -> None:
    """Add one invocation's entry to environment.json (a record for people: nothing reads it back
    to decide anything, and a damaged one is started over)."""
    from ..errors import CharRNNError
    from .readers import read_json

    path = d / ENVIRONMENT
    try:
        entries = read_json(path, what="record of the run's environment") if path.exists() else []
    except CharRNNError:
        entries = []
    if not isinstance(entries, list):
        entries = []
    write_json(path, entries + [entry])


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------------------------------------------
# the metrics log as of a checkpoint


def records_upto(data: bytes, step: int) -> list[bytes]:
    """The whole records of a metrics log at or before `step` (a torn last line is dropped)."""
    from ..errors import CharRNNError
    from .readers import parse_json

    keep = []
    for line in data.splitlines(keepends=True):
        try:
            record = parse_json(line, "", CharRNNError, constants=True) if line.endswith(b"\n") else None
        except CharRNNError:
            record = None
        if isinstance(record, dict) and not (type(record.get("step")) is int and record["step"] > step):
            keep.append(line)
    return keep


def trim_metrics(path: Path, step: int) -> None:
    """Drop the metrics records past the checkpoint's step (a killed run logged steps it will now
    train again) and a torn last line, so the resumed log reads as if the run never stopped."""
    from ..errors import CheckpointError
    from .readers import read_file

    if not path.exists() and not path.is_symlink():
        return
    data = read_file(path, CheckpointError, "metrics log", allow_empty=True)
    keep = records_upto(data, step)
    if len(keep) != len(data.splitlines()):
        atomic_write_bytes(path, b"".join(keep))


def metrics_upto(path: Path, step: int) -> bytes:
    """The metrics records of `path` up to `step` (none if there is no log)."""
    from ..errors import CheckpointError
    from .readers import read_file

    if not path.exists() and not path.is_symlink():
        return b""
    return b"".join(records_upto(read_file(path, CheckpointError, "metrics log", allow_empty=True), step))
