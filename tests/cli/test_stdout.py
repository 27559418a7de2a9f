"""Standard output that cannot take what a command prints: a full device (`> /dev/full`) is one
line and exit 2 for every command that prints, whatever it prints (a stream of text, one JSON
object, a table); a closed pipe (`| head`) ends the command quietly with exit 0."""

import os
import subprocess
import sys

import pytest

from conftest import SONNET, charrnn

TINY = ["--hidden-size", "8", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "2", "--quiet"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("stdout")
    (base / "text.txt").write_text(SONNET * 4)
    assert charrnn("train", base / "text.txt", "--out", base / "lm", *TINY).returncode == 0
    (base / "data.tsv").write_text("".join(f"{w}\t{w[0]}\n" for w in ("ab", "ba", "abba", "baab", "aab", "bba") * 10))
    proc = charrnn("classify", "train", base / "data.tsv", "--out", base / "clf", "--hidden-size", "8", "--steps", "4",
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    return base


COMMANDS = {  # a few commands that print, each printing in its own way
    "sample": lambda b: ["sample", b / "lm", "--length", "100000", "--seed", "1", "--novelty"],
    "eval": lambda b: ["eval", b / "lm", b / "text.txt", "--json", "--quiet"],
    "impulse": lambda b: ["impulse", "--json"],
    "classify": lambda b: ["classify", "predict", b / "clf", "abba", "baab"],
}


def run_to(stdout, argv: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, argv)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, env=ENV)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_stdout_is_one_line_and_exit_2(runs, command):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        proc = run_to(full, COMMANDS[command](runs))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"charrnn {command}: error: cannot write to standard output: No space left on device\n"


def test_a_closed_pipe_ends_quietly(runs):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first character
    try:
        proc = run_to(write, COMMANDS["sample"](runs))
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""
