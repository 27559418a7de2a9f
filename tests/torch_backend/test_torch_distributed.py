"""Data-parallel training under torchrun, two gloo processes on loopback: the same parameters as
one process with all the streams, resume with another number of processes, and the faults (a
process killed, Ctrl-C to torchrun, a batch that does not split)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn.io.checkpoint import BEST, LATEST, METRICS, load_checkpoint
from charrnn.settings import TrainConfig
from charrnn.train import Trainer

from conftest import as_under_a_terminal

pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torchrun on loopback, /proc")]

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
RUN = ["--hidden-size", "12", "--num-layers", "2", "--cell", "lstm", "--batch-size", "4", "--seq-len", "8",
       "--backend", "torch", "--dtype", "float64", "--lr-schedule", "constant", "--log-every", "1",
       "--sample-every", "0", "--quiet"]


def torchrun(n: int, *args, wait: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
           "-m", "charrnn", *map(str, args)]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=as_under_a_terminal)


def one_process(text: Path, run: Path, steps: int, resume: bool = False) -> None:
    cfg = TrainConfig(text=str(text), hidden_size=12, num_layers=2, cell="lstm", batch_size=4, seq_len=8,
                      backend="torch", dtype="float64", lr_schedule="constant", log_every=1, sample_every=0,
                      eval_every=4, steps=steps)
    Trainer(cfg if not resume else TrainConfig(steps=steps), run, resume=resume, quiet=True).run()


def losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / METRICS).read_text().splitlines()]


def val_losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    return [r["val_nats_per_char"] for r in records if r["val_nats_per_char"] is not None]


def assert_same_parameters(a: Path, b: Path, tol: float = 1e-6) -> None:
    ca, cb = load_checkpoint(a / LATEST), load_checkpoint(b / LATEST)
    assert ca.state["step"] == cb.state["step"]
    for k, p in ca.model.params.items():
        q = cb.model.params[k]
        assert np.abs(p - q).max() <= tol * np.abs(q).max(), k
    for x, y in zip(ca.hidden, cb.hidden):  # the carried state of all B streams, gathered
        assert np.abs(x - y).max() <= tol * max(np.abs(y).max(), 1e-30)


def wait_for_steps(run: Path, proc: subprocess.Popen, lines: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (run / METRICS).read_bytes().count(b"\n") >= lines and (run / LATEST).exists():
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"torchrun ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def worker(parent: int, rank: int) -> int:
    """The pid of torchrun's worker of this rank (its child whose environment says RANK=rank)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank}")


def test_two_processes_end_where_one_does_and_resume_with_another_count(tmp_path, sonnet_file):
    two, one = tmp_path / "two", tmp_path / "one"
    got = torchrun(2, "train", sonnet_file, "--out", two, "--steps", "8", "--eval-every", "4", *RUN)
    assert got.returncode == 0, got.stderr
    one_process(sonnet_file, one, 8)
    assert np.allclose(losses(two), losses(one), rtol=1e-9, atol=0)
    assert_same_parameters(two, one)
    # a run of 2 processes continues in 1 (4 streams divide by both), and stays the same run
    one_process(sonnet_file, two, 12, resume=True)
    one_process(sonnet_file, one, 12, resume=True)
    assert_same_parameters(two, one)
    # 3 processes cannot share 4 streams: refused by name, and the run is untouched
    got = torchrun(3, "train", "--resume", two, "--steps", "16")
    assert got.returncode != 0
    assert "does not split evenly among 3 processes" in got.stderr, got.stderr
    assert got.stderr.count("charrnn train: error:") == 1  # said once, by rank 0
    assert load_checkpoint(two / LATEST).state["step"] == 12
    # each process scored its share of every validation, and the shares add up to one process's
    assert np.allclose(val_losses(two), val_losses(one), rtol=1e-9, atol=0) and len(val_losses(one)) == 3
    # the best checkpoint continued in a new directory, by two processes and by one: the same run
    best_step = load_checkpoint(two / BEST).state["step"]
    got = torchrun(2, "train", "--resume", two / BEST, "--out", tmp_path / "fork2", "--steps", "16")
    assert got.returncode == 0, got.stderr
    Trainer(TrainConfig(steps=16), one / BEST, resume=True, out=tmp_path / "fork1", quiet=True).run()
    assert_same_parameters(tmp_path / "fork2", tmp_path / "fork1")
    assert load_checkpoint(two / LATEST).state["step"] == 12  # the source run is only read
    assert json.loads((tmp_path / "fork2" / METRICS).read_text().splitlines()[0])["step"] == 1
    assert best_step in {json.loads(line)["step"] for line in (tmp_path / "fork2" / METRICS).read_text().splitlines()}


def test_ctrl_c_to_torchrun_leaves_a_resumable_checkpoint(tmp_path, sonnet_file):
    run = tmp_path / "run"
    proc = torchrun(2, "train", sonnet_file, "--out", run, "--steps", "100000", "--eval-every", "1000", *RUN,
                    wait=False)
    wait_for_steps(run, proc, 5)
    proc.send_signal(signal.SIGINT)  # torchrun passes it on to every process
    _, err = proc.communicate(timeout=120)
    assert "stopped by SIGINT" in err and err.count("stopped by SIGINT") == 1, err
    c = load_checkpoint(run / LATEST)
    step = c.state["step"]
    assert step >= 5 and json.loads((run / METRICS).read_text().splitlines()[-1])["step"] == step
    one_process(sonnet_file, run, step + 2, resume=True)
    assert load_checkpoint(run / LATEST).state["step"] == step + 2


def test_a_killed_process_stops_the_others_and_the_checkpoint_stands(tmp_path, sonnet_file):
    run = tmp_path / "run"
    proc = torchrun(2, "train", sonnet_file, "--out", run, "--steps", "100000", "--eval-every", "3", *RUN,
                    wait=False)
    wait_for_steps(run, proc, 7)
    os.kill(worker(proc.pid, 1), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    # the survivor stops on its own when its collective fails, or, when torchrun's agent notices
    # the death first (a loaded machine), on the SIGTERM the agent sends it: either way in one line
    assert "another process of this run stopped" in err or "charrnn train: stopped by SIGTERM" in err, err
    step = load_checkpoint(run / LATEST).state["step"]  # loadable
    assert step >= 3 and step % 3 == 0
    one_process(sonnet_file, run, step + 1, resume=True)
