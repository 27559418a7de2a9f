"""SIGINT, SIGTERM and SIGHUP stop the commands outside training within a second or so, with the
exit status the README states (128 + the signal's number) and one line on stderr.

The long case is work done in worker threads, which the exception a signal raises in the main
thread never reaches: many samples made together (generate_many shares their streams out among
the workers). They stop at their next step because the signal also sets charrnn.stopping's flag.
(Training's own signals, which finish the step and write a checkpoint: tests/train/test_signals.py.)
"""

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import charrnn

from conftest import SONNET, as_under_a_terminal

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
SAID = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped by SIGTERM", signal.SIGHUP: "stopped by SIGHUP"}
# Stopping within a second is the rule; the bound leaves room for a machine busy with other work.
WITHIN = 2.0


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("signals")
    text = root / "s.txt"
    text.write_text(SONNET * 4, encoding="utf-8")
    charrnn.fit(text, out=root / "run", hidden_size=16, steps=2, seq_len=16, batch_size=4, eval_every=0,
                sample_every=0, quiet=True)
    return root / "run"


def signalled(args, signum, ready, env=None) -> tuple[int, str, float]:
    """Run `charrnn ARGS` with stdout on a terminal (so that a sample is shown as it grows), send
    `signum` once ready(output so far) is true, and return (status, stderr, seconds from the
    signal to the command's line saying it stopped: its work was over then, whatever the
    interpreter's own exit takes on a loaded machine)."""
    master, slave = pty.openpty()
    full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], stdout=slave, stderr=subprocess.PIPE,
                            env=full_env, preexec_fn=as_under_a_terminal)
    os.close(slave)
    err_fd = proc.stderr.fileno()
    out, err = b"", b""
    sent = said = None
    try:
        deadline = time.monotonic() + 120
        err_open = True
        while proc.poll() is None or err_open:
            if sent is None and ready(out):
                proc.send_signal(signum)
                sent = time.monotonic()
            if time.monotonic() > (deadline if sent is None else sent + 60):
                break
            for fd in select.select([master, err_fd] if err_open else [master], [], [], 0.01)[0]:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:  # the process closed the terminal: it is ending
                    chunk = b""
                if fd == master:
                    out += chunk
                elif not chunk:  # stderr closed: the process is ending
                    err_open = False
                    proc.wait(timeout=60)
                else:
                    err += chunk
                    said = said or (time.monotonic() if sent is not None else None)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    assert sent is not None, f"the command ended ({proc.returncode}) before it was ready: {err!r}"
    assert said is not None, f"no line after the signal ({proc.returncode}): {err!r}"
    return proc.returncode, err.decode(), said - sent


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_many_samples_stop_within_a_second_of_a_signal(run, signum):
    # 2,000 samples on two worker threads: minutes of work, a few milliseconds a step; the first
    # sample shows as it grows, so its first characters say the workers are generating
    status, err, seconds = signalled(["sample", run, "--num-samples", 2000, "--length", 20000, "--seed", 1],
                                     signum, lambda out: len(out) >= 20, env={"CHARRNN_THREADS": "2"})
    assert (status, err) == (STATUS[signum], f"charrnn sample: {SAID[signum]}\n")
    assert seconds < WITHIN, seconds


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_eval_of_a_long_text_stops_within_a_second_of_a_signal(run, signum, tmp_path):
    text = tmp_path / "long.txt"
    text.write_text(SONNET * 5000, encoding="utf-8")
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def scoring(_out: bytes) -> bool:  # the encoded text is in its temporary folder: scoring is under way
        return any(tmp.glob("charrnn-eval-*/ids.bin"))

    status, err, seconds = signalled(["eval", run, text], signum, scoring, env={"TMPDIR": str(tmp)})
    assert (status, err) == (STATUS[signum], f"charrnn eval: {SAID[signum]}\n")
    assert seconds < WITHIN, seconds
    assert not list(tmp.iterdir())  # its temporary folder went with it


def test_a_signal_inside_a_c_callback_is_not_printed_and_still_stops(monkeypatch):
    """A signal that lands while a C library calls back into Python (numba compiling a kernel)
    cannot raise there: Python would print it as an ignored exception, several lines. The command
    line drops it, and the flag it set stops the work at its next step instead."""
    import ctypes

    from charrnn import cli, stopping

    seen = []
    hook = cli._signal_in_a_callback(lambda u: seen.append(u.exc_type))
    monkeypatch.setattr(sys, "unraisablehook", hook)

    @ctypes.CFUNCTYPE(None)
    def callback():
        cli._raise_stopped(signal.SIGTERM, None)

    try:
        callback()  # the exception cannot leave the callback: it goes to the unraisable hook
        assert seen == [] and stopping.requested()
        with pytest.raises(stopping.Stopped):
            stopping.check()
    finally:
        stopping.clear()

    @ctypes.CFUNCTYPE(None)
    def failing():
        raise ValueError("a real bug")

    failing()
    assert seen == [ValueError]  # anything else is still reported


def test_the_readme_states_every_commands_exit_status_for_every_signal():
    """The README's signal table has a row for every registered command, so that a command added
    later says what its signals do or this fails."""
    import re

    from charrnn.cli import _common

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Signals", 1)[1]
    statuses = " | ".join(str(STATUS[s]) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    rows = set(re.findall(rf"^\| `([\w-]+)` \| {re.escape(statuses)} \|", section, re.M))
    assert set(_common.COMMANDS) <= rows, sorted(set(_common.COMMANDS) - rows)
