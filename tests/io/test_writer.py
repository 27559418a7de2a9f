"""The one writer: a failure at any point of a write (a full disk in the write, the fsync or the
rename, injected, and a real full filesystem) leaves the previous version byte for byte and no
temporary file; `check_target` refuses every target a command must not write."""

import errno
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from conftest import HalfWrittenFile, charrnn, fill_disk, listing
from charrnn.errors import CheckpointError, ConfigError
from charrnn.io import writer
from charrnn.io.checkpoint import BEST, LATEST
from charrnn.io.lock import LOCK
from charrnn.io.layout import CURVES, REPORT, RUN_FILES
from charrnn.io.writer import atomic_write_bytes, check_target, write_file

OLD, NEW = b"the previous version\n", b"the new version, longer than the old one\n" * 50


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def inject_disk_full(monkeypatch, stage: str) -> None:
    """Make the writer's `stage` (its write, its fsync or its rename) fail as a full disk does."""
    if stage == "write":  # half the data reaches the disk, then the write fails
        real = open

        def half_open(file, mode="r", *args, **kwargs):
            f = real(file, mode, *args, **kwargs)
            return HalfWrittenFile(f, _disk_full) if "w" in mode else f

        monkeypatch.setattr(writer, "open", half_open, raising=False)
    elif stage == "fsync":
        monkeypatch.setattr(writer.os, "fsync", _disk_full)
    else:
        monkeypatch.setattr(writer.os, "replace", _disk_full)


@pytest.mark.parametrize("stage", ["write", "fsync", "rename"])
def test_a_full_disk_at_any_stage_keeps_the_previous_version_and_no_temporary(tmp_path, monkeypatch, stage):
    target = tmp_path / "out.html"
    target.write_bytes(OLD)
    (tmp_path / "other.txt").write_text("the user's")
    before = listing(tmp_path)
    inject_disk_full(monkeypatch, stage)
    with pytest.raises(CheckpointError, match="^cannot write .*out.html: No space left on device$"):
        write_file(target, NEW, force=True)
    ran = []

    def fill(tmp: Path) -> None:  # a writer that fills its own temporary, as Keras does
        with getattr(writer, "open", open)(tmp, "wb") as f:
            f.write(NEW)

    with pytest.raises(CheckpointError, match="No space left on device"):
        write_file(target, fill, force=True, suffix=".keras")
    with pytest.raises(CheckpointError, match="No space left on device"):
        atomic_write_bytes(target, NEW, before_replace=lambda: ran.append(1))
    assert listing(tmp_path) == before
    # what goes with the old version goes only once the new one is safely written
    assert ran == ([1] if stage == "rename" else [])
    monkeypatch.undo()
    write_file(target, NEW, force=True)  # and with space again the write goes through
    assert target.read_bytes() == NEW and listing(tmp_path).keys() == before.keys()


def test_a_real_full_disk_keeps_the_previous_version(small_disk):
    target = small_disk / "report.html"
    target.write_bytes(OLD)
    filler = fill_disk(small_disk)
    before = listing(small_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        write_file(target, NEW * 100, force=True)
    assert listing(small_disk) == before
    filler.unlink()
    write_file(target, NEW * 100, force=True)
    assert target.read_bytes() == NEW * 100


def test_stale_temporaries_of_a_dead_writer_are_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "x.keras"
    dead = tmp_path / ".x.keras.tmp999999999.keras"  # no such pid
    live = tmp_path / f".x.keras.tmp{os.getppid()}.keras"
    dead.write_bytes(b"torn")
    live.write_bytes(b"being written")
    write_file(target, NEW, suffix=".keras")
    assert not dead.exists() and live.exists() and target.read_bytes() == NEW


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run: every file a training writes."""
    base = tmp_path_factory.mktemp("writer")
    (base / "t.txt").write_text("abcab cabba abc\n" * 40)
    proc = charrnn("train", base / "t.txt", "--out", base / "run", "--hidden-size", "8", "--seq-len", "16",
                   "--batch-size", "4", "--steps", "4", "--eval-every", "2", "--sample-every", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (base / "run" / "text.txt").write_text("abcab\n")  # what a run trained on strings keeps (fit(texts=...))
    assert {p.name for p in (base / "run").iterdir()} >= set(RUN_FILES)
    return base / "run"


def hostile_targets(tmp: Path, run: Path) -> dict[str, Path | str]:
    """Every kind of target the writer refuses even with force, by what it is."""
    (tmp / "file").write_text("kept")
    (tmp / "link").symlink_to(tmp / "file")
    (tmp / "dangling").symlink_to(tmp / "nowhere")
    os.mkfifo(tmp / "fifo")
    (tmp / "dir").mkdir()
    shutil.copy(run / LATEST, tmp / "renamed.png")  # a training checkpoint under any name
    targets: dict[str, Path | str] = {
        "empty path": "", "a symbolic link": tmp / "link", "a dangling link": tmp / "dangling",
        "a FIFO": tmp / "fifo", "a directory": tmp / "dir", "a directory, by its slash": f"{tmp / 'new'}/",
        "a missing folder": tmp / "no" / "x.png", "a checkpoint by content": tmp / "renamed.png",
        "the run's lock": run / LOCK,
        "a training file, in another case": run / LATEST.upper(),
    }
    targets |= {f"the run's {name}": run / name for name in RUN_FILES}
    if os.geteuid() == 0:
        os.mknod(tmp / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets["a device"] = tmp / "null"
    else:
        targets["a device"] = Path(os.devnull)
    return targets


def test_check_target_refuses_every_hostile_target_even_with_force(tmp_path, run):
    before = listing(run)
    targets = hostile_targets(tmp_path, run)
    snap = listing(tmp_path)
    for what, target in targets.items():
        with pytest.raises(ConfigError) as e:
            write_file(target, NEW, force=True)
        message = str(e.value)
        assert "\n" not in message and (str(target) in message or target == ""), (what, message)
    assert listing(tmp_path) == snap and listing(run) == before
    assert not (tmp_path / "nowhere").exists() and (tmp_path / "file").read_text() == "kept"


def test_a_socket_is_refused():
    with tempfile.TemporaryDirectory() as d:  # a short path: socket names are limited to ~100 bytes
        path = os.path.join(d, "s")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(path)
            with pytest.raises(ConfigError, match="is a socket"):
                check_target(path, force=True)
        finally:
            s.close()


def test_existing_files_need_force_except_a_commands_own_output_inside_a_run(tmp_path, run):
    mine = tmp_path / "mine.png"
    mine.write_bytes(OLD)
    with pytest.raises(ConfigError, match="already exists: --force replaces it"):
        write_file(mine, NEW)
    assert mine.read_bytes() == OLD
    assert write_file(mine, NEW, force=True) == mine and mine.read_bytes() == NEW
    # report.html in a run is the report's own output: the next report replaces it freely
    (run / REPORT).write_bytes(OLD)
    write_file(run / REPORT, NEW, own=REPORT)
    assert (run / REPORT).read_bytes() == NEW
    # ... but not another command's, and not the same name outside a run
    with pytest.raises(ConfigError, match="already exists"):
        write_file(run / REPORT, NEW, own=CURVES)
    (tmp_path / REPORT).write_bytes(OLD)
    with pytest.raises(ConfigError, match="already exists"):
        write_file(tmp_path / REPORT, NEW, own=REPORT)
    (run / REPORT).unlink()


def test_a_checkpoint_name_is_free_outside_a_run(tmp_path):
    """latest.safetensors is a training file only inside a run directory."""
    write_file(tmp_path / BEST, NEW)
    assert (tmp_path / BEST).read_bytes() == NEW
