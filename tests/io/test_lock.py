"""The run lock: a lock file this process made and could not fill (a full disk) is removed again,
so that a training refused at set-up leaves nothing behind; a lock file that is a link is never
followed."""

import errno
import json
import random

import pytest

from conftest import SONNET, charrnn, fill_disk, listing
from charrnn.errors import CheckpointError
from charrnn.io import lock as lock_module
from charrnn.io.layout import Claim
from charrnn.io.lock import LOCK, RunLock


def _disk_full(fd, data):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_lock_file_that_cannot_be_filled_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "_write_record", _disk_full)
    with pytest.raises(CheckpointError, match=f"^cannot lock {tmp_path}: No space left on device$"):
        RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK).exists()
    # the folders made for the run go too
    with pytest.raises(CheckpointError):
        Claim(tmp_path / "a" / "run")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with RunLock(tmp_path) as held:  # and with space again the lock is taken and names its holder
        assert json.loads((tmp_path / LOCK).read_text())["pid"] > 0 and held.held
    assert not (tmp_path / LOCK).exists()


def test_a_lock_file_left_by_another_process_is_not_removed_by_a_failed_fill(tmp_path, monkeypatch):
    (tmp_path / LOCK).write_text(json.dumps({"host": "h", "pid": 1}))  # not this process's to remove
    monkeypatch.setattr(lock_module, "_write_record", _disk_full)
    monkeypatch.setattr(lock_module, "_host", lambda: "h")
    monkeypatch.setattr(RunLock, "_stale", staticmethod(lambda holder: True))
    with pytest.raises(CheckpointError, match="No space left on device"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK).exists()


def test_a_lock_file_that_is_a_link_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("kept")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK).symlink_to(victim)
    with pytest.raises(CheckpointError, match="cannot lock"):
        RunLock(tmp_path / "run").acquire()
    assert victim.read_text() == "kept"


def task_data(tmp_path, task):
    r = random.Random(0)
    words = ["".join(r.choice("ab") for _ in range(r.randint(2, 12))) for _ in range(60)]
    if task == "classify":
        path = tmp_path / "data.tsv"
        path.write_text("".join(f"{w}\t{w[0]}\n" for w in words))
    else:
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps({"text": w, "tags": list(w.upper())}) + "\n" for w in words))
    return path


@pytest.mark.parametrize("command", [["train"], ["classify", "train"], ["tag", "train"]])
def test_a_training_refused_by_a_full_disk_at_set_up_leaves_nothing(tmp_path, small_disk, command):
    if command == ["train"]:
        data = tmp_path / "text.txt"
        data.write_text(SONNET * 4)
    else:
        data = task_data(tmp_path, command[0])
    fill_disk(small_disk)
    before = listing(small_disk)
    proc = charrnn(*command, data, "--out", small_disk / "runs" / "a", "--hidden-size", "8", "--steps", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"charrnn {command[0]}") and "No space left on device" in proc.stderr
    assert listing(small_disk) == before
