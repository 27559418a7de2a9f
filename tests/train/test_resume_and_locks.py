"""Nothing lost, part two: exact resume with validation on, locked run directories, every input
checked before anything on disk is touched, safe export targets, content-checked resumes, closed
output channels, absurd losses, special files and temporaries.

Like test_failures.py, each case goes through the command line where the process matters and
in-process otherwise.
"""

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from charrnn.io.checkpoint import BEST, LATEST, METRICS, load_checkpoint
from charrnn.settings import TrainConfig
from charrnn.train import Interrupted, Trainer

from conftest import SONNET, run_cli
from conftest import charrnn, error_line, snapshot

TINY = ["--hidden-size", "16", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
        "--sample-every", "0", "--lr-schedule", "constant", "--quiet"]


@pytest.fixture
def text(tmp_path) -> Path:
    p = tmp_path / "sonnet.txt"
    p.write_text(SONNET * 6, encoding="utf-8")
    return p


def timeless_records(run: Path) -> list[dict]:
    """Every metrics record without its wall-clock fields."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed")}
            for line in (run / METRICS).read_text().splitlines()]


def checkpoint_arrays(path: Path) -> dict:
    c = load_checkpoint(path)
    state = {k: v for k, v in c.state.items() if k != "elapsed"}
    return {"state": state, **c.model.params, **{"optim/" + k: v for k, v in c.optimizer_arrays.items()},
            "hidden": c.hidden}


def assert_same_checkpoint(a: Path, b: Path) -> None:
    ca, cb = checkpoint_arrays(a), checkpoint_arrays(b)
    assert ca.keys() == cb.keys()
    assert ca.pop("state") == cb.pop("state")
    for k in ca:
        assert np.array_equal(ca[k], cb[k]), k


# ------------------------------------------------------------------------------------------------
# 1. a signal between validations changes nothing a run that never stopped would not have

# A high rate: validation (of the whole split) stops improving early (about step 60 here, the
# exact step depends on the machine's float rounding) and patience 2 ends the run 20 steps later,
# so a best or a patience count moved by the stop would show.
EARLY = dict(cell="rnn", eval_max_chars=1_000_000, hidden_size=64, seq_len=16, batch_size=8, steps=400, eval_every=10, patience=2, sample_every=7,
             lr=0.05, log_every=3, seed=7)


def stop_after(trainer: Trainer, step: int) -> None:
    """Deliver SIGINT's effect (the handler's flag) while step `step` is being taken."""
    batcher = trainer.objective.batcher
    real = batcher.next_batch

    def next_batch():
        if trainer.objective.state.step == step - 1:
            trainer._signal = signal.SIGINT
        return real()

    batcher.next_batch = next_batch


@pytest.mark.parametrize("stops", [[13], [64, 71]])
def test_interrupt_and_resume_with_validation_is_the_uninterrupted_run(tmp_path, text, stops):
    cfg = TrainConfig(text=str(text), **EARLY)
    ref, run = tmp_path / "ref", tmp_path / "run"
    result = Trainer(cfg, ref, quiet=True).run()
    best = load_checkpoint(ref / BEST).state["step"]
    # the case this test is about: stopped by patience, with both stops before the end
    assert result.stopped == "early" and result.step == best + 20 and max(stops) < result.step
    trainer = Trainer(cfg, run, quiet=True)
    for i, step in enumerate(stops):
        stop_after(trainer, step)
        with pytest.raises(Interrupted):
            trainer.run()
        assert load_checkpoint(run / LATEST).state["step"] == step
        trainer = Trainer(TrainConfig(), run, resume=True, quiet=True)
    assert trainer.run().step == result.step
    assert_same_checkpoint(run / LATEST, ref / LATEST)
    assert_same_checkpoint(run / BEST, ref / BEST)
    assert load_checkpoint(run / BEST).state["step"] == best
    assert timeless_records(run) == timeless_records(ref)
    assert (run / "samples.txt").read_text() == (ref / "samples.txt").read_text()


# ------------------------------------------------------------------------------------------------
# 6. one writer per run directory; readers go on


def test_a_second_writer_is_refused_naming_the_holder_and_readers_still_work(tmp_path, text):
    import os
    import socket

    from charrnn.io.lock import LOCK

    run = tmp_path / "run"
    assert run_cli("train", text, "--out", run, *TINY).returncode == 0
    holder = Trainer(TrainConfig(steps=8), run, resume=True, quiet=True)  # holds the lock from set-up on
    before = snapshot(run)
    me = f"pid {os.getpid()} on host {socket.gethostname()}"
    for args in (["--resume", run, "--steps", "12"], [text, "--out", run, "--force", *TINY]):
        line = error_line(run_cli("train", *args), "train")
        assert f"{run} is being written by {me}" in line
    assert snapshot(run) == before  # --force removed nothing, and nothing was staged
    # readers do not lock
    assert run_cli("sample", run, "--length", "5", "--seed", "1").returncode == 0
    assert run_cli("eval", run, text).returncode == 0
    assert run_cli("export", run, tmp_path / "m.safetensors").returncode == 0
    assert holder.run().step == 8
    assert not (run / LOCK).exists()  # let go at the end
    proc = run_cli("train", "--resume", run, "--steps", "10")
    assert proc.returncode == 0, proc.stderr


def test_a_stale_lock_is_taken_over_on_this_host_and_refused_from_another(tmp_path, text):
    import socket
    import subprocess
    import sys

    from charrnn.io.lock import LOCK, RunLock

    run = tmp_path / "run"
    assert run_cli("train", text, "--out", run, *TINY).returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0}))
    proc = run_cli("train", "--resume", run, "--steps", "6")
    assert proc.returncode == 0, proc.stderr
    assert not (run / LOCK).exists()
    (run / LOCK).write_text(json.dumps({"host": "elsewhere.example", "pid": 1, "since": 0}))
    line = error_line(run_cli("train", "--resume", run, "--steps", "8"), "train")
    assert "pid 1 on host elsewhere.example" in line and f"delete {run / LOCK}" in line
    (run / LOCK).unlink()
    # in one process too: a second lock object on the same directory is refused
    with RunLock(run):
        with pytest.raises(Exception, match="is being written by"):
            RunLock(run).acquire()
    assert not (run / LOCK).exists()


# ------------------------------------------------------------------------------------------------
# 4. every option, variable and input is checked before anything on disk changes


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_a_bad_charrnn_threads_changes_nothing(tmp_path, text, value):
    run = tmp_path / "run"
    assert run_cli("train", text, "--out", run, *TINY).returncode == 0
    before = snapshot(run)
    env = {"CHARRNN_THREADS": value}
    for args in ([text, "--out", run, "--force", *TINY], ["--resume", run, "--steps", "8"]):
        assert "CHARRNN_THREADS must be a whole number" in error_line(run_cli("train", *args, env=env), "train")
        assert snapshot(run) == before
    error_line(run_cli("train", text, "--out", tmp_path / "new" / "run", *TINY, env=env), "train")
    assert not (tmp_path / "new").exists()
    for cmd in (["hello"], ["sample", run, "--length", "3"], ["eval", run, text], ["gradcheck"]):
        proc = run_cli(*cmd, env=env)
        error_line(proc, cmd[0])
        assert proc.stdout == ""  # refused before any work, not half-way through it


# ------------------------------------------------------------------------------------------------
# 2. export writes new or (--force) regular files, and never a run's checkpoints


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("finished")
    (base / "sonnet.txt").write_text(SONNET * 6)
    run = base / "run"
    assert run_cli("train", base / "sonnet.txt", "--out", run, *TINY).returncode == 0
    return run


def test_export_needs_force_to_replace_a_file_and_refuses_anything_but_a_regular_file(finished, tmp_path):
    import os

    from safetensors import safe_open

    out = tmp_path / "model.safetensors"
    out.write_text("mine")
    assert "already exists: --force replaces it" in error_line(charrnn("export", finished, out), "export")
    assert out.read_text() == "mine"
    assert charrnn("export", finished, out, "--force").returncode == 0
    with safe_open(str(out), framework="numpy") as f:
        assert f.metadata()["format"] == "charrnn.torch-export"
    target = tmp_path / "target.txt"
    target.write_text("kept")
    (tmp_path / "link.safetensors").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "adir").mkdir()
    for name, kind in [("link.safetensors", "a symbolic link"), ("fifo", "a FIFO"), ("adir", "a directory")]:
        line = error_line(charrnn("export", finished, tmp_path / name, "--force"), "export")
        assert f"is {kind}: only a regular file is written or replaced" in line
    assert target.read_text() == "kept" and (tmp_path / "link.safetensors").is_symlink()
    line = error_line(charrnn("export", finished, f"{tmp_path / 'newdir'}/"), "export")
    assert "names a directory" in line and not (tmp_path / "newdir").exists()


def test_export_never_writes_a_runs_checkpoints(finished, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = snapshot(run)
    for name in (LATEST, BEST):
        line = error_line(charrnn("export", run, run / name, "--force"), "export")
        assert "its training writes it, no other command does" in line
    (run / BEST).unlink()  # a run without a best yet: its best is still no target
    assert "its training writes it" in error_line(charrnn("export", run, run / BEST), "export")
    shutil.copy(run / LATEST, tmp_path / "copy.safetensors")  # a checkpoint anywhere, under any name
    line = error_line(charrnn("export", run, tmp_path / "copy.safetensors", "--force"), "export")
    assert "is a training checkpoint: no command but training replaces one" in line
    assert snapshot(run) == {k: v for k, v in before.items() if k != BEST}
    assert run_cli("train", "--resume", run, "--steps", "6").returncode == 0


# ------------------------------------------------------------------------------------------------
# 3, 16. a resume trains on the very text of the run, or refuses


def rewrite_state(path: Path, change) -> None:
    from conftest import rewrite_metadata

    rewrite_metadata(path, lambda meta: change(meta["state"]))


@pytest.fixture
def trained_run(tmp_path, text) -> Path:
    run = tmp_path / "run"
    assert run_cli("train", text, "--out", run, *TINY).returncode == 0
    return run


def test_a_changed_text_of_the_same_length_is_caught_after_tokens_bin_is_gone(trained_run, text):
    from charrnn.io.checkpoint import TOKENS

    (trained_run / TOKENS).unlink()
    before = snapshot(trained_run)
    text.write_text((SONNET * 6)[::-1])  # same symbols, same length, another text
    line = error_line(run_cli("train", "--resume", trained_run, "--steps", "6"), "train")
    assert "is not the text this run was trained on (its content hash differs)" in line
    assert snapshot(trained_run) == before  # no tokens.bin of the wrong text


def test_a_swapped_or_damaged_tokens_bin_is_caught(trained_run, tmp_path, text):
    from charrnn.io.checkpoint import TOKENS

    other = tmp_path / "other"
    (tmp_path / "reversed.txt").write_text((SONNET * 6)[::-1])
    assert run_cli("train", tmp_path / "reversed.txt", "--out", other, *TINY).returncode == 0
    good = (trained_run / TOKENS).read_bytes()
    (trained_run / TOKENS).write_bytes((other / TOKENS).read_bytes())  # same vocabulary and length
    line = error_line(run_cli("train", "--resume", trained_run, "--steps", "6"), "train")
    assert "tokens.bin is not the encoded text this run was trained on" in line
    c = load_checkpoint(trained_run / LATEST)
    ids = np.frombuffer(good, dtype=c.vocab.id_dtype).copy()
    ids[len(ids) // 3] = c.vocab.size  # one id past the vocabulary
    (trained_run / TOKENS).write_bytes(ids.tobytes())
    line = error_line(run_cli("train", "--resume", trained_run, "--steps", "6"), "train")
    assert f"holds token id {c.vocab.size}, outside this run's vocabulary" in line
    (trained_run / TOKENS).write_bytes(good)
    assert run_cli("train", "--resume", trained_run, "--steps", "6").returncode == 0


def test_a_checkpoint_without_hashes_still_resumes_and_records_them(trained_run):
    for name in (LATEST, BEST):
        rewrite_state(trained_run / name, lambda st: [st.pop(k) for k in ("text_sha256", "tokens_sha256",
                                                                           "report_steps", "report_loss_sum")])
    assert load_checkpoint(trained_run / LATEST).state.get("tokens_sha256") is None
    proc = run_cli("train", "--resume", trained_run, "--steps", "6")
    assert proc.returncode == 0, proc.stderr
    assert len(load_checkpoint(trained_run / LATEST).state["tokens_sha256"]) == 64


# ------------------------------------------------------------------------------------------------
# 12. an earlier checkpoint continues only in a new run directory


def test_resume_from_best_is_refused_in_place_and_continues_in_a_new_directory(tmp_path, text):
    import shutil

    from charrnn.io.checkpoint import CONFIG, TOKENS

    run = tmp_path / "run"
    Trainer(TrainConfig(text=str(text), **EARLY), run, quiet=True).run()  # best at 60, latest at 80
    before = snapshot(run)
    line = error_line(charrnn("train", "--resume", run / BEST, "--steps", "300"), "train")
    assert f"{run / BEST} is not the latest checkpoint of {run}" in line and "--out NEW_DIR" in line
    assert snapshot(run) == before
    new = tmp_path / "new"
    proc = run_cli("train", "--resume", run / BEST, "--out", new, "--steps", "250")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(run) == before  # the source run is only read
    assert sorted(p.name for p in new.iterdir()) == sorted([BEST, CONFIG, LATEST, METRICS, TOKENS, "samples.txt",
                                                          "environment.json"])
    assert json.loads((new / CONFIG).read_text())["steps"] == 250
    # the same as putting best in latest's place and resuming there: optimizer, data, generators
    ref = tmp_path / "ref"
    shutil.copytree(run, ref)
    shutil.copy(ref / BEST, ref / LATEST)
    assert run_cli("train", "--resume", ref, "--steps", "250").returncode == 0
    assert_same_checkpoint(new / LATEST, ref / LATEST)
    assert timeless_records(new) == timeless_records(ref)
    assert [r["step"] for r in timeless_records(new)][:3] == [3, 6, 9]  # the log up to step 60 came along
    # a new directory that holds a run needs --force
    line = error_line(charrnn("train", "--resume", run, "--out", new, "--steps", "270"), "train")
    assert "already holds a run" in line
    assert charrnn("train", "--resume", run, "--out", new, "--steps", "262", "--patience", "100", "--force",
                   "--quiet").returncode == 0
    assert load_checkpoint(new / LATEST).state["step"] == 262


# ------------------------------------------------------------------------------------------------
# 7. a closed stdout or stderr never stops training


def run_with_closed(channel: str, *args):
    """Run `python -m charrnn ARGS` with stdout or stderr a pipe nobody reads (closed at once);
    returns (status, what the other channel said)."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    streams = {"stdout": w, "stderr": subprocess.PIPE} if channel == "stdout" else {"stdout": subprocess.PIPE, "stderr": w}
    try:
        proc = subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], env=env, timeout=300, **streams)
    finally:
        os.close(w)
    other = proc.stderr if channel == "stdout" else proc.stdout
    return proc.returncode, other.decode()


@pytest.mark.parametrize("channel", ["stdout", "stderr"])
def test_training_goes_on_when_its_output_is_closed(tmp_path, text, channel):
    run = tmp_path / "run"
    flags = [a for a in TINY if a != "--quiet"]  # progress bar and lines on stderr, records on stdout
    status, said = run_with_closed(channel, "train", text, "--out", run, *flags, "--steps", "12",
                                   "--json-log", "--log-every", "1", "--sample-every", "5")
    assert status == 0, said
    assert "Traceback" not in said and "cannot write" not in said
    assert load_checkpoint(run / LATEST).state["step"] == 12
    assert len(timeless_records(run)) == 12


def test_sample_into_a_closed_pipe_is_quiet(finished):
    status, said = run_with_closed("stdout", "sample", finished, "--length", "200000", "--seed", "1")
    assert status == 0 and said == ""


# ------------------------------------------------------------------------------------------------
# 14. an absurd loss is divergence, however finite


def test_an_absurd_finite_loss_is_divergence(tmp_path, text, monkeypatch):
    from charrnn import CharRNN

    run = tmp_path / "run"
    # finite weights whose loss is some 1e18 nats per character: diverged, not healthy
    proc = run_cli("train", text, "--out", run, *TINY, "--steps", "30", "--optimizer", "sgd", "--lr", "1e20",
                   "--clip-norm", "0", "--max-divergences", "2")
    line = error_line(proc, "train", status=3)
    assert "training diverged (loss" in line and "over 3x" in line and "the run's first loss" in line
    # one absurd step in a healthy run is rolled back like a NaN, judged by the first step's loss,
    # which the checkpoint keeps, so that a resumed run judges alike
    real, calls = CharRNN.loss_and_grads, {"n": 0}

    def spiking(self, x, y, h0=None):
        calls["n"] += 1
        loss, grads, h = real(self, x, y, h0)
        return (loss * 10 if calls["n"] == 9 else loss), grads, h

    monkeypatch.setattr(CharRNN, "loss_and_grads", spiking)
    cfg = TrainConfig(text=str(text), hidden_size=16, seq_len=16, batch_size=4, steps=6, eval_every=2,
                      sample_every=0, log_every=1, smooth=0.0)  # unsmoothed: the step's own loss is judged
    assert Trainer(cfg, tmp_path / "ok", quiet=True).run().step == 6
    c = load_checkpoint(tmp_path / "ok" / LATEST)
    first = c.state["initial_loss"]
    assert first == json.loads((tmp_path / "ok" / METRICS).read_text().splitlines()[0])["train_loss"]
    import io
    import math

    out = io.StringIO()
    trainer = Trainer(TrainConfig(steps=10), tmp_path / "ok", resume=True, stream=out, progress=False)
    assert trainer.run().step == 10
    reference = max(first, math.log(c.vocab.size))
    assert f"over 3x {reference:.4g}, the run's first loss or a uniform guess's) at step 9: restored the last good " \
           "checkpoint (step 8)" in out.getvalue()


def test_a_run_that_starts_far_below_a_uniform_guess_is_not_divergence(tmp_path, text, monkeypatch):
    """A fine-tuned model starts far below the smoothed loss's starting point (a uniform guess's):
    that is not 3x its first loss."""
    from charrnn import CharRNN

    real = CharRNN.loss_and_grads

    def low(self, x, y, h0=None):
        loss, grads, h = real(self, x, y, h0)
        return loss / 10, grads, h

    monkeypatch.setattr(CharRNN, "loss_and_grads", low)
    import io

    out = io.StringIO()
    cfg = TrainConfig(text=str(text), hidden_size=16, seq_len=16, batch_size=4, steps=6, eval_every=3, sample_every=0)
    assert Trainer(cfg, tmp_path / "run", stream=out, progress=False).run().step == 6
    assert "restored" not in out.getvalue()


# ------------------------------------------------------------------------------------------------
# 9. FIFOs, pipes and devices are refused at once


def test_a_fifo_a_pipe_or_a_device_is_refused_at_once(tmp_path, finished):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # with no writer: opening it to read would wait forever
    for args in (["train", fifo, "--out", tmp_path / "run", *TINY], ["eval", finished, fifo],
                 ["sample", finished, "--prime-file", fifo, "--length", "3"]):
        line = error_line(run_cli(*args, timeout=30), args[0])
        assert f"{fifo} is a FIFO or pipe, not a regular file" in line
    assert not (tmp_path / "run").exists()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "charrnn", "train", "/dev/stdin", "--out", tmp_path / "run", *TINY],
                          input=SONNET.encode() * 6, capture_output=True, env=env, timeout=60)
    assert proc.returncode == 2 and b"/dev/stdin is a FIFO or pipe, not a regular file" in proc.stderr
    assert "/dev/zero is a device" in error_line(run_cli("eval", finished, "/dev/zero", timeout=60), "eval")


# ------------------------------------------------------------------------------------------------
# 10. temporaries: removed on every way out, and those of dead processes by the next run

# Run in a child process: SIGTERM to itself in the middle of a chosen function (argv[1]: module,
# argv[2]: attribute), then the command line (argv[3:]).
TERM_INSIDE = '''
import importlib, os, signal, sys, time

module, name = importlib.import_module(sys.argv[1]), sys.argv[2]
owner, _, attr = name.rpartition(".")
target = getattr(module, owner) if owner else module
real = getattr(target, attr)

def terminated(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler runs here
    return real(*args, **kwargs)

setattr(target, attr, terminated)
from charrnn.cli import main
sys.exit(main(sys.argv[3:]))
'''


def run_terminated(tmp_path, where: str, *args):
    import os
    import subprocess
    import sys

    driver = tmp_path / "driver.py"
    driver.write_text(TERM_INSIDE)
    module, _, name = where.partition(":")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TMPDIR=str(tmp_path / "tmp"))
    return subprocess.run([sys.executable, driver, module, name, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_sigterm_during_set_up_or_eval_leaves_no_temporary(tmp_path, text, finished):
    (tmp_path / "tmp").mkdir()
    run = tmp_path / "run"
    # in the middle of encoding the text into the run directory (a temporary file open there)
    proc = run_terminated(tmp_path, "charrnn.data.text:Vocab._encode_values", "train", text, "--out", run, *TINY)
    assert proc.returncode == 143 and proc.stderr == "charrnn train: stopped by SIGTERM\n", proc.stderr
    assert not run.exists()
    # ... and of an eval, whose encoded text lives in the system's temporary directory
    proc = run_terminated(tmp_path, "charrnn.evaluate.lm:evaluate_ids", "eval", finished, text)
    assert proc.returncode == 143 and proc.stderr == "charrnn eval: stopped by SIGTERM\n", proc.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path, text, finished):
    import os
    import subprocess
    import sys

    from charrnn.cli.evaluate import EVAL_TMP_PREFIX

    tmp = tmp_path / "tmp"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    for pid in (dead, os.getpid()):
        (tmp / f"{EVAL_TMP_PREFIX}{pid}-abc123").mkdir(parents=True)
        (tmp / f"{EVAL_TMP_PREFIX}{pid}-abc123" / "ids.bin").write_bytes(b"\0" * 64)
    assert run_cli("eval", finished, text, env={"TMPDIR": str(tmp)}).returncode == 0
    assert [p.name for p in tmp.iterdir()] == [f"{EVAL_TMP_PREFIX}{os.getpid()}-abc123"]
    # beside any file written atomically (an export's output, say)
    out = tmp_path / "m.safetensors"
    stale, live = tmp_path / f".m.safetensors.tmp{dead}", tmp_path / f".m.safetensors.tmp{os.getpid()}"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert run_cli("export", finished, out).returncode == 0
    assert not stale.exists() and live.exists()
    # in a run directory, under its lock: what a killed writer left
    run = tmp_path / "run"
    assert run_cli("train", text, "--out", run, *TINY).returncode == 0
    stale = [run / f".{LATEST}.tmp{dead}", run / ".tokens.bin.new", run / "..tokens.bin.new.x1y2.tmp",
             run / f".{METRICS}.tmp{dead}"]
    for p in stale:
        p.write_bytes(b"left by a killed process")
    assert run_cli("train", "--resume", run, "--steps", "6").returncode == 0
    assert not [p for p in stale if p.exists()]


# ------------------------------------------------------------------------------------------------
# 11. memory is judged at the batch and window a short text leaves


def test_a_huge_batch_on_a_short_text_shrinks_and_trains(tmp_path):
    (tmp_path / "short.txt").write_text("abcdefgh" * 4)
    run = tmp_path / "run"
    proc = run_cli("train", tmp_path / "short.txt", "--out", run, "--hidden-size", "16", "--steps", "3",
                   "--batch-size", "100000000", "--seq-len", "1000000", "--sample-every", "0")
    assert proc.returncode == 0, proc.stderr
    assert "batch_size 100000000 -> 1" in proc.stderr and "seq_len 1000000 -> 28" in proc.stderr
    assert load_checkpoint(run / LATEST).state["step"] == 3


# ------------------------------------------------------------------------------------------------
# 13. config.json stays true


def test_config_json_follows_a_resume_and_a_hand_edit_is_named_and_undone(trained_run):
    from charrnn.io.checkpoint import CONFIG

    proc = run_cli("train", "--resume", trained_run, "--steps", "6")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((trained_run / CONFIG).read_text())
    assert config["steps"] == 6
    lr = config["lr"]
    config["lr"] = 0.5  # not an input: the run goes on with the checkpoint's rate
    (trained_run / CONFIG).write_text(json.dumps(config))
    proc = run_cli("train", "--resume", trained_run, "--steps", "8", "--log-every", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"{trained_run / CONFIG} was changed by hand (lr)" in proc.stderr
    assert json.loads((trained_run / CONFIG).read_text()) == config | {"lr": lr, "steps": 8, "log_every": 1}
    assert json.loads((trained_run / METRICS).read_text().splitlines()[-1])["lr"] == lr


# ------------------------------------------------------------------------------------------------
# an output channel that is not UTF-8


def test_sample_on_an_ascii_stdout_escapes_what_it_cannot_show(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "u.txt").write_text("héllo wörld, ça va? " * 64)
    run = tmp_path / "run"
    assert run_cli("train", tmp_path / "u.txt", "--out", run, *TINY).returncode == 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="ascii")
    proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", run, "--length", "300", "--seed", "1",
                           "--prime", "é"], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.isascii() and proc.stdout.startswith(b"\\xe9")
    assert proc.stderr.decode().splitlines() == [
        "charrnn sample: stdout's encoding (ascii) cannot show every character of this model; those are written "
        "as backslash escapes (PYTHONIOENCODING=utf-8 writes them as they are)"]


# ------------------------------------------------------------------------------------------------
# every command: a bad value is one line and exit 2, before any output


@pytest.mark.parametrize("args, expect", [
    (["hello", "--seed", "-1"], "--seed: must be >= 0"),
    (["hello", "--lr", "nan"], "--lr must be a positive number"),
    (["hello", "--lr", "-1"], "--lr must be a positive number"),
    (["hello", "--hidden-size", "100000000"], "is too large"),
    (["gradcheck", "--seed", "-1"], "--seed: must be >= 0"),
    (["sample", "RUN", "--seed", "-1"], "--seed: must be >= 0"),
    (["sample", "RUN", "--threads", "100000000000000000000"], "threads must be at most 4096"),
    (["train", "TEXT", "--seed", "-3", "--out", "NEW"], "--seed must be >= 0"),
])
def test_every_command_refuses_a_bad_value_in_one_line(finished, tmp_path, args, expect):
    args = [{"RUN": finished, "TEXT": finished.parent / "sonnet.txt", "NEW": tmp_path / "new"}.get(a, a) for a in args]
    proc = charrnn(*args)
    assert expect in error_line(proc, args[0]) and proc.stdout == ""
    assert not (tmp_path / "new").exists()


def test_a_clean_up_that_cannot_remove_its_files_does_not_hide_the_error(tmp_path, text, monkeypatch):
    """A directory that turned read-only under a failing set-up: the one line is the failure's."""
    import errno

    from charrnn.errors import ConfigError
    from charrnn.train import lm as train_setup

    def refused(*args, **kwargs):
        raise ConfigError("refused for the test")

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(train_setup, "make_optimizer", refused)
    monkeypatch.setattr(Path, "unlink", read_only)
    line = error_line(charrnn("train", text, "--out", tmp_path / "run", *TINY), "train")
    assert line == "charrnn train: error: refused for the test"


def test_bench_checks_its_json_path_before_measuring(tmp_path):
    from charrnn import bench

    for path, expect in [(tmp_path / "no" / "r.json", f"cannot write {tmp_path / 'no' / 'r.json'}: no such directory"),
                         (tmp_path, f"{tmp_path} is a directory")]:
        proc = charrnn("bench", "--rows", "peak", "--repeats", "1", "--json", path)
        assert proc.stdout == "" and error_line(proc, "bench").startswith(f"charrnn bench: error: {expect}")
    assert bench.main(["--rows", "peak", "--repeats", "1", "--threads", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["peak_gflops"] > 0


def test_config_files_and_labelled_data_are_read_only_from_regular_files(tmp_path, text):
    """A FIFO given as a config file or as classify/tag data is refused at once (exit 2), never
    waited on, like a FIFO given as the training text."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for args in (["train", text, "--config", fifo, "--out", tmp_path / "a"],
                 ["classify", "train", fifo, "--out", tmp_path / "b"],
                 ["tag", "train", fifo, "--out", tmp_path / "c"]):
        proc = run_cli(*args, timeout=60)
        assert proc.returncode == 2 and "FIFO" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
