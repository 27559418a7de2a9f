"""`charrnn serve` as a command: its refusals in one line, Ctrl-C and SIGTERM stopping it within two
seconds with streams open, and the README's curl example run against it."""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import error_line, in_ci, run_cli
from served import Server, cpu_to_itself, events, request, trained_runs  # noqa: F401  (a fixture)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_runs(tmp_path_factory)


def refused(*args, env=None) -> str:
    r = run_cli("serve", *args, env=env, timeout=60)
    return error_line(r, "serve")


def test_a_non_loopback_host_without_a_token_is_refused(runs):
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        assert "give a token (--token T or CHARRNN_SERVE_TOKEN)" in refused(runs["lstm"], "--host", host)


def test_a_short_or_unprintable_token_is_refused(runs):
    for token in ("short", "x" * 15, "a token with spaces!", "t\u00e9" * 9):
        assert "at least 16 printable ASCII characters" in refused(runs["lstm"], "--token", token)
    assert "at least 16" in refused(runs["lstm"], env={"CHARRNN_SERVE_TOKEN": "short"})


def test_what_cannot_be_served_is_refused_before_listening(runs, tmp_path):
    assert "no such run directory or checkpoint file" in refused(tmp_path / "nope")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    assert "junk.safetensors" in refused(runs["lstm"], tmp_path / "junk.safetensors")
    assert "argument --port: must be a port number" in refused(runs["lstm"], "--port", "70000")
    assert "argument --max-length: must be >= 1" in refused(runs["lstm"], "--max-length", "0")


def test_a_port_in_use_is_one_line(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        line = refused(runs["lstm"], "--port", port)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line


def test_without_the_extra_it_names_it(runs, tmp_path):
    fake = tmp_path / "fake"
    (fake / "starlette").mkdir(parents=True)
    (fake / "starlette" / "__init__.py").write_text(
        "raise ImportError('No module named starlette', name='starlette')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake), str(README.parent), os.environ.get("PYTHONPATH", "")])}
    line = refused(runs["lstm"], env=env)
    assert "pip install 'charrnn[serve]'" in line and "starlette" in line


def start_stream(port: int, started: bool = True) -> socket.socket:
    """A long streamed generation; when `started`, its first piece has come."""
    body = json.dumps({"prime": "Shall", "length": 1_000_000, "seed": 1, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while started and b"event: piece" not in got:
        got += s.recv(65536)
    return s


def read_to_end(s: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


@pytest.mark.parametrize("sig, status, said", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "stopped by SIGTERM"),
                                               (signal.SIGHUP, 129, "stopped by SIGHUP")])
def test_a_signal_stops_the_server_within_two_seconds_with_streams_open(runs, sig, status, said, cpu_to_itself):
    server = Server(runs["lstm"], "--max-length", 1_000_000, "--workers", 2)
    try:
        streams = [start_stream(server.port) for _ in range(2)]
        waiting = start_stream(server.port, started=False)  # queued behind the two
        while json.loads(request(server.port, "GET", "/api/health")[2])["queued"] != 1:
            pass
        # the clients read their streams as they come, as a browser does: a stream nobody reads
        # fills its socket and waits there (tested apart), which is not what this test times
        with concurrent.futures.ThreadPoolExecutor(len(streams)) as readers:
            tails = [readers.submit(read_to_end, s) for s in streams]
            code, err, took = server.stop(sig)
            tails = [t.result(timeout=30) for t in tails]
        assert took < 2.0, took
        assert code == status and err.strip().splitlines()[-1] == f"charrnn serve: {said}", err
        for s, tail in zip(streams, tails):
            tail = tail.decode("utf-8", "replace")
            s.close()
            # the last chunk is the error event, and the chunked body is ended properly; only a
            # stop slower than uvicorn's one-second grace (a machine loaded by other processes)
            # may close a stream without it: never is one left open
            if took < 1.0 or tail.endswith("0\r\n\r\n"):
                assert tail.endswith('event: error\ndata: {"error":"the server is stopping"}\n\n\r\n0\r\n\r\n'), \
                    (took, tail[-300:])
        answer = read_to_end(waiting).decode()
        waiting.close()
        assert answer.startswith("HTTP/1.1 503") and answer.endswith('{"error":"the server is stopping"}'), answer
    finally:
        server.__exit__()


def test_it_serves_several_runs_and_says_where(runs):
    with Server(runs["lstm"], runs["rnn"], runs["lstm"]) as s:
        assert s.banner.startswith("charrnn serve: 3 model(s) (run-lstm, run-rnn, run-lstm-2) at http://127.0.0.1:")
        status, _, data = request(s.port, "GET", "/api/models")
        assert status == 200 and [m["name"] for m in json.loads(data)] == ["run-lstm", "run-rnn", "run-lstm-2"]


def readme_curl() -> list[tuple[str, str]]:
    """The curl commands of the README's section on serve, in order, each with the answer shown
    under it."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Serve: the explorer and the API") :]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    out: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return [(command, "\n".join(shown)) for command, shown in out if command.startswith("curl ")]


def keys(doc) -> set[str]:
    """Every key of every object in a JSON document."""
    if isinstance(doc, dict):
        return set(doc).union(*(keys(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(keys(v) for v in doc))
    return set()


def test_the_readmes_curl_examples_give_what_it_shows(runs):
    """Each curl command of the README, run against a server of the suite's model: it succeeds,
    its answer has every field the README shows (a stream the events it shows), a seeded
    generation says its seed and begins with its prime, and the stream is the same text."""
    curl = shutil.which("curl")
    if curl is None:
        if in_ci():
            pytest.fail("curl is required in CI (.ci/install-chromium installs it)")
        pytest.skip("curl is not installed")
    examples = readme_curl()
    assert len(examples) >= 3 and all(shown for _, shown in examples)
    texts = {}
    with Server(runs["lstm"]) as s:
        for command, shown in examples:
            argv = [curl if a == "curl" else a.replace("localhost:8000", f"localhost:{s.port}")
                    for a in shlex_split(command)]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (command, r.stderr)
            answer = r.stdout.strip()
            request = json.loads(argv[-1]) if argv[-2] == "-d" else {}
            if request.get("stream"):
                got = events(answer.encode())
                names = [n for n, _ in got]
                assert names[-1] == "done" and set(names[:-1]) == {"piece"}
                assert re.findall(r"^event: (\w+)$", shown, re.M) == ["piece", "done"]
                doc = got[-1][1]
                assert "".join(v for n, v in got if n == "piece") == doc["text"]
            else:
                doc = json.loads(answer)
            assert "error" not in keys(doc), doc
            assert set(re.findall(r'"(\w+)":', shown)) <= keys(doc), (command, doc)
            if "seed" in request:
                assert doc["seed"] == request["seed"] and doc["text"].startswith(request["prime"])
                texts.setdefault(json.dumps({k: v for k, v in request.items() if k != "stream"}), set()).add(doc["text"])
    assert texts and all(len(t) == 1 for t in texts.values())  # streamed or not, one seed gives one text


def shlex_split(command: str) -> list[str]:
    import shlex

    return shlex.split(command)
