"""Keras 3 models in and out: SimpleRNN / LSTM / GRU layers and a Dense head over one-hot input.

The exported model is what seed 000 builds in Keras, whole:

    keras.Sequential([keras.Input((None, V)),                       # one-hot characters (B, T, V)
                      SimpleRNN | LSTM | GRU (H, return_sequences=True)  x L,
                      Dense(V)])                                      # logits (B, T, V)

with the vocabulary beside it as JSON (a list of symbols: characters, or byte values for a
bytes model). The layouts differ from PyTorch's (charrnn's); `keras_weights` / `torch_weights`
are the one place that converts, as each cell's KERAS declaration (core/) says:

    PyTorch (charrnn)                          Keras
    weight_ih (G*H, I)                         kernel (I, G*H)            transposed
    weight_hh (G*H, H)                         recurrent_kernel (H, G*H)  transposed
    bias_ih, bias_hh (G*H,)  rnn, lstm         bias (G*H,) = bias_ih + bias_hh   (one bias: only the sum acts)
                             gru               bias (2, G*H) = [bias_ih; bias_hh] (reset_after=True keeps both)
    gate blocks  lstm i|f|g|o                  i|f|c|o  (the same order)
                 gru  r|z|n                    z|r|h    (the first two swapped)

(each cell's KerasLayer: its layer, `both_biases`, `gate_order` and options).
    head.weight (V, H), head.bias (V,)         Dense kernel (H, V), bias (V,)

Both sides compute the same functions: Keras's GRU with reset_after=True is PyTorch's
(n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h). Dropout is a training
matter and is not exported. A cell without a Keras layer (KERAS None) is refused by name. Keras
is optional (`pip install 'charrnn[keras]'`); it runs on whichever backend is configured, on
PyTorch's when none is and PyTorch is installed, else on JAX's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..data.text import Vocab
from ..errors import CheckpointError, ConfigError, DataError, show_path
from ..io.readers import read_json, reader
from ..model import CharRNN
from ..core import CELLS, KerasLayer
from ..model.params import HEAD_BIAS, HEAD_WEIGHT, cell_module, layer_names, twin
from ..io.modelfile import model_from_arrays


# Keras backends and the package each needs
BACKEND_PACKAGES = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax", "numpy": "numpy", "openvino": "openvino"}
# Without an installed backend configured: PyTorch's when installed (charrnn[torch]; explain-update's
# Keras column needs it), else JAX's, the CPU build `charrnn[keras]` installs (Keras's NumPy backend
# imports JAX as well, so it would save nothing).
FALLBACK_BACKENDS = ("torch", "jax")


def import_keras() -> Any:
    """The keras module, on the backend configured (KERAS_BACKEND, or keras.json) when that
    backend is installed, else on the first installed of FALLBACK_BACKENDS; a one-line error when
    Keras is not installed. (Keras writes a keras.json naming tensorflow on its first import,
    installed or not.)"""
    import importlib.util

    if "keras" not in sys.modules:
        wanted = os.environ.get("KERAS_BACKEND") or _configured_backend()
        package = BACKEND_PACKAGES.get(wanted or "")
        if package is None or importlib.util.find_spec(package) is None:
            os.environ["KERAS_BACKEND"] = fallback_backend()
    try:
        import keras
    except ImportError as e:
        raise ConfigError(f"Keras is not installed or cannot start ({e}): pip install 'charrnn[keras]'") from None
    if not str(getattr(keras, "__version__", "0")).startswith("3"):
        raise ConfigError(f"Keras 3 is needed, this is Keras {keras.__version__}")
    return keras


def fallback_backend() -> str:
    """The first of FALLBACK_BACKENDS installed (PyTorch's when none is: its error names it)."""
    import importlib.util

    return next((b for b in FALLBACK_BACKENDS if importlib.util.find_spec(BACKEND_PACKAGES[b]) is not None), "torch")


def _configured_backend() -> str | None:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        config = read_json(os.path.join(home, "keras.json"), ConfigError, "Keras configuration")
    except ConfigError:  # none, or not one Keras could read either: Keras's default applies
        return None
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) else None


def keras_layer(cell: str) -> KerasLayer:
    """The cell's Keras layer, or a one-line error naming a cell that has none."""
    return twin(cell, "KERAS", "Keras layer: export --format keras takes")


def cell_of_layer(name: str) -> str | None:
    """The registered cell a Keras layer class is, or None."""
    return next((n for n, m in CELLS.items() if m.KERAS is not None and m.KERAS.layer == name), None)


def _reorder(a: np.ndarray, order: tuple[int, ...], H: int, inverse: bool = False) -> np.ndarray:
    """The gate blocks of `a` along axis 0 in Keras's order (block j is block order[j]), or back.
    An array of another length is left as it is, for the shape checks to refuse by name."""
    if a.ndim == 0 or a.shape[0] != len(order) * H or list(order) == sorted(order):
        return a
    if inverse:
        order = tuple(int(i) for i in np.argsort(order))
    return np.concatenate([a[g * H : (g + 1) * H] for g in order], axis=0)


def keras_weights(model: CharRNN) -> list[list[np.ndarray]]:
    """Per recurrent layer [kernel, recurrent_kernel, bias], then the Dense [kernel, bias]."""
    H, out = model.hidden_size, []
    spec = keras_layer(model.cell)
    for k in range(model.num_layers):
        w_ih, w_hh, b_ih, b_hh = (_reorder(model.params[n], spec.gate_order, H) for n in layer_names(model.cell, k))
        bias = np.stack([b_ih, b_hh]) if spec.both_biases else b_ih + b_hh
        out.append([w_ih.T, w_hh.T, bias])
    out.append([model.params[HEAD_WEIGHT].T, model.params[HEAD_BIAS]])
    return [[np.ascontiguousarray(w) for w in ws] for ws in out]


def torch_weights(cell: str, layers: list[list[np.ndarray]], head: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of `keras_weights`: charrnn's (PyTorch's) parameters. A single Keras bias goes
    to bias_ih, with bias_hh zero: the sum is what the cell computes with."""
    spec = keras_layer(cell)
    params: dict[str, np.ndarray] = {}
    for k, (kernel, recurrent, bias) in enumerate(layers):
        H = recurrent.shape[0]
        b_ih, b_hh = (bias[0], bias[1]) if spec.both_biases else (bias, np.zeros_like(bias))
        arrays = (kernel.T, recurrent.T, b_ih, b_hh)
        for name, a in zip(layer_names(cell, k), arrays):
            params[name] = np.ascontiguousarray(_reorder(a, spec.gate_order, H, inverse=True))
    params[HEAD_WEIGHT] = np.ascontiguousarray(head[0].T)
    params[HEAD_BIAS] = np.ascontiguousarray(head[1])
    return params


def build_keras_model(model: CharRNN) -> Any:
    """A Keras model computing `model`'s logits from one-hot input (B, T, V)."""
    model.stack.plain_only("export --format keras")
    spec = keras_layer(model.cell)
    keras = import_keras()
    layer_class = getattr(keras.layers, spec.layer)
    dtype = model.dtype.name
    layers = [keras.Input(shape=(None, model.vocab_size), dtype=dtype)]
    layers += [layer_class(model.hidden_size, return_sequences=True, dtype=dtype, name=f"{spec.layer.lower()}_{k}",
                           **spec.options) for k in range(model.num_layers)]
    layers.append(keras.layers.Dense(model.vocab_size, dtype=dtype, name="head"))
    km = keras.Sequential(layers, name=f"charrnn_{model.cell}")
    for layer, weights in zip(km.layers, keras_weights(model)):
        layer.set_weights(weights)
    return km


def vocab_path(model_path: str | Path) -> Path:
    """Where the vocabulary of an exported model goes: model.keras -> model.vocab.json."""
    p = Path(model_path)
    return p.with_name(p.name[: -len(p.suffix)] + ".vocab.json" if p.suffix else p.name + ".vocab.json")


def export_keras(model: CharRNN, vocab: Vocab, out: str | Path, force: bool = False) -> Path:
    """Write `model` as a .keras file and its vocabulary beside it, both through the one writer
    (`force` replaces existing regular files); returns the model's path."""
    from ..io.writer import check_target, write_file
    from ..io.arrays import dump_json

    out = check_target(out, force=force)
    if out.suffix != ".keras":
        raise ConfigError(f"{out}: a Keras model file must end in .keras")
    check_target(vocab_path(out), force=force)  # both refused before either is written
    km = build_keras_model(model)
    write_file(out, lambda tmp: km.save(tmp), force=force, suffix=".keras")  # Keras insists on the suffix
    write_file(vocab_path(out), (dump_json(vocab.symbols) + "\n").encode("utf-8"), force=force)
    return out


@reader("Keras vocabulary (--vocab)", "json")
def read_vocab(path: str | Path) -> Vocab:
    """A vocabulary file: a JSON list of symbols (one-character strings, or byte values 0-255 for
    a bytes model), or charrnn's {"encoding": ..., "symbols": [...]}."""
    data = read_json(path, DataError, "vocabulary file")
    if isinstance(data, list):
        data = {"encoding": "bytes" if data and all(isinstance(s, int) for s in data) else "utf-8", "symbols": data}
    try:
        return Vocab.from_json(data)
    except CheckpointError as e:
        raise DataError(f"{show_path(path)}: {e}") from None


def model_from_keras(km: Any, vocab: Vocab, source: str) -> CharRNN:
    """A CharRNN computing what the Keras model `km` computes: recurrent layers of one supported
    kind, then one Dense layer. Anything else is refused in one line naming the layer."""
    # Dropout acts in training only: at inference it is the identity, and it is left out
    layers = [layer for layer in km.layers if type(layer).__name__ not in ("InputLayer", "Dropout")]
    kinds = [type(layer).__name__ for layer in layers]
    cell = cell_of_layer(kinds[0]) if layers else None
    if len(layers) < 2 or kinds[-1] != "Dense" or cell is None or len(set(kinds[:-1])) != 1:
        known = ", ".join(m.KERAS.layer for m in CELLS.values() if m.KERAS is not None)
        raise ConfigError(f"{source}: unsupported architecture ({' -> '.join(kinds) or 'no layers'}); charrnn "
                          f"imports {known} layers (one kind) followed by one Dense layer, Dropout allowed")
    module = cell_module(cell)
    rnn_layers, head = layers[:-1], layers[-1]
    for k, layer in enumerate(rnn_layers):
        c = layer.get_config()
        want = {"activation": "tanh", "use_bias": True, "return_sequences": True, "go_backwards": False}
        if module.SIGMOID_GATES:
            want["recurrent_activation"] = "sigmoid"
        want |= module.KERAS.options
        bad = [f"{key}={c.get(key)!r}" for key, value in want.items() if c.get(key) != value]
        if bad:
            raise ConfigError(f"{source}: layer {layer.name} ({kinds[k]}) has {', '.join(bad)}; charrnn imports "
                              f"{', '.join(f'{key}={value!r}' for key, value in want.items())}")
    hc = head.get_config()
    if hc.get("activation") not in ("linear", "softmax") or not hc.get("use_bias", False):
        raise ConfigError(f"{source}: the Dense layer must be linear (or softmax) with a bias, "
                          f"has activation={hc.get('activation')!r}, use_bias={hc.get('use_bias')!r}")
    weights = [[np.asarray(w) for w in layer.get_weights()] for layer in rnn_layers]
    head_w = [np.asarray(w) for w in head.get_weights()]
    V, H = weights[0][0].shape[0], weights[0][1].shape[0]
    for k, (kernel, recurrent, _) in enumerate(weights):
        if recurrent.shape[0] != H or (k and kernel.shape[0] != H):
            raise ConfigError(f"{source}: every recurrent layer must have the same units ({H}); layer {k} differs")
    if head_w[0].shape != (H, V):
        raise ConfigError(f"{source}: the Dense layer maps {head_w[0].shape[0]} to {head_w[0].shape[1]} "
                          f"values; a character model maps {H} to the input's {V}")
    if vocab.size != V:
        raise DataError(f"the vocabulary has {vocab.size} symbols, the Keras model takes {V} (one-hot input size)")
    dtype = np.result_type(*(w.dtype for ws in weights for w in ws))
    if dtype.name not in ("float32", "float64"):
        raise ConfigError(f"{source}: weights of dtype {dtype.name}; charrnn uses float32 or float64")
    params = {k: v.astype(dtype, copy=False) for k, v in torch_weights(cell, weights, head_w).items()}
    config = {"vocab_size": V, "hidden_size": H, "num_layers": len(rnn_layers), "dtype": dtype.name, "cell": cell}
    try:  # shapes and finiteness checked as for any model file
        return model_from_arrays(params, config, None, source)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None


def save_imported(model: CharRNN, vocab: Vocab, run_dir: str | Path, force: bool = False) -> Path:
    """A run directory holding the model with its vocabulary (best.safetensors): what
    `charrnn sample`, `eval`, `export`, `charrnn.load` and `train --init-from` read.

    The run's lock is held for the whole replacement, so a run being trained is refused. With
    `force`, every file of the run that was there goes (checkpoints, config, metrics, tokens,
    samples, report, curves), so that nothing describes another model; it goes only once the new
    model is safely written, so a failure (a full disk) leaves the old run whole."""
    from ..io.arrays import encode_arrays
    from ..io.layout import BEST, Claim, check_new_run_dir, clear_run, remove_temporaries, run_dir_path
    from ..io.modelfile import MODEL_FORMAT, MODEL_FORMAT_VERSION
    from ..io.writer import atomic_write_bytes

    d = run_dir_path(run_dir, "--out")
    meta = {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "model": model.config, "vocab": vocab.to_json()}
    data = encode_arrays(model.params, meta)
    check_new_run_dir(d, force, "use --force to replace it")
    claim = Claim(d)  # a run being trained is refused here, before anything in it changes
    try:
        replacing = check_new_run_dir(d, force, "use --force to replace it")  # as it is now, under the lock
        remove_temporaries(d)  # garbage of a killed process, never part of a run
        atomic_write_bytes(d / BEST, data, before_replace=(lambda: clear_run(d)) if replacing else None)
    except BaseException:
        claim.undo()
        raise
    claim.lock.release()
    return d / BEST


def _check_archive(p: Path) -> None:
    """A .keras file is a zip archive: one that is truncated or damaged is said to be so (Keras
    itself calls a file it cannot open "not found", although it is there)."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CheckpointError(f"{p}: not a loadable Keras model (truncated or damaged: not a readable zip "
                              "archive, which a .keras file is)") from None
    if bad is not None:
        raise CheckpointError(f"{p}: not a loadable Keras model (damaged: its member {bad!r} fails its checksum)")


def load_keras(path: str | Path, vocab_file: str | Path) -> tuple[CharRNN, Vocab]:
    """Read a .keras file (Keras's safe mode: no code in the file runs) and its vocabulary."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such Keras model file")
    vocab = read_vocab(vocab_file)  # before Keras is imported, which takes seconds
    _check_archive(p)
    keras = import_keras()
    try:
        km = keras.saving.load_model(p, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many kinds for a damaged or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a loadable Keras model ({first[:200]})") from None
    return model_from_keras(km, vocab, str(p)), vocab
