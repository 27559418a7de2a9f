"""What the serve tests share: tiny trained runs, a real `charrnn serve` process on the loopback
address, and small HTTP helpers (the standard library's http.client, so the client is not the
server's own stack)."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import SONNET, as_under_a_terminal, optional, run_cli

optional("starlette")  # the serve extra, part of `test`: skipped where missing, failed under CI
optional("uvicorn")

TEXT = SONNET * 8
CELLS = ("lstm", "rnn")


def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """A small LSTM and tanh RNN trained on the sonnet, once per test process."""
    base = tmp_path_factory.getbasetemp() / "serve-runs"
    done = base / "done"
    runs = {cell: base / f"run-{cell}" for cell in CELLS}
    if done.exists():
        return runs
    base.mkdir(exist_ok=True)
    text = base / "sonnet.txt"
    text.write_text(TEXT, encoding="utf-8")
    for cell, run in runs.items():
        r = run_cli("train", text, "--out", run, "--cell", cell, "--hidden-size", 24, "--seq-len", 32,
                    "--batch-size", 8, "--steps", 120, "--eval-every", 40, "--quiet", "--seed", 1, "--force")
        assert r.returncode == 0, r.stderr
    done.write_text("")
    return runs


class Server:
    """`charrnn serve ARGS --port 0` in a process of its own; `url` once it listens."""

    def __init__(self, *args: Any, env: dict[str, str] | None = None) -> None:
        full = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
        full.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", *map(str, args), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full,
                                     preexec_fn=as_under_a_terminal)
        line = self.proc.stdout.readline()
        self.banner = line.strip()
        found = re.search(r"at http://([^/]+)/", line)
        if not found:
            self.proc.kill()
            raise RuntimeError(f"charrnn serve did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.netloc = found.group(1)
        self.port = int(self.netloc.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str, float]:
        """Send sig and wait: (exit status, stderr, seconds it took to exit)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err, time.monotonic() - start

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.stop()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def request(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            raw: bytes | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:port: (status, headers (lower case), body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def post(port: int, endpoint: str, body: Any, **kw: Any) -> tuple[int, Any]:
    status, _, data = request(port, "POST", f"/api/{endpoint}", body, **kw)
    return status, json.loads(data)


def events(data: bytes) -> list[tuple[str, Any]]:
    """The server-sent events of a stream: (name, JSON value) in order."""
    out = []
    for block in data.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name = next(line[7:] for line in block.split("\n") if line.startswith("event: "))
        value = "".join(line[6:] for line in block.split("\n") if line.startswith("data: "))
        out.append((name, json.loads(value)))
    return out


@pytest.fixture
def cpu_to_itself(tmp_path_factory):
    """Hold the machine's CPU against the load test while a test measures how soon something
    happens: under pytest-xdist the load test (which keeps every core busy for 30 seconds) takes
    this lock exclusively (`load_alone`), these tests share it, so the two never overlap."""
    with _cpu_lock(tmp_path_factory, fcntl.LOCK_SH):
        yield


@pytest.fixture
def load_alone(tmp_path_factory):
    with _cpu_lock(tmp_path_factory, fcntl.LOCK_EX):
        yield


@contextmanager
def _cpu_lock(tmp_path_factory, kind: int) -> Iterator[None]:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process runs one test at a time
        yield
        return
    # the base folder of this run's workers (popen-gw0, popen-gw1, ...), one per run of pytest
    path = tmp_path_factory.getbasetemp().parent / "serve-cpu.lock"
    with open(path, "a") as f:
        fcntl.flock(f, kind)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def stop_quietly(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
