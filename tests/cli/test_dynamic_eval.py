"""`charrnn eval --dynamic`: its options refused in one line when out of range or out of place,
output that can never be taken for a static score, and a run left as it was."""

import json
import os
import subprocess
import sys

import pytest

from conftest import SONNET, charrnn, error_line, snapshot

TINY = ["--hidden-size", "8", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "2", "--quiet"]
FIXED = ["--dynamic-lr", "0.01", "--dynamic-decay", "0.01", "--dynamic-segment", "20"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("dyneval")
    (base / "text.txt").write_text(SONNET * 4)
    assert charrnn("train", base / "text.txt", "--out", base / "run", *TINY).returncode == 0
    return base


@pytest.mark.parametrize("option", ["--dynamic-lr", "--dynamic-decay", "--dynamic-segment"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc", "1e30", "99999999999"])
def test_every_option_refuses_bad_values_in_one_line(run, option, value):
    if option == "--dynamic-decay" and value == "0":  # no pull back toward the trained weights
        proc = charrnn("eval", run / "run", run / "text.txt", "--dynamic", option, value, "--quiet")
        assert proc.returncode == 0, proc.stderr
        return
    line = error_line(charrnn("eval", run / "run", run / "text.txt", "--dynamic", option, value), "eval")
    assert f"argument {option}: must be" in line


@pytest.mark.parametrize("flags, expect", [
    (["--dynamic-lr", "0.01"], "--dynamic-lr needs --dynamic"),
    (["--dynamic-segment", "9"], "--dynamic-segment needs --dynamic"),
    (["--dynamic", "--streams", "2"], "--streams 2 cannot go with it"),
    (["--dynamic", "--backend", "torch"], "--dynamic runs on the numpy backend only"),
])
def test_options_out_of_place_are_refused_in_one_line(run, flags, expect):
    assert expect in error_line(charrnn("eval", run / "run", run / "text.txt", *flags), "eval")


def test_a_text_too_short_to_halve_is_one_line(run):
    (run / "short.txt").write_text(SONNET[:60])
    line = error_line(charrnn("eval", run / "run", run / "short.txt", "--dynamic"), "eval")
    assert "short.txt: 60 characters are too few for dynamic evaluation" in line


def test_the_output_says_dynamic_beside_the_static_score_and_the_run_is_unchanged(run):
    before = snapshot(run / "run")
    proc = charrnn("eval", run / "run", run / "text.txt", "--dynamic", *FIXED, "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["dynamic"] is True and (got["lr"], got["decay"], got["segment"], got["tuned"]) == (0.01, 0.01, 20, [])
    assert got["chars"] + got["tuning_chars"] == len(SONNET * 4) - 1
    assert got["static_nats_per_char"] > 0 and got["nats_per_char"] != got["static_nats_per_char"]
    text = charrnn("eval", run / "run", run / "text.txt", "--dynamic", *FIXED, "--quiet")
    assert text.returncode == 0, text.stderr
    line = text.stdout.strip()
    assert line.startswith(f"dynamic: {got['nats_per_char']:.4f} nats/char") and "\n" not in line
    assert f"(static {got['static_nats_per_char']:.4f} nats/char)" in line
    assert line.endswith("lr 0.01, decay 0.01, segment 20 (all given)")
    text = charrnn("eval", run / "run", run / "text.txt", "--dynamic", "--dynamic-lr", "0.01", "--quiet")
    assert text.stdout.startswith("dynamic: ") and "(decay, segment tuned on the first 1,241 characters)" in text.stdout
    static = charrnn("eval", run / "run", run / "text.txt", "--json", "--quiet")
    assert json.loads(static.stdout)["dynamic"] is False
    assert snapshot(run / "run") == before  # eval writes nothing, and the weights on disk stay


def test_a_closed_pipe_ends_quietly(run):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first character
    try:
        proc = subprocess.run([sys.executable, "-m", "charrnn", "eval", str(run / "run"), str(run / "text.txt"),
                               "--dynamic", *FIXED, "--quiet"], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""
