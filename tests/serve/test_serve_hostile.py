"""A hostile client: every endpoint (found in the server's registry of endpoints and fields) with
malformed JSON, wrong types, huge bodies and lengths, unknown characters and models; paths that try
to climb out; another origin and another Host; no token where one is needed; a client that
disconnects mid-stream; more clients than the queue holds. Each gets a 4xx (a 503 for the full
queue) with one JSON line naming the problem, nothing crashes, and the next request is served."""

import json
import socket
import time

import pytest

from served import Server, cpu_to_itself, events, post, request, trained_runs  # noqa: F401  (a fixture)

from starlette.testclient import TestClient  # noqa: E402  (after served checked the extra)

from charrnn.serve.app import GET_ENDPOINTS, POST_ENDPOINTS, create_app  # noqa: E402
from charrnn.serve.pool import Pool  # noqa: E402
from charrnn.serve.service import FIELDS, Limits, Service, load_models  # noqa: E402

TOKEN = "a-token-of-twenty-characters"
LIMITS = Limits(max_body=64 * 1024, max_text=500, max_length=300, max_samples=3, max_values=50_000)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def client(runs):
    service = Service(load_models([str(runs["lstm"])]), LIMITS)
    with TestClient(create_app(service, Pool(2, 8)), base_url="http://127.0.0.1", raise_server_exceptions=True) as c:
        yield c


# a valid request of every endpoint: the hostile ones below are each one change away from it
VALID = {
    "generate": {"prime": "Shall", "length": 20, "seed": 1},
    "score": {"text": "Shall I compare thee"},
    "inspect": {"text": "Shall I compare thee"},
    "units": {"text": "Shall I compare thee"},
    "match": {"text": "Shall I compare thee", "start": 2, "end": 5},
    "compare": {"text": "Shall I compare thee"},
    "text": {"chars": 20},
    "gradflow": {},
    "saturation": {"text": "Shall I compare thee"},
    "ngram": {"order": 2, "text": "Shall I compare thee"},
}
TEXT_FIELDS = {"generate": "prime", "score": "text", "inspect": "text", "units": "text", "match": "text",
               "saturation": "text", "ngram": "text"}
WRONG = {"string": [5, True, ["a"], {"a": 1}], "integer": ["5", 1.5, True, [1]], "number": ["0.5", True, [0.5]],
         "boolean": [1, "true", [True]]}


def test_every_endpoint_has_a_valid_request_here():
    assert set(VALID) == set(POST_ENDPOINTS) == set(FIELDS)
    assert set(TEXT_FIELDS) == {e for e, f in FIELDS.items() if "model" in f and ("text" in f or "prime" in f)}


def refused(r, status, *needles):
    assert r.status_code == status, (r.status_code, r.text)
    assert "access-control-allow-origin" not in r.headers
    doc = r.json()
    assert list(doc) == ["error"] and "\n" not in doc["error"] and "Traceback" not in doc["error"]
    for n in needles:
        assert n in doc["error"], doc["error"]
    return doc["error"]


def still_serving(client):
    r = client.post("/api/score", json=VALID["score"])
    assert r.status_code == 200 and len(r.json()["log_probs"]) == len(VALID["score"]["text"]) - 1


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_every_endpoint_answers_its_valid_request(client, endpoint):
    r = client.post(f"/api/{endpoint}", json=VALID[endpoint])
    assert r.status_code == 200, r.text


BAD_BODIES = [
    (b'{"text": ', 400, "not valid JSON"),
    (b'{"text": "a" "b"}', 400, "not valid JSON"),
    (b'{"text": NaN}', 400, "NaN is not a number JSON allows"),
    (b'{"length": Infinity}', 400, "Infinity"),
    (b'{"length": 1e400}', 400, "beyond a float's range"),
    (b'{"text": "a", "text": "b"}', 400, "duplicate key 'text'"),
    (b"[" * 50_000, 400, "nested deeper than"),
    (b'{"text": "\\ud800"}', 400, "lone surrogate U+D800"),
    (b"\xff\xfe{}", 400, "not valid UTF-8"),
    (b"", 400, "not valid JSON"),
    (b"[1, 2]", 422, "must be a JSON object, got list"),
    (b'"text"', 422, "must be a JSON object, got str"),
    (b"null", 422, "must be a JSON object, got NoneType"),
]


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
@pytest.mark.parametrize("body, status, needle", BAD_BODIES)
def test_a_body_that_is_no_json_object_is_refused(client, endpoint, body, status, needle):
    r = client.post(f"/api/{endpoint}", content=body, headers={"content-type": "application/json"})
    refused(r, status, needle)
    still_serving(client)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_only_json_is_taken(client, endpoint):
    body = json.dumps(VALID[endpoint]).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"content-type": ctype} if ctype else {}
        refused(client.post(f"/api/{endpoint}", content=body, headers=headers), 415, "application/json")
    assert client.post(f"/api/{endpoint}", content=body,
                       headers={"content-type": "application/json; charset=utf-8"}).status_code == 200


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_a_huge_body_is_refused_before_it_is_read(client, endpoint):
    big = {**VALID[endpoint], "pad": "x" * (LIMITS.max_body + 1)}
    refused(client.post(f"/api/{endpoint}", json=big), 413, "above this server's limit of 65,536")

    def chunks():  # no Content-Length: counted as it comes
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    refused(client.post(f"/api/{endpoint}", content=chunks(), headers={"content-type": "application/json"}), 413,
            "above this server's limit")
    still_serving(client)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_wrong_types_unknown_and_missing_fields_are_named(client, endpoint):
    for field, (kind, required) in FIELDS[endpoint].items():
        for wrong in WRONG[kind]:
            refused(client.post(f"/api/{endpoint}", json={**VALID[endpoint], field: wrong}), 422, field)
        if required:
            body = {k: v for k, v in VALID[endpoint].items() if k != field}
            refused(client.post(f"/api/{endpoint}", json=body), 422, f"the field {field!r} is required")
    refused(client.post(f"/api/{endpoint}", json={**VALID[endpoint], "temprature": 1}), 422,
            "unknown field 'temprature'")
    still_serving(client)


@pytest.mark.parametrize("endpoint", [e for e in POST_ENDPOINTS if "model" in FIELDS[e]])
def test_an_unknown_model_is_404(client, endpoint):
    for name in ("nope", "../../etc/passwd", "/etc/passwd", "run-lstm/../run-lstm", ""):
        refused(client.post(f"/api/{endpoint}", json={**VALID[endpoint], "model": name}), 404, "unknown model",
                "the served models are run-lstm")
    still_serving(client)


@pytest.mark.parametrize("endpoint", TEXT_FIELDS)
def test_unknown_characters_are_named(client, endpoint):
    field = TEXT_FIELDS[endpoint]
    body = {**VALID[endpoint], field: VALID[endpoint][field] + " ☃\x00\U0001f600"}
    refused(client.post(f"/api/{endpoint}", json=body), 422, "'☃'", "not in the model's vocabulary")
    still_serving(client)


@pytest.mark.parametrize("endpoint", [e for e in POST_ENDPOINTS if "text" in FIELDS[e]])
def test_a_text_above_the_limit_is_refused(client, endpoint):
    refused(client.post(f"/api/{endpoint}", json={**VALID[endpoint], "text": "e" * (LIMITS.max_text + 1)}), 413,
            "above this server's limit of 500")


def test_lengths_and_counts_above_the_limits_are_refused(client):
    g = VALID["generate"]
    refused(client.post("/api/generate", json={**g, "length": 301}), 413, "limit of 300 characters (--max-length)")
    refused(client.post("/api/generate", json={**g, "length": 10**30}), 413, "--max-length")
    refused(client.post("/api/generate", json={**g, "length": -1}), 422, "between 0 and")
    refused(client.post("/api/generate", json={**g, "n": 4}), 413, "limit of 3 samples")
    refused(client.post("/api/generate", json={**g, "n": 0}), 422, "n must be between 1")
    refused(client.post("/api/generate", json={**g, "seed": -1}), 422, "seed")
    refused(client.post("/api/generate", json={**g, "seed": 2**64}), 422, "seed")
    refused(client.post("/api/generate", json={**g, "prime": "e" * 501}), 413, "prime")
    refused(client.post("/api/generate", json={**g, "temperature": 0}), 422, "temperature")
    refused(client.post("/api/generate", json={**g, "top_p": 1.5}), 422, "top_p")
    refused(client.post("/api/generate", json={**g, "stop": ""}), 422, "stop string is empty")
    refused(client.post("/api/inspect", json={"text": "e" * 500}), 413, "--max-values", "ask for one state")
    refused(client.post("/api/inspect", json={"text": "ab", "top_k": 0}), 422, "top_k")
    refused(client.post("/api/inspect", json={"text": "ab", "layer": 1}), 422, "layer must be in [0, 0]")
    refused(client.post("/api/inspect", json={"text": "ab", "state": "q"}), 422,
            "state must be one of h, c, i, f, g, o")
    refused(client.post("/api/inspect", json={"text": "a"}), 422, "nothing to score")
    refused(client.post("/api/match", json={"text": "Shall", "start": 3, "end": 9}), 422, "0 <= start < end <= 5")
    refused(client.post("/api/ngram", json={"order": 11}), 422, "order must be between 1 and")
    refused(client.post("/api/text", json={"chars": 0}), 422, "chars must be between 1")
    # a stream refused before its first piece is an ordinary JSON error
    refused(client.post("/api/generate", json={**g, "prime": "☃", "stream": True}), 422, "'☃'")
    refused(client.post("/api/generate", json={**g, "length": 301, "stream": True}), 413, "--max-length")
    still_serving(client)


def test_methods_and_unknown_paths(client):
    for name in GET_ENDPOINTS:
        refused(client.post(f"/api/{name}", json={}), 405, "GET")
        refused(client.delete(f"/api/{name}"), 405)
    for name in POST_ENDPOINTS:
        refused(client.get(f"/api/{name}"), 405)
        refused(client.put(f"/api/{name}", json=VALID[name]), 405)
    refused(client.post("/", json={}), 405)
    refused(client.options("/api/generate", headers={"access-control-request-method": "POST"}), 405)
    for path in ("/api", "/api/", "/api/nope", "/index.html", "/api/models/x", "/favicon.ico"):
        refused(client.get(path), 404, "no such page or endpoint")
    still_serving(client)


def test_no_cors_and_no_other_origin(client):
    r = client.get("/api/models", headers={"origin": "http://127.0.0.1"})
    assert r.status_code == 200 and not any(k.startswith("access-control") for k in r.headers)
    for origin in ("https://evil.example", "http://127.0.0.1:9", "null"):
        refused(client.post("/api/score", json=VALID["score"], headers={"origin": origin}), 403, "another origin")
        refused(client.get("/api/models", headers={"origin": origin}), 403)


def test_the_host_header_must_name_this_server(client):
    for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "", "127.0.0.1.nip.example"):
        refused(client.get("/api/models", headers={"host": host}), 421, "Host header")
        refused(client.get("/", headers={"host": host}), 421)
    for host in ("localhost:8000", "127.0.0.1", "[::1]:80", "10.1.2.3:8000"):
        assert client.get("/api/models", headers={"host": host}).status_code == 200, host


def test_allowed_host_names(runs):
    service = Service(load_models([str(runs["lstm"])]), LIMITS)
    app = create_app(service, Pool(1, 2), host="box.example", allowed_hosts=("Explorer.Example",))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for host in ("box.example:8000", "explorer.example", "localhost"):
            assert c.get("/api/models", headers={"host": host}).status_code == 200
        refused(c.get("/api/models", headers={"host": "other.example"}), 421)


def test_the_token_guards_every_api_request(runs):
    service = Service(load_models([str(runs["lstm"])]), LIMITS)
    with TestClient(create_app(service, Pool(1, 4), token=TOKEN), base_url="http://127.0.0.1") as c:
        good = {"authorization": f"Bearer {TOKEN}"}
        for bad in ({}, {"authorization": TOKEN}, {"authorization": f"Bearer {TOKEN[:-1]}"},
                    {"authorization": f"Bearer {TOKEN}x"}, {"authorization": f"bearer {TOKEN}"},
                    {"authorization": ("Bearer \u00e9" + TOKEN).encode("latin-1")}):
            for name in GET_ENDPOINTS:
                r = c.get(f"/api/{name}", headers=bad)
                refused(r, 401, "token")
                assert r.headers["www-authenticate"] == "Bearer"
            for name in POST_ENDPOINTS:
                refused(c.post(f"/api/{name}", json=VALID[name], headers=bad), 401, "token")
            refused(c.get("/api/nope", headers=bad), 401)
        for name in POST_ENDPOINTS:
            assert c.post(f"/api/{name}", json=VALID[name], headers=good).status_code == 200
        assert c.get("/", headers={}).status_code == 200  # the page holds nothing but its own code


# -- a real server on the loopback address --------------------------------------------------------

def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Bytes sent as they are (no client's normalising of the path), the whole answer read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.fixture(scope="module")
def server(runs):
    with Server(runs["lstm"], "--workers", 1, "--queue", 1, "--max-length", 1_000_000) as s:
        yield s


def health(port: int) -> dict:
    status, _, data = request(port, "GET", "/api/health")
    assert status == 200
    return json.loads(data)


def test_paths_that_climb_out_find_nothing(server):
    for path in ("/../../../../etc/passwd", "/api/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                 "/api/models/../../../etc/passwd", "//etc/passwd", "/api/..%2f..%2fetc%2fpasswd",
                 "/api/generate/../../../etc/passwd", "/..\\..\\etc\\passwd", "/api/%00", "/" + "a" * 5000):
        answer = raw(server.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, (path, answer[:200])
        assert b"root:" not in answer
    # a broken request line or header is refused by the server itself, and it goes on serving
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", b"GET /\r\n\r\n"):
        answer = raw(server.port, junk)
        assert answer == b"" or 400 <= int(answer.split(b" ", 2)[1]) < 500
    assert health(server.port)["running"] == 0


def open_stream(port: int, length: int = 1_000_000) -> socket.socket:
    """A streamed generation that runs for a long while, its first piece read."""
    body = json.dumps({"prime": "Shall", "length": length, "seed": 1, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return s


def wait_until(check, seconds: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_client_that_disconnects_mid_stream_has_its_generation_cancelled_within_a_second(server, cpu_to_itself):
    s = open_stream(server.port)
    got = b""
    while b"event: piece" not in got:
        got += s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200") and health(server.port)["running"] == 1
    s.close()
    took = wait_until(lambda: health(server.port)["running"] == 0, 1.0)
    assert took < 1.0
    assert post(server.port, "score", VALID["score"])[0] == 200


def test_a_full_queue_is_503_with_retry_after_never_a_hang(server):
    running = open_stream(server.port)  # the one worker
    wait_until(lambda: health(server.port)["running"] == 1, 10)
    queued = open_stream(server.port)  # the one place in the queue
    wait_until(lambda: health(server.port)["queued"] == 1, 10)
    try:
        for endpoint in ("score", "generate"):
            status, headers, data = request(server.port, "POST", f"/api/{endpoint}", VALID[endpoint], timeout=10)
            assert status == 503 and headers["retry-after"] == "1", data
            assert "queue of 1 is full" in json.loads(data)["error"]
        status, _, data = request(server.port, "POST", "/api/generate", {**VALID["generate"], "stream": True})
        assert status == 503
        assert health(server.port)["running"] == 1  # the page and health still answer
    finally:
        queued.close()
        running.close()
    wait_until(lambda: health(server.port) == {**health(server.port), "running": 0, "queued": 0}, 5)
    status, answer = post(server.port, "generate", VALID["generate"])
    assert status == 200 and answer["seed"] == 1


def test_a_slow_client_stalls_nobody(runs):
    """A client that sends half its body and waits holds no worker: the one worker serves the
    others meanwhile. One that reads nothing of its stream holds it only while the text is made:
    the worker is free again before the client reads, and the whole stream is there when it does."""
    with Server(runs["lstm"], "--workers", 1, "--queue", 2, "--max-length", 1_000_000) as s:
        half = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        half.sendall(b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"text\": ")
        blocker = unread = None
        try:
            for _ in range(5):
                assert post(s.port, "score", VALID["score"], timeout=30)[0] == 200
            # the unread stream waits in the queue behind a long one, so that its whole life is seen
            blocker = open_stream(s.port)
            wait_until(lambda: health(s.port)["running"] == 1, 30)
            unread = open_stream(s.port, length=5000)
            wait_until(lambda: health(s.port)["queued"] == 1, 30)
            blocker.close()
            # made, though nothing of it has been read
            wait_until(lambda: health(s.port) == {**health(s.port), "running": 0, "queued": 0}, 60)
            assert post(s.port, "generate", VALID["generate"], timeout=30)[0] == 200
            answer = b""
            while not answer.endswith(b"\r\n0\r\n\r\n"):
                chunk = unread.recv(65536)
                assert chunk, answer[-200:]
                answer += chunk
        finally:
            for sock in (half, blocker, unread):
                if sock is not None:
                    sock.close()
    got = events(dechunk(answer.split(b"\r\n\r\n", 1)[1]))
    assert got[-1][0] == "done" and len(got[-1][1]["text"]) == len("Shall") + 5000
    assert "".join(v for n, v in got if n == "piece") == got[-1][1]["text"]


def dechunk(body: bytes) -> bytes:
    """A chunked HTTP/1.1 body's bytes."""
    out = b""
    while True:
        size, rest = body.split(b"\r\n", 1)
        n = int(size, 16)
        if n == 0:
            return out
        out, body = out + rest[:n], rest[n + 2 :]


def test_a_stream_read_to_its_end(server):
    status, headers, data = request(server.port, "POST", "/api/generate", {**VALID["generate"], "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    got = events(data)
    assert got[-1][0] == "done" and "".join(v for n, v in got if n == "piece") == got[-1][1]["text"]


def test_a_non_loopback_bind_needs_the_token_on_every_request(runs):
    with Server(runs["lstm"], "--host", "0.0.0.0", "--token", TOKEN) as s:
        assert s.netloc.startswith("0.0.0.0:")
        for name in GET_ENDPOINTS:
            assert request(s.port, "GET", f"/api/{name}")[0] == 401
        for name in POST_ENDPOINTS:
            status, body = post(s.port, name, VALID[name])
            assert status == 401 and "token" in body["error"]
            status, _ = post(s.port, name, VALID[name], headers={"Authorization": "Bearer wrong-token-of-some-length"})
            assert status == 401
        assert post(s.port, "score", VALID["score"], headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert request(s.port, "GET", "/")[0] == 200
