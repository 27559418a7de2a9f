"""charrnn train --config FILE: TOML or JSON with the keys of config.json; flags override it."""

import json

import numpy as np
import pytest

import charrnn
from charrnn.settings import read_config_file
from charrnn.errors import ConfigError

from conftest import SONNET, run_cli

SMALL = ["--hidden-size", 12, "--steps", 6, "--seq-len", 16, "--batch-size", 4, "--sample-every", 0, "--quiet"]


def test_config_json_given_back_trains_the_same_run(tmp_path, sonnet_file):
    first = tmp_path / "first"
    r = run_cli("train", sonnet_file, "--out", first, "--cell", "gru", *SMALL)
    assert r.returncode == 0, r.stderr
    # from another folder: the saved text path does not depend on where the run was made
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_cli("train", "--config", first / "config.json", "--out", tmp_path / "second", "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "second" / "config.json").read_text()) == json.loads((first / "config.json").read_text())
    a, b = charrnn.load(first).model.params, charrnn.load(tmp_path / "second").model.params
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_toml_with_relative_paths_and_flags_over_it(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "poem.txt").write_text(SONNET * 4, encoding="utf-8")
    (folder / "run.toml").write_text(
        '# a run of charrnn\ntext = "poem.txt"\ncell = "lstm"\nhidden_size = 10\nsteps = 4\nseq_len = 16\n'
        'batch_size = 4\nlr = 1e-2\nclip_norm = 0\nsample_every = 0\n', encoding="utf-8")
    r = run_cli("train", "--config", folder / "run.toml", "--out", tmp_path / "run", "--steps", 3, "--quiet",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["text"] == str(folder / "poem.txt")  # relative to the file's folder, not the working one
    assert (saved["cell"], saved["hidden_size"], saved["lr"], saved["clip_norm"]) == ("lstm", 10, 0.01, 0.0)
    assert saved["steps"] == 3  # the flag wins over the file


@pytest.mark.parametrize("content, suffix, message", [
    ('hiden_size = 12\n', ".toml", "unknown setting 'hiden_size'"),
    ('hidden_size = "big"\n', ".toml", "hidden_size must be an integer, got 'big'"),
    ('{"lr": "fast"}', ".json", "lr must be a finite number, got 'fast'"),
    ('{"lr": NaN}', ".json", "not valid JSON"),
    ('{"cell": "gru", "cell"', ".json", "not valid JSON"),
    ('cell = \n', ".toml", "not valid TOML"),
    ('[1, 2]', ".json", "must be an object"),
    ('{"dropout": true}', ".json", "dropout must not be true or false"),
])
def test_bad_config_files_are_refused_by_name(tmp_path, sonnet_file, content, suffix, message):
    path = tmp_path / f"cfg{suffix}"
    path.write_text(content, encoding="utf-8")
    r = run_cli("train", sonnet_file, "--config", path, "--out", tmp_path / "run")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1 and str(path) in r.stderr
    assert not (tmp_path / "run").exists()


def test_config_file_errors_in_python(tmp_path, sonnet_file):
    with pytest.raises(ConfigError, match="no such config file"):
        read_config_file(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        read_config_file(tmp_path)
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        (tmp_path / "c.json").write_text('{"colour": "red"}')
        charrnn.fit(sonnet_file, config=tmp_path / "c.json", out=tmp_path / "run")
    r = run_cli("train", "--resume", tmp_path / "run", "--config", tmp_path / "c.json")
    assert r.returncode == 2 and "--config starts a new run" in r.stderr
