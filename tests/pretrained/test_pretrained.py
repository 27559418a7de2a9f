"""The models shipped with charrnn (charrnn/pretrained/): what is shipped, the names, and the rules.

Every shipped file loads with the current reader and scores its held-out passage as its index (and
BENCHMARKS.md) says. A shipped model's name works wherever a model is read, and is refused in one
line wherever a run of one's own is needed: the commands and their arguments come from the command
registry (`READS`, declared where each command registers), and every argument of any command that
names a run or a model must be declared there, so a command added later is covered or a test fails.
A local path always wins over a shipped name; a damaged shipped file is refused by its name.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import socket
from pathlib import Path

import pytest

import charrnn
from charrnn.cli import build_parser
from charrnn.cli._common import COMMANDS, READS, RUN_DIRS
from charrnn.errors import CheckpointError
from charrnn.io import formats
from charrnn.io.arrays import read_header
from charrnn.io.checkpoint import load_checkpoint
from charrnn.model.params import count_parameters
from charrnn import pretrained
from charrnn.pretrained import FOLDER, INDEX, model_path, resolve, shipped

from conftest import SONNET, charrnn as cli, error_line, optional

ROOT = Path(__file__).resolve().parents[2]
MODELS = shipped()
NAMES = sorted(MODELS)
NAME = "shakespeare"
TINY = ["--hidden-size", "8", "--seq-len", "16", "--batch-size", "4", "--steps", "2", "--eval-every", "0",
        "--sample-every", "0", "--quiet"]
REFUSED = f"'{NAME}' is a shipped model, not a run directory: "


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A fresh working folder (no local path named like a shipped model) with a small text."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(SONNET * 3, encoding="utf-8")
    return tmp_path


# ------------------------------------------------------------------------------------------------
# What is shipped


def test_the_promised_models_are_shipped_and_nothing_else():
    assert {"shakespeare", "python"} <= set(NAMES)
    files = {p.name for p in FOLDER.glob("*.safetensors")}
    assert files == {MODELS[n].file for n in NAMES}, "a model file without its index entry, or the reverse"


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_file_loads_with_the_current_reader(name):
    m = MODELS[name]
    path = model_path(name)
    meta, _ = read_header(path)
    # a read-only model file: parameters, structure and vocabulary, no training state
    assert (meta["format"], meta["version"]) == (formats.MODEL, formats.VERSIONS[formats.MODEL])
    c = load_checkpoint(path)
    assert c.config is None and c.vocab is not None and c.vocab.size == c.model.vocab_size
    model = c.model
    assert count_parameters(model.vocab_size, model.hidden_size, model.num_layers, model.cell) == m.parameters
    assert path.stat().st_size == m.bytes
    assert charrnn.load(name).model.config == model.config


def test_the_wheel_stays_small():
    total = sum((FOLDER / MODELS[n].file).stat().st_size for n in NAMES)
    assert total < 8e6, f"{total:,} bytes of shipped models"


def test_the_model_files_are_package_data():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"pretrained/*.safetensors"' in section and f'"pretrained/{INDEX}"' in section


@pytest.mark.parametrize("name", NAMES)
def test_the_score_on_the_held_out_passage_is_the_documented_one(name):
    m = MODELS[name]
    assert len(m.passage) >= 1000
    score = charrnn.load(name).score(m.passage).nats_per_char
    assert score == pytest.approx(m.passage_nats_per_char, abs=2e-3)
    # a model that learned something: far below a uniform guess over its vocabulary
    assert score < 0.6 * math.log(charrnn.load(name).vocab.size)


@pytest.mark.parametrize("name", NAMES)
def test_benchmarks_md_gives_the_index_figures(name):
    """BENCHMARKS.md's table of shipped models: the validation score, size and budget of the index."""
    m = MODELS[name]
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"no row for {name} in BENCHMARKS.md"
    cells = [c.strip() for c in row.strip("|").split("|")]
    numbers = [float(x) for c in cells for x in re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", c)]
    assert any(abs(x - m.val_nats_per_char) < 6e-4 for x in numbers), (row, m.val_nats_per_char)
    assert f"{m.bytes / 1e6:.2f} MB" in row and f"{m.time_budget_s:g} s" in row, row
    assert m.command in text


def test_the_models_command_lists_them(here):
    proc = cli("models")
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        m = MODELS[name]
        assert f"{name}: {m.bytes / 1e6:.2f} MB" in proc.stdout
        assert m.data in proc.stdout and m.licence in proc.stdout and f"{m.val_nats_per_char:.3f}" in proc.stdout
    listed = json.loads(cli("models", "--json").stdout)
    assert [d["name"] for d in listed] == NAMES
    for d in listed:
        m = MODELS[d["name"]]
        assert (d["bytes"], d["val_nats_per_char"], d["licence"]) == (m.bytes, m.val_nats_per_char, m.licence)
        assert Path(d["file"]) == FOLDER / m.file


# ------------------------------------------------------------------------------------------------
# Using one by name


@pytest.mark.parametrize("name", NAMES)
def test_sample_a_shipped_model_by_name(name, here):
    proc = cli("sample", name, "--length", "300", "--seed", "1", "--temperature", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) >= 300 and proc.stderr == ""
    words = re.findall(r"[A-Za-z]{2,}", proc.stdout)
    assert len(words) >= 20, proc.stdout  # it writes words, not noise


def test_fine_tuning_from_a_shipped_model(here):
    (here / "new.txt").write_text("Ζεύς " * 200 + SONNET, encoding="utf-8")  # characters it never saw
    proc = cli("train", "new.txt", "--init-from", NAME, "--extend-vocab", "--out", "ft", "--steps", "2",
               "--seq-len", "16", "--batch-size", "4", "--eval-every", "0", "--sample-every", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    tuned = charrnn.load("ft").model
    source = charrnn.load(NAME).model
    assert (tuned.cell, tuned.hidden_size) == (source.cell, source.hidden_size)
    assert tuned.vocab_size > source.vocab_size


def test_an_unknown_name_is_one_line(here):
    line = error_line(cli("sample", "shakespear", "--length", "3"), "sample")
    assert "shakespear: no such run directory or checkpoint file, nor a shipped model" in line
    with pytest.raises(CheckpointError, match="nor a shipped model"):
        charrnn.load("shakespear")


def test_a_local_path_wins_over_a_shipped_name(here):
    proc = cli("train", "text.txt", "--out", NAME, *TINY)
    assert proc.returncode == 0, proc.stderr
    proc = cli("sample", NAME, "--length", "20", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"charrnn: '{NAME}' is both a local path and a shipped model: using the local path ./{NAME}\n"
    assert charrnn.load(NAME).hidden_size == 8  # the local run, not the shipped model
    assert Path(resolve(NAME, "run")) == Path(NAME)
    assert Path(resolve(f"./{NAME}", "model")) == Path(NAME)  # a path with a folder is never a name


def test_a_path_is_never_taken_for_a_name(here):
    for given in (f"./{NAME}", f"{NAME}/", f"{NAME}.safetensors", f"runs/{NAME}", NAME.upper()):
        assert resolve(given, "run") == given and resolve(given, "model") == given


# ------------------------------------------------------------------------------------------------
# Every command that reads a model or a run, from the registry


def _keras_files(tmp: Path) -> list:
    (tmp / "m.keras").write_bytes(b"PK")
    (tmp / "v.json").write_text('["a", "b"]')
    return [tmp / "m.keras", "--vocab", tmp / "v.json"]


# (command, argument as declared in READS) -> the command line that gives it the shipped name (in a
# fresh folder, with a loopback port that is taken)
RECIPES = {
    ("sample", "RUN"): lambda t, port: ["sample", NAME, "--length", "5", "--seed", "1"],
    ("sample", "RUN --novelty"): lambda t, port: ["sample", NAME, "--novelty", "--length", "5", "--seed", "1"],
    ("eval", "RUN"): lambda t, port: ["eval", NAME, t / "text.txt", "--quiet"],
    ("export", "RUN"): lambda t, port: ["export", NAME, t / "m.safetensors"],
    ("train", "--init-from"): lambda t, port: ["train", t / "text.txt", "--init-from", NAME, "--extend-vocab",
                                               "--out", t / "ft", *TINY[2:]],
    ("train", "--resume"): lambda t, port: ["train", "--resume", NAME],
    ("report", "RUN"): lambda t, port: ["report", NAME],
    ("plot", "RUN"): lambda t, port: ["plot", NAME],
    ("diagnose", "RUN --text"): lambda t, port: ["diagnose", NAME, "--text", t / "text.txt", "--window", "20",
                                                 "--max-lag", "3", "--warmup", "0"],
    ("diagnose", "RUN"): lambda t, port: ["diagnose", NAME],
    ("heatmap", "RUN --text"): lambda t, port: ["heatmap", NAME, "--text", t / "text.txt", "--max-chars", "30"],
    ("heatmap", "RUN"): lambda t, port: ["heatmap", NAME],
    ("import", "--out --force"): lambda t, port: ["import", *_keras_files(t), "--out", NAME, "--force"],
    ("classify", "train --resume"): lambda t, port: ["classify", "train", "--resume", NAME],
    ("classify", "eval RUN"): lambda t, port: ["classify", "eval", NAME, t / "text.txt"],
    ("classify", "predict RUN"): lambda t, port: ["classify", "predict", NAME, "abc"],
    ("tag", "train --resume"): lambda t, port: ["tag", "train", "--resume", NAME],
    ("tag", "eval RUN"): lambda t, port: ["tag", "eval", NAME, t / "text.txt"],
    ("tag", "predict RUN"): lambda t, port: ["tag", "predict", NAME, "abc"],
    ("serve", "RUN_OR_CHECKPOINT"): lambda t, port: ["serve", NAME, "--port", port],
}
# what a command that would run on says once the shipped model is loaded (serve listens: its port
# is taken here, so it stops right after loading)
LOADED = {("serve", "RUN_OR_CHECKPOINT"): "cannot listen on 127.0.0.1"}
DECLARED = [(c, arg) for c, reads in READS.items() for arg in reads]


def names_a_run(metavar) -> bool:
    """Whether an argument names a run directory, a checkpoint or a model (RUN, RUN_DIR,
    RUN_OR_CHECKPOINT, FROM), by its metavar."""
    return isinstance(metavar, str) and ("RUN" in metavar.split("_") or metavar == "FROM")


def _arguments(parser: argparse.ArgumentParser, prefix: str = ""):
    """(argument as READS writes it, metavar) of every argument of a command, subcommands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _arguments(p, f"{prefix}{sub} ")
        elif names_a_run(action.metavar):
            yield prefix + (action.option_strings[-1] if action.option_strings else action.metavar), action.metavar


def test_every_argument_naming_a_run_or_model_is_declared():
    parser, _ = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == set(COMMANDS) == set(READS)
    for name, sub in commands.items():
        for arg, _ in _arguments(sub):
            written = arg in RUN_DIRS[name]  # a run directory the command makes (train --out)
            read = any(d == arg or d.startswith(arg + " ") for d in READS[name])
            assert read or written, f"charrnn {name} {arg}: declare it in reads= (model or run) where it registers"
    assert all(p in ("model", "run") for reads in READS.values() for p in reads.values())


def test_every_declared_argument_has_its_recipe():
    assert set(DECLARED) == set(RECIPES), "an argument in READS without its command line here, or the reverse"


@pytest.fixture
def taken_port():
    """A loopback port held open, so that `charrnn serve` cannot listen on it."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s.getsockname()[1]


@pytest.mark.parametrize("command,arg", DECLARED)
def test_a_shipped_name_through_every_command(command, arg, here, taken_port):
    """A "model" argument takes the shipped name; a "run" argument refuses it in one line, before
    anything is written."""
    if command == "serve":
        optional("starlette")  # serve's extra: skipped where it is missing, failed in CI
    argv = RECIPES[(command, arg)](here, taken_port)
    before = sorted(p.name for p in here.iterdir())
    proc = cli(*argv)
    if (command, arg) in LOADED:
        assert LOADED[(command, arg)] in error_line(proc, command)
    elif READS[command][arg] == "model":
        assert proc.returncode == 0, proc.stderr
    else:
        line = error_line(proc, command)
        assert REFUSED in line, line
        assert sorted(p.name for p in here.iterdir()) == before


# ------------------------------------------------------------------------------------------------
# A damaged installation


@pytest.fixture
def copy(tmp_path, monkeypatch) -> Path:
    """The package's shipped models copied to a folder the resolver then uses instead."""
    d = tmp_path / "pretrained"
    d.mkdir()
    for p in [FOLDER / INDEX, *FOLDER.glob("*.safetensors")]:
        shutil.copy(p, d / p.name)
    monkeypatch.setattr(pretrained, "FOLDER", d)
    monkeypatch.chdir(tmp_path)
    return d


def test_a_damaged_shipped_model_is_refused_by_name(copy):
    path = copy / MODELS[NAME].file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # one weight changed: still a valid file, no longer the shipped one
    path.write_bytes(bytes(data))
    line = error_line(cli("sample", NAME, "--length", "3"), "sample")
    assert f"shipped model '{NAME}' is damaged" in line and "reinstall charrnn" in line
    with pytest.raises(CheckpointError, match=f"shipped model '{NAME}' is damaged"):
        charrnn.load(NAME)
    other = next(n for n in NAMES if n != NAME)
    assert cli("sample", other, "--length", "3", "--seed", "1").returncode == 0  # the others still work


def test_a_missing_or_truncated_shipped_model_is_refused_by_name(copy):
    path = copy / MODELS[NAME].file
    path.write_bytes(path.read_bytes()[:1000])
    assert f"shipped model '{NAME}' is damaged" in error_line(cli("eval", NAME, "x"), "eval")
    path.unlink()
    line = error_line(cli("export", NAME, "out.safetensors"), "export")
    assert f"shipped model '{NAME}' cannot be read" in line and "no such file" in line


def test_a_damaged_index_is_refused_by_name(copy):
    (copy / INDEX).write_text('{"format": "charrnn.models", "version": 1, "models": [{"name": 5}]}')
    line = error_line(cli("models"), "models")
    assert str(copy / INDEX) in line and "name must be a non-empty string" in line

