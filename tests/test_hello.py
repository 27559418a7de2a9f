"""`charrnn hello` and `charrnn gradcheck` through the real command line."""

import subprocess
import sys

import pytest

from charrnn.cli import main
from charrnn.hello import HelloConfig, run_hello


def test_hello_command_learns_hello_and_prints_the_lesson():
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "hello"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "char_to_idx: {'e': 0, 'h': 1, 'l': 2, 'o': 3}" in out
    assert "'h': [0 1 0 0]" in out
    assert out.count("  h = [") == 5  # the hidden state at every step
    losses = [float(line.split("loss")[1]) for line in out.splitlines() if line.strip().startswith("step")]
    assert losses[0] > 1.0 and losses[-1] < 0.01 and losses == sorted(losses, reverse=True)
    assert out.rstrip().splitlines()[-1].split() == ["generated:", "hello", "(learned)"]


@pytest.mark.parametrize("word", ["banana", "mississippi", "xy"])
def test_hello_other_words(word, capsys):
    assert main(["hello", "--text", word]) == 0
    assert f"generated: {word}" in capsys.readouterr().out


def test_hello_quiet_api_returns_the_text():
    lines = []
    assert run_hello(HelloConfig(), out=lines.append) == "hello"
    assert any("loss" in line for line in lines)


def test_too_few_steps_is_reported_honestly(capsys):
    assert main(["hello", "--steps", "1", "--lr", "0.001"]) == 1
    assert "not learned" in capsys.readouterr().out


@pytest.mark.parametrize("word", ["a", "aaaa"])
def test_hello_rejects_unlearnable_words(word, capsys):
    assert main(["hello", "--text", word]) == 2
    err = capsys.readouterr().err
    assert err.startswith("charrnn hello: error:") and err.count("\n") == 1


def test_gradcheck_command_passes_and_names_every_array(capsys):
    assert main(["gradcheck", "--num-layers", "3", "--seq-len", "1", "--batch-size", "1"]) == 0
    out = capsys.readouterr().out
    for name in ["rnn.weight_ih_l2", "rnn.bias_hh_l0", "head.weight", "h0"]:
        assert name in out
    assert "PASS" in out and "FAIL" not in out
