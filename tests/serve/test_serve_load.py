"""Load on the loopback address: 50 clients at once for about 30 seconds, each alternating a
streamed generation and a score, every answer equal to the Python API's, none refused (the queue
holds them all), the server's resident memory growing by less than 200 MB. The latencies are
printed; BENCHMARKS.md records them with the command that measured them."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from served import Server, load_alone, trained_runs  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_runs(tmp_path_factory)


@pytest.mark.slow  # 30 seconds, and still run by the README's test command (which deselects nothing)
def test_fifty_clients_for_thirty_seconds(runs, capsys, load_alone):
    script = load_script()
    want = script.expected(str(runs["lstm"]), 100)
    with Server(runs["lstm"]) as server:
        figures = script.run_load(server.port, server.proc.pid, want, clients=50, seconds=30)
    with capsys.disabled():
        print("\nserve load:", json.dumps(figures))
    assert figures["error_count"] == 0, figures["errors"]
    assert figures["refused"] == 0
    kinds = figures["kinds"]
    assert kinds["generate (stream)"]["count"] >= 50 and kinds["score"]["count"] >= 50
    assert figures["rss_after_mb"] - figures["rss_before_mb"] < 200
