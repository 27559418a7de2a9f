"""Shared fixtures: small texts and a quick way to run the real command line."""

import contextlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# Two BLAS threads collapse under contention on small machines; the tests pin one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SONNET = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
"""

# Accents (precomposed and combining), CJK and emoji (outside the BMP): every one must survive.
UNICODE = "Café naïve résumé — cafe\u0301 ne\u0301e. 東京は雨です。猫🐈と犬🐕! Ωμέγα ñandú 😀\n"


class HalfWrittenFile:
    """Wraps an open file: its first write stores half the data, flushes, then calls `after`
    (which raises a disk-full error, sends a signal, or hangs to be killed), as a write that is
    cut short does. Used to fault checkpoint writes in-process and in child processes."""

    def __init__(self, f, after):
        self._f, self._after = f, after

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        self._after()

    def __getattr__(self, name):
        return getattr(self._f, name)


def as_under_a_terminal() -> None:
    """preexec_fn for a child that is sent signals: SIGINT and SIGHUP at their defaults, as a
    program started from a terminal has them, whatever this test run inherited (a shell's
    background job ignores SIGINT, nohup ignores SIGHUP, and a child inherits both)."""
    for s in (signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def run_cli(*args, cwd=None, timeout=300, env=None):
    """Run `python -m charrnn ARGS` and return the CompletedProcess (text mode)."""
    full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        capture_output=True, text=True, encoding="utf-8", timeout=timeout, cwd=cwd, env=full_env,
    )


@pytest.fixture
def sonnet_file(tmp_path: Path) -> Path:
    p = tmp_path / "sonnet.txt"
    p.write_text(SONNET * 6, encoding="utf-8")
    return p


@pytest.fixture
def unicode_file(tmp_path: Path) -> Path:
    p = tmp_path / "unicode.txt"
    p.write_text(UNICODE * 40, encoding="utf-8")
    return p


# -- helpers shared by test modules of several folders ------------------------------------------

def tiny_config(text: Path, **changes):
    from charrnn.settings import TrainConfig

    base = dict(text=str(text), hidden_size=24, seq_len=16, batch_size=4, steps=30, eval_every=10,
                sample_every=10, sample_length=40, log_every=5)
    return TrainConfig(**(base | changes))


def parts(state):
    """A model state as a tuple of arrays, whatever the cell."""
    return state if isinstance(state, tuple) else (state,)


def rewrite_metadata(path: Path, change) -> None:
    """Rewrite the JSON metadata of a checkpoint in place, keeping the arrays."""
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["charrnn"])
    change(meta)
    header["__metadata__"]["charrnn"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n :])


def charrnn(*args):
    from charrnn import cli

    """`charrnn ARGS` in this process: (returncode, stdout, stderr) like a finished subprocess."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse's own usage errors
            status = e.code
    return SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def chromium() -> str:
    """Headless Chromium for the browser tests: skipped where it is missing, failed under CI."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if in_ci():
            pytest.fail("headless Chromium is required in CI (the README's test command installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def error_line(proc, cmd: str, status: int = 2) -> str:
    """The single stderr line of a refused command."""
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"charrnn {cmd}: error: "), lines[0]
    return lines[0]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# -- a small real filesystem, for the full-disk tests --------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB filesystem (tmpfs) mounted at tmp_path/disk for the test, unmounted after it.
    Mounting needs root: elsewhere the test is skipped, saying why (the same cases run with the
    full disk injected by monkeypatch, which needs no root)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a small real filesystem is mounted as root only (mount -t tmpfs); these tests run as root")
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"mount -t tmpfs was refused here: {r.stderr.strip() or r.returncode}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)  # still busy: detach it


def fill_disk(d: Path) -> Path:
    """Fill the filesystem of folder `d` to the last byte with one file, which is returned."""
    import errno

    filler = d / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = b"\0" * 4096
        try:
            while True:
                f.write(block)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        try:  # the last partial block
            while f.write(b"\0"):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def listing(d: Path) -> dict[str, bytes | str]:
    """What folder `d` holds: each name with its bytes (a file), its link text or its kind, so that
    a comparison before and after shows anything replaced, added or left behind."""
    import stat as st

    out: dict[str, bytes | str] = {}
    for p in sorted(d.iterdir()):
        mode = os.lstat(p).st_mode
        if st.S_ISLNK(mode):
            out[p.name] = "link to " + os.readlink(p)
        elif st.S_ISREG(mode):
            out[p.name] = p.read_bytes()
        else:
            out[p.name] = f"mode {st.S_IFMT(mode):o}"
    return out


# -- optional test dependencies -------------------------------------------------------------------
# The NumPy tests collect and run without PyTorch, numba, Keras or a browser; a test that needs one
# takes it from `optional` (or the `torch` fixture) and carries the dependency's marker, so that
# `-m "not torch"` leaves it out. CI installs every test dependency: there a missing one fails the
# test instead of skipping it, so a broken install is never passed off as coverage.

def in_ci() -> bool:
    """Whether this is CI, where every test dependency is installed (CI set, and not to a "no")."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def optional(module: str):
    """Import an optional test dependency: the test is skipped where it is missing, failed in CI."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        if in_ci():
            pytest.fail(f"{module} is a test dependency that CI installs, but it does not import: {e}",
                        pytrace=False)
        pytest.skip(f"{module} is not installed", allow_module_level=True)


@pytest.fixture
def torch():
    """PyTorch, for a test that compares against it (the test is marked `torch`)."""
    return optional("torch")


def pytest_collection_modifyitems(config, items):
    # A test that asks for the torch fixture needs torch, whether or not its module says so.
    for item in items:
        if "torch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.torch)


# torch.nn's module of each cell, written out here rather than asked of the code under test; for
# the cells torch.nn has none of, the torch backend's module, which tests/torch_backend/test_scan_cells.py
# holds to the NumPy cells (themselves held to plain PyTorch equations: tests/core/test_mincells.py)
TORCH_TWINS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "mingru": "MinGRU", "minlstm": "MinLSTM"}


def torch_twin_class(cell: str):
    """The torch module class of a built-in cell (nn.GRU's constructor and call), imported on use."""
    import torch

    from charrnn.torch_backend import scan

    name = TORCH_TWINS[cell]
    return getattr(torch.nn, name, None) or getattr(scan, name)
