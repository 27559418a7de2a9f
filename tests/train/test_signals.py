"""Faults from outside: Ctrl-C, SIGTERM, SIGHUP and SIGKILL sent to a real training process.

SIGINT / SIGTERM / SIGHUP: the step in progress finishes, a checkpoint is written, the exit status
is 130 / 143 / 129, and `--resume` continues bit for bit as if the run had never stopped. SIGKILL, even in
the middle of a checkpoint write, always leaves the last complete checkpoint loadable.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.io.checkpoint import LATEST, METRICS, load_checkpoint
from charrnn.errors import CheckpointError

from conftest import HalfWrittenFile, as_under_a_terminal, run_cli

COMMON = ["--hidden-size", "16", "--seq-len", "16", "--batch-size", "4", "--lr-schedule", "constant",
          "--sample-every", "0", "--log-every", "1", "--quiet"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, preexec_fn=as_under_a_terminal)


def metrics_lines(run: Path) -> int:
    try:
        return (run / METRICS).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.005)


def records(run: Path) -> list[dict]:
    """Metrics without the wall-clock fields, and without the extra report written on a signal."""
    out = []
    for line in (run / METRICS).read_text().splitlines():
        r = json.loads(line)
        if r["train_loss"] is not None:
            out.append({k: v for k, v in r.items() if k not in ("chars_per_s", "elapsed")})
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical parameters, optimizer slots, carried state and data position."""
    ca, cb = load_checkpoint(a / LATEST), load_checkpoint(b / LATEST)
    assert ca.state["step"] == cb.state["step"]
    for k in ca.model.params:
        assert np.array_equal(ca.model.params[k], cb.model.params[k]), k
    assert ca.optimizer_arrays.keys() == cb.optimizer_arrays.keys()
    for k in ca.optimizer_arrays:
        assert np.array_equal(ca.optimizer_arrays[k], cb.optimizer_arrays[k]), k
    assert np.array_equal(ca.hidden, cb.hidden)
    assert ca.state["data"] == cb.state["data"] and ca.optimizer_meta == cb.optimizer_meta


def assert_loadable(path: Path) -> int:
    c = load_checkpoint(path)
    assert all(np.isfinite(p).all() for p in c.model.params.values())
    CharRNN.load(path)
    return c.state["step"]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_writes_a_checkpoint_and_resume_is_exact(tmp_path, sonnet_file, signum, status):
    run, ref = tmp_path / "run", tmp_path / "ref"
    proc = start("-m", "charrnn", "train", sonnet_file, "--out", run, *COMMON, "--steps", "1000000", "--eval-every", "0")
    wait_for(lambda: metrics_lines(run) >= 3, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charrnn train: stopped by {name} at step "), err
    assert f"charrnn train --resume {run}" in lines[0]
    stopped = assert_loadable(run / LATEST)
    assert stopped >= 3
    total = stopped + 7
    proc = run_cli("train", "--resume", run, "--steps", total)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", sonnet_file, "--out", ref, *COMMON, "--steps", total, "--eval-every", "0")
    assert proc.returncode == 0, proc.stderr
    assert_same_run(run, ref)
    assert records(run) == records(ref)


# Run in a child process: a real SIGTERM sent to itself while taking step N (argv[1]).
SELF_SIGNAL = '''
import os, signal, sys
from charrnn.data.text import Batcher

at, calls = int(sys.argv[1]), [0]
real = Batcher.next_batch

def next_batch(self):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(self)

Batcher.next_batch = next_batch
from charrnn.cli import main
sys.exit(main(sys.argv[2:]))
'''


@pytest.mark.parametrize("at", [12, 25])
def test_a_real_signal_with_validation_on_resumes_to_the_uninterrupted_run(tmp_path, sonnet_file, at):
    """Validation every 10 steps with patience: a stop between validations neither validates,
    nor moves the best, nor writes a metrics record there (with log-every 3, step 12 is one that
    writes a record anyway)."""
    run, ref, driver = tmp_path / "run", tmp_path / "ref", tmp_path / "driver.py"
    driver.write_text(SELF_SIGNAL)
    flags = [*COMMON, "--eval-every", "10", "--patience", "2", "--log-every", "3", "--lr", "0.03", "--seed", "7"]
    proc = start(driver, at, "train", sonnet_file, "--out", run, *flags, "--steps", "1000000")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert assert_loadable(run / LATEST) == at
    total = at + 23
    assert run_cli("train", "--resume", run, "--steps", total).returncode == 0
    assert run_cli("train", sonnet_file, "--out", ref, *flags, "--steps", total).returncode == 0
    assert_same_run(run, ref)
    best_a, best_b = load_checkpoint(run / "best.safetensors"), load_checkpoint(ref / "best.safetensors")
    assert best_a.state["step"] == best_b.state["step"] and best_a.state["best_val_loss"] == best_b.state["best_val_loss"]
    timeless = lambda r: [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed")}
                          for line in (r / METRICS).read_text().splitlines()]
    assert timeless(run) == timeless(ref)


# Run in a child process: the third save of latest.safetensors writes half the file, says so,
# and hangs there, so that the test can SIGKILL it in the middle of the write.
TORN_WRITER = '''
import sys, time
from pathlib import Path
import charrnn.io.writer as s

sys.path.insert(0, TESTS_DIR)  # for conftest's HalfWrittenFile
from conftest import HalfWrittenFile

marker, tear_at = Path(sys.argv[1]), int(sys.argv[2])
count = 0

def hang() -> None:
    marker.write_text("writing")
    time.sleep(600)

def torn_open(file, mode="r", *args, **kwargs):
    global count
    f = open(file, mode, *args, **kwargs)
    if "w" in mode and "latest" in str(file):
        count += 1
        if count == tear_at:
            return HalfWrittenFile(f, hang)
    return f

s.open = torn_open
from charrnn.cli import main
sys.exit(main(sys.argv[3:]))
'''


def test_sigkill_in_the_middle_of_a_checkpoint_write(tmp_path, sonnet_file):
    run, ref = tmp_path / "run", tmp_path / "ref"
    driver, marker = tmp_path / "driver.py", tmp_path / "marker"
    driver.write_text(TORN_WRITER.replace("TESTS_DIR", repr(str(Path(__file__).parents[1]))))
    flags = [*COMMON, "--steps", "12", "--eval-every", "2"]
    # saves of latest: set-up (step 0), step 2, step 4, then step 6 is torn
    proc = start(driver, marker, 4, "train", sonnet_file, "--out", run, *flags)
    wait_for(marker.exists, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    torn = [p for p in run.iterdir() if p.name.startswith(f".{LATEST}.tmp")]
    assert len(torn) == 1  # the kill did land inside the write ...
    with pytest.raises(CheckpointError):
        load_checkpoint(torn[0])  # ... of a file that is not a checkpoint
    assert assert_loadable(run / LATEST) == 4  # and the last complete one stands
    assert [r["step"] for r in records(run)][-1] == 6  # step 6 was logged before its save
    proc = run_cli("train", "--resume", run, "--steps", "12")
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # the resume cleared the torn file
    assert run_cli("train", sonnet_file, "--out", ref, *flags).returncode == 0
    assert_same_run(run, ref)
    assert records(run) == records(ref)  # the log lost its steps past the checkpoint, none twice


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path, sonnet_file):
    """A checkpoint every step, killed again and again at random times (set-up included)."""
    run, ref = tmp_path / "run", tmp_path / "ref"
    flags = [*COMMON, "--steps", "100", "--eval-every", "1"]
    rng = random.Random(20240501)
    proc = start("-m", "charrnn", "train", sonnet_file, "--out", run, *flags)
    wait_for(lambda: metrics_lines(run) >= 1, proc)
    last = 0
    for attempt in range(4):
        time.sleep(rng.uniform(0.0, 0.15))
        proc.kill()
        proc.wait(timeout=30)
        step = assert_loadable(run / LATEST)
        assert step >= last
        last = step
        proc = start("-m", "charrnn", "train", "--resume", run, "--steps", "100")
        time.sleep(rng.uniform(0.2, 0.6))  # about the start-up time: some land in the set-up
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert assert_loadable(run / LATEST) == 100
    assert run_cli("train", sonnet_file, "--out", ref, *flags).returncode == 0
    assert_same_run(run, ref)
    assert records(run) == records(ref)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, sonnet_file, monkeypatch, capsys):
    """The first Ctrl-C asks for a checkpoint; a second one during its write abandons it cleanly."""
    from charrnn import cli
    from charrnn.io import writer as serialization

    saves = {"n": 0}

    def interrupt_twice() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs here

    def interrupting_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        if "w" in mode and LATEST in str(file):
            saves["n"] += 1
            if saves["n"] == 3:  # set-up, step 2, then step 4
                return HalfWrittenFile(f, interrupt_twice)
        return f

    monkeypatch.setattr(serialization, "open", interrupting_open, raising=False)
    run = tmp_path / "run"
    # SIGINT as under a terminal, also where this test run was started with it ignored (a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = cli.main(["train", str(sonnet_file), "--out", str(run), *COMMON, "--steps", "10", "--eval-every", "2"])
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert status == 130 and capsys.readouterr().err == "charrnn train: interrupted\n"
    monkeypatch.undo()
    assert assert_loadable(run / LATEST) == 2
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    assert after is signal.default_int_handler  # the handler was put back


def test_sighup_under_nohup_stays_ignored(tmp_path, sonnet_file):
    """A run started with SIGHUP ignored (`nohup`) goes on when its terminal closes."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", sonnet_file, "--out", run, *COMMON,
                             "--steps", "150", "--eval-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for(lambda: metrics_lines(run) >= 3, proc)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert load_checkpoint(run / LATEST).state["step"] == 150


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGKILL, None)])
def test_a_classifier_stopped_by_a_real_signal_resumes_exactly(tmp_path, signum, status):
    """The task trainers are the one loop: SIGTERM writes a checkpoint (neither validated nor
    logged) and exits 143; SIGKILL leaves the last checkpoint and records past it, which the
    resume trims. Either way the resumed run ends as the one that never stopped, validation and
    early stopping on."""
    from charrnn.io.task_checkpoint import load_task_checkpoint

    data = tmp_path / "c.tsv"
    r = random.Random(0)
    words = ["".join(r.choice("abcd") for _ in range(r.randint(1, 12))) for _ in range(200)]
    data.write_text("".join(f"{w}\t{w[0]}\n" for w in words))
    flags = ["--hidden-size", "8", "--batch-size", "4", "--eval-every", "3", "--log-every", "1", "--lr", "0.02",
             "--lr-schedule", "constant",
             "--patience", "1000", "--quiet"]
    run, ref = tmp_path / "run", tmp_path / "ref"
    proc = start("-m", "charrnn", "classify", "train", data, "--out", run, *flags, "--steps", "1000000")
    wait_for(lambda: metrics_lines(run) >= 8, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    if status is not None:
        assert proc.returncode == status and err.startswith("charrnn classify train: stopped by SIGTERM"), err
    stopped = load_task_checkpoint(run / LATEST).state["step"]
    total = stopped + 7
    assert run_cli("classify", "train", "--resume", run, "--steps", total).returncode == 0
    assert run_cli("classify", "train", data, "--out", ref, *flags, "--steps", total).returncode == 0
    a, b = load_task_checkpoint(run / LATEST), load_task_checkpoint(ref / LATEST)
    assert a.state["step"] == b.state["step"] == total
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    for k in a.optimizer_arrays:
        assert np.array_equal(a.optimizer_arrays[k], b.optimizer_arrays[k]), k

    def timeless(d):
        return [{k: v for k, v in json.loads(line).items() if k not in ("examples_per_s", "elapsed")}
                for line in (d / METRICS).read_text().splitlines()]

    assert timeless(run) == timeless(ref)
