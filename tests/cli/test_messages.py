"""Honest messages and bounded work on hostile input: negative numbers as option values for every
option of every command, overflowing impulse responses, paths that do not exist, bench's errors,
non-finite task scores, stdouts that cannot show a character, raw bytes as a bytes model's prime,
samples too large for memory, and counts in the number they need."""

import argparse
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import charrnn
from charrnn import bench
from charrnn.cli import build_parser
from charrnn.errors import CheckpointError
from charrnn.io.arrays import read_arrays, write_arrays

from conftest import SONNET, charrnn as cli, error_line, optional, run_cli


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("messages")
    (root / "s.txt").write_text(SONNET * 2, encoding="utf-8")
    charrnn.fit(root / "s.txt", out=root / "run", hidden_size=8, steps=2, seq_len=8, batch_size=2, eval_every=0,
                sample_every=0, quiet=True)
    return root / "run"


# -- negative numbers --------------------------------------------------------------------------

def every_parser():
    """(command words, parser) of every command and subcommand, from the registry, and bench's."""
    def walk(p, path):
        yield path, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])

    yield from walk(build_parser()[0], [])
    yield ["bench"], bench.build_parser()


def value_options():
    out = []
    for path, p in every_parser():
        for action in p._actions:
            if isinstance(action, argparse._StoreAction) and action.option_strings:
                out.append((path, p, action.option_strings[-1]))
    return out


def test_every_option_takes_a_negative_number_as_its_value(capsys):
    options = value_options()
    assert any(path == ["impulse"] and opt == "--w" for path, _, opt in options)
    assert any(path == ["classify", "train"] for path, _, _ in options) and any(path == ["bench"] for path, _, _ in options)
    for path, p, opt in options:
        for value in ("-1e308", "-.5", "-inf", "-1"):
            try:
                ns, _ = p.parse_known_args([opt, value])
            except (SystemExit, charrnn.ConfigError) as e:  # the value refused, or a positional missing
                said = capsys.readouterr().err + str(e)
                assert "expected one argument" not in said, (path, opt, value, said)
            else:
                assert getattr(ns, p._option_string_actions[opt].dest) is not None, (path, opt, value)


def test_a_negative_number_reaches_the_check_that_names_the_flag(tmp_path):
    assert "--w must be a finite number, got -inf" in error_line(cli("impulse", "--w", "-inf"), "impulse")
    r = cli("impulse", "--w", "-1e308", "--steps", 2)
    assert r.returncode == 0 and "inf" in r.stdout and "nan" not in r.stdout
    assert "--radius must be a finite number >= 0, got -1e+308" in error_line(
        cli("impulse", "--matrix", 4, "--radius", "-1e308"), "impulse")


# -- impulse responses past the float range ----------------------------------------------------

@pytest.mark.parametrize("args", [["--w", "1e308", "--steps", 1], ["--w", "-2", "--steps", 1100],
                                  ["--matrix", 8, "--radius", "1e300", "--steps", 4],
                                  ["--gaussian", "--radius", "1e308", "--steps", 3]])
def test_impulse_plots_responses_past_the_float_range(args, tmp_path):
    optional("matplotlib")
    out = tmp_path / "x.png"
    r = run_cli("impulse", *args, "--plot", out)
    assert r.returncode == 0 and r.stderr == "", r.stderr  # no traceback, no warnings either
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "nan" not in r.stdout
    doc = strict_json(run_cli("impulse", *args, "--json").stdout)
    assert None in doc["envelope"] or max(doc["envelope"]) >= 1e300  # overflowed values are null, not NaN


# -- paths that are not there --------------------------------------------------------------------

def test_plot_and_report_of_a_path_that_does_not_exist_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope"
    for args in (["plot", missing], ["plot", missing, "--out", "x.png"], ["report", missing, "--out", "x.html"],
                 ["report", missing]):
        line = error_line(cli(*args), args[0])
        assert line.endswith(f"{missing}: no such run directory or checkpoint")
    assert os.listdir(tmp_path) == []


def test_a_truncated_or_damaged_keras_file_says_so(tmp_path):
    from charrnn.interop.keras import _check_archive

    good = tmp_path / "m.keras"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("config.json", "{}" * 500)
        z.writestr("model.weights.h5", b"\0" * 4000)
    _check_archive(good)
    data = good.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.keras").write_bytes(b"")
    flipped = bytearray(data)
    flipped[data.index(b"{}") + 3] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    for name, said in (("cut", "truncated or damaged"), ("empty", "truncated or damaged"),
                       ("flipped", "'config.json' fails its checksum")):
        with pytest.raises(CheckpointError) as e:
            _check_archive(tmp_path / f"{name}.keras")
        assert "not a loadable Keras model" in str(e.value) and said in str(e.value)
        assert "not found" not in str(e.value)


# -- bench -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [["--nope"], ["--rows", "nope"], ["--cells", "lstm,xyz"], ["--repeats", "0"],
                                 ["--repeats", "x"], ["--threads", "0"], ["--threads", "-1e308"],
                                 ["--json", "/nonexistent-dir/x.json"], ["--baseline-threads", "all"]])
def test_bench_refuses_bad_options_in_one_line_as_every_command_does(bad):
    r = cli("bench", *bad)
    line = error_line(r, "bench")
    assert "usage" not in r.stderr and "--rows: --rows" not in line


# -- the task models: overflowing scores, stdouts that cannot show a character ----------------------

@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(120):
        word = "".join(rng.choice(list("abcé"), size=rng.integers(2, 7)))
        lines.append(f"{word}\t{'é-word' if word[0] == 'é' else 'plain'}")
    (root / "c.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(root / "t.jsonl", "w", encoding="utf-8") as f:
        for _ in range(60):
            text = "".join(rng.choice(list("abé"), size=6))
            f.write(json.dumps({"text": text, "tags": ["É" if ch == "é" else "o" for ch in text]}) + "\n")
    for task, data in (("classify", "c.tsv"), ("tag", "t.jsonl")):
        r = cli(task, "train", root / data, "--out", root / task, "--steps", 3, "--hidden-size", 8, "--quiet")
        assert r.returncode == 0, r.stderr
    return root


def overflowing_copy(run: Path, dest: Path) -> Path:
    """The run with weights of +-3e38, so that float32 sums overflow to inf and meet as NaN."""
    import shutil

    shutil.copytree(run, dest)
    for f in dest.glob("*.safetensors"):
        arrays, meta = read_arrays(f)
        rng = np.random.default_rng(0)
        for k, a in arrays.items():
            if a.dtype.kind == "f":
                arrays[k] = (np.sign(rng.standard_normal(a.shape)) * 3e38).astype(a.dtype)
        write_arrays(f, arrays, meta)
    return dest


@pytest.mark.parametrize("task", ["classify", "tag"])
def test_task_scores_that_overflow_are_never_shown_as_nan(task_runs, task, tmp_path):
    run = overflowing_copy(task_runs / task, tmp_path / "huge")
    data = task_runs / ("c.tsv" if task == "classify" else "t.jsonl")
    r = cli(task, "eval", run, data, "--json")
    assert r.returncode == 0, r.stderr
    doc = strict_json(r.stdout)
    assert doc["unscored"] > 0 and doc["accuracy"] <= 1 - doc["unscored"] / doc["count"]
    if task == "classify":
        assert doc["loss"] is None
    r = cli(task, "eval", run, data)
    assert r.returncode == 0 and "nan" not in r.stdout.lower() and "without a prediction" in r.stdout
    for extra in ([], ["--json"]):
        r = cli(task, "predict", run, "abc", "ba", *extra)
        assert r.returncode == 0 and "nan" not in r.stdout.lower(), r.stdout
        assert "no prediction for" in r.stderr and "Warning" not in r.stderr
        if extra:
            docs = [strict_json(line) for line in r.stdout.splitlines()]
            assert any((d["labels"] is None) if task == "classify" else (None in d["tags"]) for d in docs)


@pytest.mark.parametrize("task", ["classify", "tag"])
def test_task_commands_escape_what_an_ascii_stdout_cannot_show(task_runs, task):
    run = task_runs / task
    data = task_runs / ("c.tsv" if task == "classify" else "t.jsonl")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="ascii")
    for args in (["predict", run, "abé"], ["predict", run, "abé", "--json"], ["eval", run, data]):
        r = subprocess.run([sys.executable, "-m", "charrnn", task, *map(str, args)], capture_output=True, env=env,
                           timeout=120)
        assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
        assert r.stdout.isascii() and (b"\\xe9" in r.stdout or b"\\u00e9" in r.stdout or b"\\xc9" in r.stdout
                                       or b"\\u00c9" in r.stdout), r.stdout
        assert b"backslash escapes" in r.stderr
        if "--json" in args:
            assert strict_json(r.stdout.decode().splitlines()[0])["text"] == "abé"


# -- the language model's commands ---------------------------------------------------------------

def test_a_bytes_model_takes_its_prime_as_the_bytes_given(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    (tmp_path / "b.dat").write_bytes(data)
    assert run_cli("train", tmp_path / "b.dat", "--encoding", "bytes", "--out", tmp_path / "run", "--hidden-size", 8,
                   "--steps", 2, "--seq-len", 8, "--batch-size", 2, "--quiet").returncode == 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    for prime in (b"\xff", b"ab\xfe\x00"[:3]):
        r = subprocess.run([sys.executable, "-m", "charrnn", "sample", str(tmp_path / "run"), "--prime", prime,
                            "--length", "0", "--seed", "1"], capture_output=True, env=env, timeout=120)
        assert (r.returncode, r.stdout, r.stderr) == (0, prime + b"\n", b"")


def test_samples_too_large_for_memory_are_refused_before_any_work(lm_run, tmp_path, monkeypatch):
    r = run_cli("sample", lm_run, "--num-samples", 1_000_000, "--length", 100_000_000, "--seed", 1, timeout=120)
    line = error_line(r, "sample")
    assert "1,000,000 samples of 100,000,000 characters need about" in line and line.count("GiB") == 2
    assert r.stdout == ""
    with pytest.raises(charrnn.ConfigError, match="need about .* GiB, more than this machine's .* GiB allows"):
        charrnn.load(lm_run).samples(1_000_000, length=100_000_000)


def test_counts_are_in_the_number_they_need(lm_run, tmp_path):
    (tmp_path / "two.txt").write_text("So", encoding="utf-8")
    r = run_cli("eval", lm_run, tmp_path / "two.txt")
    assert r.returncode == 0 and r.stdout.rstrip().endswith(" 1 character scored"), r.stdout


def test_an_overflowing_language_model_scores_null_and_says_why(lm_run, tmp_path):
    run = overflowing_copy(lm_run, tmp_path / "huge")
    text = tmp_path / "t.txt"
    text.write_text(SONNET, encoding="utf-8")
    r = run_cli("eval", run, text)
    assert r.returncode == 0 and r.stderr == "" and "nan" not in r.stdout and "not numbers" in r.stdout
    doc = strict_json(run_cli("eval", run, text, "--json").stdout)
    assert doc["nats_per_char"] is None and doc["perplexity"] is None


# Names the project's own notes use for its starting points; a user has never seen them.
JARGON = re.compile(r"\bseed \d{3}\b|\bseeds'|\bthe seed's\b|\bseed-style\b", re.IGNORECASE)


def test_help_texts_and_lessons_say_what_a_thing_is_not_which_seed_it_came_from(capsys):
    """Every command's and subcommand's help (from the registry, so a command added later is read
    too) and the printed lessons name what they mean ("Karpathy's min-char-rnn", "the hello
    walkthrough") rather than a seed number."""
    texts = {" ".join(["charrnn", *path]): p.format_help() for path, p in every_parser()}
    assert len(texts) > 20
    for args in (["hello"], ["explain-update", "--no-frameworks"]):
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr
        texts[" ".join(args)] = proc.stdout + proc.stderr
    found = {name: JARGON.findall(text) for name, text in texts.items() if JARGON.search(text)}
    assert not found
    assert "Karpathy's min-char-rnn" in texts["charrnn train"] and "hello walkthrough" in texts["charrnn hello"]
