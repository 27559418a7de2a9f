"""The front door (charrnn.load / fit, LanguageModel) through the public API only, held to the
command line: generate == `charrnn sample`, score == `charrnn eval`, on models of every cell."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import charrnn
from charrnn import CharRNN, CheckpointError, ConfigError, DataError

from conftest import SONNET, run_cli

CELLS = ("rnn", "lstm", "gru")
SMALL = dict(hidden_size=16, steps=20, seq_len=16, batch_size=4, eval_every=10, sample_every=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small trained run per cell (two layers for the LSTM), made by charrnn.fit."""
    root = tmp_path_factory.mktemp("api")
    text = root / "sonnet.txt"
    text.write_text(SONNET * 6, encoding="utf-8")
    made = {}
    for cell in CELLS:
        layers = 2 if cell == "lstm" else 1
        lm = charrnn.fit(text, out=root / cell, cell=cell, num_layers=layers, quiet=True, **SMALL)
        assert isinstance(lm, charrnn.LanguageModel) and lm.cell == cell and lm.num_layers == layers
        made[cell] = root / cell
    return made


@pytest.mark.parametrize("cell", CELLS)
def test_generate_is_what_charrnn_sample_prints(runs, cell):
    lm = charrnn.load(runs[cell])
    text = lm.generate("Shall I", length=80, temperature=0.9, top_k=6, seed=7)
    assert text.startswith("Shall I") and len(text) == len("Shall I") + 80
    cli = run_cli("sample", runs[cell], "--prime", "Shall I", "--length", 80, "--temperature", 0.9, "--top-k", 6,
                  "--seed", 7)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == text + "\n"
    # no prime: a newline, not shown, as the command does
    plain = lm.generate(length=50, top_p=0.9, seed=3)
    assert run_cli("sample", runs[cell], "--length", 50, "--top-p", 0.9, "--seed", 3).stdout == plain + "\n"
    assert lm.generate("Shall I", length=80, temperature=0.9, top_k=6, seed=7) == text  # deterministic
    assert lm.generate("Shall I", length=80, temperature=0.9, top_k=6, seed=8) != text
    greedy = lm.generate("So long", length=40, greedy=True)
    assert greedy == lm.generate("So long", length=40, greedy=True, seed=99)


@pytest.mark.parametrize("cell", CELLS)
def test_stop_ends_each_item_as_the_command_does(runs, cell):
    lm = charrnn.load(runs[cell])
    items = lm.samples(6, length=60, stop="\n", seed=5)
    assert len(items) == 6 and all("\n" not in item and len(item) <= 60 for item in items)
    cli = run_cli("sample", runs[cell], "--length", 60, "--stop", "\n", "--num-samples", 6, "--seed", 5)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == "\n".join(items) + "\n"
    # the item is the free-running sample cut before the first stop string, which is left out
    for stop in ("e", "th"):
        for seed in range(4):
            free = lm.generate("So", length=150, seed=seed)[2:]
            cut = lm.generate("So", length=150, seed=seed, stop=stop)
            assert cut == "So" + free.split(stop)[0]


def test_load_refuses_what_is_not_a_run(tmp_path, runs):
    with pytest.raises(CheckpointError, match="no such run directory or checkpoint"):
        charrnn.load(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint in this directory"):
        charrnn.load(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a"):
        charrnn.load(tmp_path / "notes.txt")
    CharRNN(5, 4).save(tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="no vocabulary"):
        charrnn.load(tmp_path / "bare.safetensors")
    assert charrnn.load(runs["rnn"] / "latest.safetensors").cell == "rnn"  # a checkpoint file also loads


def test_bad_input_raises_the_project_errors(runs):
    lm = charrnn.load(runs["gru"])
    with pytest.raises(DataError, match="'Z'"):
        lm.generate("Zebra", length=5, seed=0)  # 'Z' never occurs in the sonnet
    assert lm.generate("Zebra", length=5, seed=0, skip_unknown=True).startswith("ebra")
    with pytest.raises(ConfigError, match="stop string is empty"):
        lm.generate("So", length=5, stop="")
    with pytest.raises(DataError, match="stop string"):
        lm.generate("So", length=5, stop="Zz")
    with pytest.raises(ConfigError, match="temperature"):
        lm.generate("So", temperature=0)
    with pytest.raises(DataError, match="nothing to score"):
        lm.score("S")
    for bad in (["--stop", ""], ["--prime", "Zebra"]):
        r = run_cli("sample", runs["gru"], "--length", 5, *bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = run_cli("sample", runs["gru"] / "nope")
    assert r.returncode == 2 and "no such run directory" in r.stderr


@pytest.mark.parametrize("cell", CELLS)
def test_score_agrees_with_charrnn_eval(runs, cell, tmp_path):
    lm = charrnn.load(runs[cell])
    text = SONNET * 2  # longer than one scoring window, so the state is carried across windows
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    r = run_cli("eval", runs[cell], path, "--json")
    assert r.returncode == 0, r.stderr
    want = json.loads(r.stdout)
    s = lm.score(text)
    assert s.chars == want["chars"] == len(text) - 1
    assert s.nats_per_char == pytest.approx(want["nats_per_char"], rel=1e-5)
    assert s.bits_per_char == pytest.approx(want["bits_per_char"], rel=1e-5)
    assert np.all(s.log_probs <= 0) and s.log_probs.shape == (len(text) - 1,)
    # each call starts afresh: the same text scores the same after another
    lm.score("So long lives this")
    assert np.array_equal(lm.score(text).log_probs, s.log_probs)
    # each character's log-probability is that of the model's own softmax at that position
    ids = lm.encode(text)
    logits, _ = lm.model.logits(ids[None, :-1])
    z = logits[0].astype(np.float64)
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    assert np.allclose(s.log_probs, logp[np.arange(len(ids) - 1), ids[1:]], atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_hidden_states_are_fresh_and_right(runs, cell):
    lm = charrnn.load(runs[cell])
    text = SONNET[:300]  # longer than one window
    hs = lm.hidden_states(text)
    assert hs.shape == (lm.num_layers, len(text), lm.hidden_size) and hs.dtype == lm.model.dtype
    kept = hs.copy()
    lm.hidden_states("Rough winds do shake the darling buds of May")
    lm.generate("So", length=30, seed=1)
    lm.score(SONNET[:100])
    assert np.array_equal(hs, kept)  # never a view into a buffer that later calls reuse
    # the top layer's states give the model's logits, and the last states are its final state
    ids = lm.encode(text)
    logits, final = lm.model.logits(ids[None])
    p = lm.model.params
    assert np.allclose(hs[-1] @ p["head.weight"].T + p["head.bias"], logits[0], atol=1e-5)
    h_final = final[0] if cell == "lstm" else final
    assert np.allclose(hs[:, -1], h_final[:, 0], atol=1e-6)


def test_fit_takes_the_options_of_charrnn_train(tmp_path, runs):
    config = json.loads((runs["gru"] / "config.json").read_text())
    assert config["cell"] == "gru" and config["hidden_size"] == 16 and config["steps"] == 20
    text = tmp_path / "s.txt"
    text.write_text(SONNET, encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown setting 'hiden_size'"):
        charrnn.fit(text, out=tmp_path / "r", hiden_size=16)
    with pytest.raises(ConfigError, match="hidden_size must be an integer"):
        charrnn.fit(text, out=tmp_path / "r", hidden_size="big")
    with pytest.raises(ConfigError, match="text file"):
        charrnn.fit(out=tmp_path / "r")
    with pytest.raises(DataError, match="missing.txt is no file or folder"):
        charrnn.fit(tmp_path / "missing.txt", out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_progress_bars_use_tqdm_auto(monkeypatch, tmp_path):
    import tqdm.auto

    made = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *a, **k):
            made.append(k)
            super().__init__(*a, **k)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    from charrnn.train import progress

    monkeypatch.setattr(progress, "interactive", lambda stream: True)  # a terminal or a notebook
    text = tmp_path / "s.txt"
    text.write_text(SONNET * 2, encoding="utf-8")
    charrnn.fit(text, out=tmp_path / "r", hidden_size=8, steps=3, seq_len=8, batch_size=2, sample_every=0)
    assert made and made[0]["total"] == 3


def test_the_package_is_typed():
    assert (Path(charrnn.__file__).parent / "py.typed").is_file()
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert re.search(r'charrnn = \[[^\]]*"py.typed"', pyproject)


def test_the_readme_example_runs(tmp_path):
    """The README's Python example, verbatim, in a fresh interpreter in an empty folder."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "example.py").write_text(code + "\nprint('OK', type(lm).__name__)\n", encoding="utf-8")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("OK LanguageModel")


def test_fit_resumes_a_run_exactly(tmp_path):
    text = tmp_path / "s.txt"
    text.write_text(SONNET * 2, encoding="utf-8")
    # a constant schedule: raising the step count then changes nothing of the first steps
    small = dict(hidden_size=8, seq_len=8, batch_size=2, sample_every=0, eval_every=0, lr_schedule="constant",
                 quiet=True)
    charrnn.fit(text, out=tmp_path / "half", steps=4, **small)
    assert isinstance(charrnn.fit(resume=tmp_path / "half", steps=8, quiet=True), charrnn.LanguageModel)
    charrnn.fit(text, out=tmp_path / "whole", steps=8, **small)
    resumed, whole = (charrnn.load(tmp_path / run / "latest.safetensors").model.params for run in ("half", "whole"))
    assert all(np.array_equal(resumed[k], whole[k]) for k in whole)
    with pytest.raises(ConfigError, match="cannot change --hidden-size"):
        charrnn.fit(resume=tmp_path / "half", hidden_size=9, steps=9)
