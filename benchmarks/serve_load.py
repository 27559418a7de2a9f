"""Load on `charrnn serve` over the loopback address: many clients at once, each alternating a
streamed generation and a score for a fixed time, every answer checked against the Python API;
the latencies (p50, p95) of each kind and the server's resident memory before and after.

    python benchmarks/serve_load.py RUN [--clients 50] [--seconds 30] [--length 100] [--json OUT]

It starts `charrnn serve RUN --port 0` itself and stops it at the end. tests/serve/test_serve_load.py
runs `run_load` against a server of its own; BENCHMARKS.md records what this script printed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

PRIME = "Shall I"
SEEDS = 16
TEXTS = ["Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n",
         "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n",
         "But thy eternal summer shall not fade,\nNor lose possession of that fair thou ow'st;\n"]


@dataclass
class Expected:
    """What every answer must be: the Python API's, computed once before the load starts."""

    texts: dict[int, str]  # seed -> generated text
    log_probs: dict[str, list[float]]  # text -> its scores
    length: int


def expected(run: str, length: int) -> Expected:
    import charrnn

    lm = charrnn.load(run)
    return Expected({s: lm.generate(PRIME, length, seed=s) for s in range(SEEDS)},
                    {t: lm.score(t).log_probs.tolist() for t in TEXTS}, length)


@dataclass
class Tally:
    latency: dict[str, list[float]] = field(default_factory=lambda: {"generate (stream)": [], "first piece": [],
                                                                       "score": []})
    errors: list[str] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _stream(conn: http.client.HTTPConnection, seed: int, length: int) -> tuple[str, str, float | None]:
    """(the pieces joined, the done event's text, seconds to the first piece)."""
    start = time.monotonic()
    body = json.dumps({"prime": PRIME, "length": length, "seed": seed, "stream": True})
    conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"generate: {r.status} {r.read()[:200]!r}")
    pieces, done, first, buffer = [], None, None, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = block.decode("utf-8").split("\n")
            name = lines[0][len("event: "):]
            value = json.loads(lines[1][len("data: "):])
            if name == "piece":
                first = first if first is not None else time.monotonic() - start
                pieces.append(value)
            elif name == "done":
                done = value["text"]
            else:
                raise RuntimeError(f"generate: {name} {value}")
    if done is None:
        raise RuntimeError("generate: the stream ended without done")
    return "".join(pieces), done, first


def _client(port: int, k: int, want: Expected, deadline: float, tally: Tally) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    i = 0
    try:
        while time.monotonic() < deadline:
            i += 1
            start = time.monotonic()
            try:
                if i % 2:
                    seed = (k + i) % SEEDS
                    joined, text, first = _stream(conn, seed, want.length)
                    took = time.monotonic() - start
                    if joined != text or text != want.texts[seed]:
                        raise RuntimeError(f"generate seed {seed}: not the Python API's text")
                    with tally.lock:
                        tally.latency["generate (stream)"].append(took)
                        if first is not None:
                            tally.latency["first piece"].append(first)
                else:
                    text = TEXTS[(k + i) % len(TEXTS)]
                    conn.request("POST", "/api/score", json.dumps({"text": text}), {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    took = time.monotonic() - start
                    if r.status == 503:
                        with tally.lock:
                            tally.refused += 1
                        continue
                    got = json.loads(data)
                    expect = want.log_probs[text]
                    if r.status != 200 or len(got["log_probs"]) != len(expect) \
                            or max(abs(a - b) for a, b in zip(got["log_probs"], expect)) > 1e-6:
                        raise RuntimeError(f"score: {r.status}, not the Python API's log-probabilities")
                    with tally.lock:
                        tally.latency["score"].append(took)
            except Exception as e:  # counted, and the client carries on with a fresh connection
                with tally.lock:
                    tally.errors.append(f"client {k}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    finally:
        conn.close()


def resident_mb(pid: int) -> tuple[float, float]:
    """(resident memory now, its peak) of a process, in MB, from /proc."""
    status = open(f"/proc/{pid}/status").read()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    return rss / 1024, peak / 1024


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))] if v else float("nan")


def run_load(port: int, pid: int, want: Expected, clients: int = 50, seconds: float = 30.0) -> dict[str, Any]:
    """`clients` threads against 127.0.0.1:port for `seconds` (after one warm-up request of each
    kind); the figures as a dict."""
    warm = Tally()
    _client(port, 0, want, time.monotonic() + 1.0, warm)  # a second of both kinds: the code's pages are in
    rss_before, _ = resident_mb(pid)
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=_client, args=(port, k, want, deadline, tally)) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    rss_after, peak = resident_mb(pid)
    out = {"clients": clients, "seconds": round(wall, 1), "length": want.length, "errors": tally.errors[:20],
           "error_count": len(tally.errors) + len(warm.errors), "refused": tally.refused,
           "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1), "rss_peak_mb": round(peak, 1),
           "kinds": {}}
    for kind, values in tally.latency.items():
        out["kinds"][kind] = {"count": len(values), "p50_s": round(percentile(values, 50), 3),
                              "p95_s": round(percentile(values, 95), 3)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--json", default=None, help="also write the figures here")
    a = p.parse_args()
    want = expected(a.run, a.length)
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", a.run, "--port", "0"], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", proc.stdout.readline()).group(1))
        figures = run_load(port, proc.pid, want, a.clients, a.seconds)
    finally:
        proc.terminate()
        proc.wait()
    print(json.dumps(figures, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0 if figures["error_count"] == 0 and figures["refused"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
