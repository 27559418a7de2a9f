"""Keras 3 interop with Keras itself (on PyTorch's backend) as the oracle: a charrnn model exported
to .keras gives the same logits in Keras, and comes back bit for bit; a model built in Keras comes
in computing what Keras computes. Every cell, two layers, float32 to 1e-5."""

import json
import os

import numpy as np
import pytest

from conftest import optional

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = optional("keras")

import charrnn  # noqa: E402
from charrnn import CharRNN, ConfigError, DataError  # noqa: E402
from charrnn.data.text import Vocab  # noqa: E402
from charrnn.interop.keras import export_keras, load_keras  # noqa: E402

from charrnn.cli import main  # noqa: E402

# Keras's torch backend trips NumPy 2's copy-keyword deprecation inside Keras itself
pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def run_cli(*args):
    """The command line in this process (Keras is slow to import in a fresh one): (status, stderr)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(a) for a in args])
    return Result(status, err.getvalue())


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr

CELLS = ("rnn", "lstm", "gru")
SYMBOLS = list("\n abcdefg")
V = len(SYMBOLS)


def one_hot(ids):
    return np.eye(V, dtype=np.float32)[ids]


def keras_logits(path, ids):
    km = keras.saving.load_model(path)
    return keras.ops.convert_to_numpy(km(one_hot(ids)))


@pytest.mark.parametrize("cell", CELLS)
def test_export_gives_keras_the_same_logits_and_comes_back_exactly(tmp_path, cell):
    model = CharRNN(V, 6, 2, cell=cell, seed=4, init="pytorch")  # pytorch init: both biases non-zero
    vocab = Vocab(SYMBOLS)
    out = export_keras(model, vocab, tmp_path / "m.keras")
    assert json.loads((tmp_path / "m.vocab.json").read_text()) == SYMBOLS
    ids = np.random.default_rng(0).integers(0, V, size=(3, 11))
    ours, _ = model.logits(ids)
    theirs = keras_logits(out, ids)
    assert theirs.shape == (3, 11, V)
    assert np.abs(theirs - ours).max() < 1e-5
    back, vocab_back = load_keras(out, tmp_path / "m.vocab.json")
    assert vocab_back == vocab and back.cell == cell and back.num_layers == 2
    again, _ = back.logits(ids)
    assert np.abs(again - ours).max() < 1e-5
    if cell == "gru":  # the GRU keeps both biases: the round trip is exact
        assert all(np.array_equal(back.params[k], model.params[k]) for k in model.params)


def keras_model(layer, units=5, layers=2, **kwargs):
    rnn = [layer(units, return_sequences=True, **kwargs) for _ in range(layers)]
    # a Dropout layer (training only) between them, as Keras char models often have
    return keras.Sequential([keras.Input((None, V)), rnn[0], keras.layers.Dropout(0.2), *rnn[1:], keras.layers.Dense(V)])


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_a_keras_model_comes_in_computing_what_keras_computes(tmp_path, name):
    keras.utils.set_random_seed(1)
    km = keras_model(getattr(keras.layers, name), bias_initializer="random_normal")
    km.save(tmp_path / "k.keras")
    (tmp_path / "vocab.json").write_text(json.dumps(SYMBOLS))
    r = run_cli("import", tmp_path / "k.keras", "--vocab", tmp_path / "vocab.json", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    lm = charrnn.load(tmp_path / "run")
    ids = np.random.default_rng(1).integers(0, V, size=(2, 13))
    want = keras.ops.convert_to_numpy(km(one_hot(ids)))
    got, _ = lm.model.logits(ids)
    assert np.abs(got - want).max() < 1e-5
    # and the imported run works with the rest of the tools: sampling, export again
    assert run_cli("sample", tmp_path / "run", "--length", 20, "--seed", 1).returncode == 0
    r = run_cli("export", tmp_path / "run", "--format", "keras", tmp_path / "again.keras")
    assert r.returncode == 0, r.stderr
    assert np.abs(keras_logits(tmp_path / "again.keras", ids) - want).max() < 1e-5


def test_unsupported_keras_models_and_vocabularies_are_refused(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(SYMBOLS))
    vocab = tmp_path / "vocab.json"
    cases = {
        "conv": keras.Sequential([keras.Input((None, V)), keras.layers.Conv1D(4, 3), keras.layers.Dense(V)]),
        "mixed": keras.Sequential([keras.Input((None, V)), keras.layers.LSTM(4, return_sequences=True),
                                   keras.layers.GRU(4, return_sequences=True), keras.layers.Dense(V)]),
        "relu": keras_model(keras.layers.SimpleRNN, activation="relu", layers=1),
        "gru_v1": keras_model(keras.layers.GRU, reset_after=False, layers=1),
        "last_only": keras.Sequential([keras.Input((None, V)), keras.layers.LSTM(4), keras.layers.Dense(V)]),
    }
    expect = {"conv": "unsupported architecture (Conv1D -> Dense)", "mixed": "unsupported architecture (LSTM -> GRU",
              "relu": "activation='relu'", "gru_v1": "reset_after=False", "last_only": "return_sequences=False"}
    for name, km in cases.items():
        km.save(tmp_path / f"{name}.keras")
        r = run_cli("import", tmp_path / f"{name}.keras", "--vocab", vocab, "--out", tmp_path / name)
        assert r.returncode == 2, (name, r.stderr)
        assert expect[name] in r.stderr and r.stderr.count("\n") == 1, (name, r.stderr)
        assert not (tmp_path / name).exists()
    good = keras_model(keras.layers.GRU, layers=1)
    good.save(tmp_path / "good.keras")
    (tmp_path / "short.json").write_text(json.dumps(SYMBOLS[:-1]))
    with pytest.raises(DataError, match=f"the vocabulary has {V - 1} symbols, the Keras model takes {V}"):
        load_keras(tmp_path / "good.keras", tmp_path / "short.json")
    r = run_cli("import", tmp_path / "good.keras", "--vocab", tmp_path / "short.json", "--out", tmp_path / "x")
    assert r.returncode == 2 and "the Keras model takes" in r.stderr
    (tmp_path / "junk.keras").write_bytes(b"not a zip file")
    r = run_cli("import", tmp_path / "junk.keras", "--vocab", vocab, "--out", tmp_path / "x")
    assert r.returncode == 2 and "not a loadable Keras model" in r.stderr and r.stderr.count("\n") == 1
    with pytest.raises(ConfigError, match="must end in .keras"):
        export_keras(CharRNN(V, 3), Vocab(SYMBOLS), tmp_path / "m.h5")
    # an existing run is not replaced without --force
    assert run_cli("import", tmp_path / "good.keras", "--vocab", vocab, "--out", tmp_path / "g").returncode == 0
    r = run_cli("import", tmp_path / "good.keras", "--vocab", vocab, "--out", tmp_path / "g")
    assert r.returncode == 2 and "--force" in r.stderr
    assert run_cli("import", tmp_path / "good.keras", "--vocab", vocab, "--out", tmp_path / "g", "--force").returncode == 0


def test_keras_runs_on_torch_when_no_installed_backend_is_configured(tmp_path):
    """Keras writes a keras.json naming tensorflow on its first import; without tensorflow
    installed (and without KERAS_BACKEND) the export still runs, on PyTorch's backend."""
    import subprocess
    import sys

    home = tmp_path / "keras-home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "tensorflow", "floatx": "float32"}))
    model = CharRNN(V, 4, cell="lstm")
    model.save(tmp_path / "m.safetensors")
    code = ("import sys; from charrnn.interop.keras import export_keras; from charrnn.data.text import Vocab; "
            "from charrnn import CharRNN; import importlib.util as u\n"
            "if u.find_spec('tensorflow') is not None: sys.exit(0)\n"
            f"export_keras(CharRNN.load(sys.argv[1]), Vocab({SYMBOLS!r}), sys.argv[2]); import keras\n"
            "print(keras.config.backend())")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"} | {"KERAS_HOME": str(home)}
    r = subprocess.run([sys.executable, "-c", code, tmp_path / "m.safetensors", tmp_path / "m.keras"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("torch", "")


def test_without_a_configured_backend_keras_runs_on_torch_else_on_the_jax_cpu_build(monkeypatch):
    """charrnn[keras] installs JAX, not PyTorch (a 590 MB install, not 5 GB): with PyTorch absent
    the fallback is JAX's backend; with it present, PyTorch's as before."""
    import importlib.util

    from charrnn.interop import keras as interop

    real = importlib.util.find_spec
    for missing, expected in (((), "torch"), (("torch",), "jax"), (("torch", "jax"), "torch")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, m=missing: None if name in m else real(name, *a)
                            if name not in ("torch", "jax") else object())
        assert interop.fallback_backend() == expected, missing
