"""Reading and writing a model: parameters in safetensors (no code can run on load), structure in
JSON metadata. The model knows arrays, not files; `CharRNN.save` / `CharRNN.load` call these.

Files may come from anyone: the structure in the metadata is checked field by field, and the
file's array table against the shapes it implies, before any array is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..model import CharRNN, MAX_PARAMETERS, count_parameters, parameter_shapes, resolve_dtype
from ..model.lm import check_dropout, check_stack
from ..model.params import INITS, cell_module, check_cell, check_size
from . import formats
from .arrays import read_arrays, read_header, write_arrays

MODEL_FORMAT = formats.MODEL
MODEL_FORMAT_VERSION = formats.VERSIONS[MODEL_FORMAT]


def save_model(model: CharRNN, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write the parameters and configuration to `path` (safetensors, written atomically)."""
    meta = {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "model": model.config}
    if metadata:
        meta["extra"] = metadata
    write_arrays(path, model.params, meta)


def load_model(path: str | Path, dtype: Any = None) -> CharRNN:
    """Read a model written by `save_model` (or a training checkpoint); `dtype` converts on load."""
    meta, table = read_header(path)
    refuse_task_model(meta, str(path))
    config = validate_config(meta.get("model"), str(path), len(table))
    arrays, _ = read_arrays(path, expected_arrays(config), allow_extra=True)
    return model_from_arrays(arrays, config, dtype=dtype, source=str(path))


def refuse_task_model(meta: dict[str, Any], source: str) -> None:
    """A classifier's or tagger's file named where a language model belongs."""
    if meta.get("format") == formats.TASK:
        task = meta.get("task") if meta.get("task") in ("classify", "tag") else "classify"
        raise CheckpointError(f"{source}: a {task} model, not a language model: use charrnn {task} eval / predict")


def expected_arrays(config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, dtype) of the parameters a validated configuration implies."""
    shapes = parameter_shapes(config["vocab_size"], config["hidden_size"], config["num_layers"], config["cell"],
                              layer_norm=config["layer_norm"])
    return {name: (shape, config["dtype"]) for name, shape in shapes.items()}


def model_from_arrays(
    arrays: dict[str, np.ndarray], config: Any, dtype: Any = None, source: str = "checkpoint"
) -> CharRNN:
    """Rebuild a model from its configuration and parameter arrays, checking both."""
    config = validate_config(config, source)
    params = {}
    for name, (shape, want_dtype) in expected_arrays(config).items():
        if name not in arrays:
            missing = [n for n in expected_arrays(config) if n not in arrays]
            raise CheckpointError(f"{source}: missing parameters {', '.join(missing)}")
        a = np.asarray(arrays[name])
        if a.shape != shape:
            raise CheckpointError(f"{source}: parameter {name} has shape {a.shape}, expected {shape}")
        if a.dtype != want_dtype:
            raise CheckpointError(f"{source}: parameter {name} is {a.dtype}, the metadata says {want_dtype}")
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{source}: parameter {name} holds NaN or infinite values")
        params[name] = np.array(a, dtype=resolve_dtype(dtype) if dtype is not None else want_dtype, order="C")
    return CharRNN(
        config["vocab_size"], config["hidden_size"], config["num_layers"],
        dtype if dtype is not None else config["dtype"], init=config["init"],
        cell=config["cell"], dropout=config["dropout"], residual=config["residual"], layer_norm=config["layer_norm"],
        params=params,
    )


def validate_config(config: Any, source: str, n_arrays: int | None = None) -> dict[str, Any]:
    """A model configuration read from a file, checked field by field (it may be hostile).

    Files written before the LSTM and GRU cells arrived have no "cell" or "dropout": they are
    tanh RNNs without dropout; files written before the stack's options have no "residual" or
    "layer_norm": their stacks have neither. `n_arrays`, the number of arrays the file holds, bounds the layer
    count before the shape table (the cell's parameters per layer, and the head's two) is built: a
    tiny file cannot make us build a huge one."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: no model configuration in the metadata")
    try:
        out = {
            "vocab_size": check_size("vocab_size", config.get("vocab_size"), minimum=2),
            "hidden_size": check_size("hidden_size", config.get("hidden_size")),
            "num_layers": check_size("num_layers", config.get("num_layers")),
            "dtype": resolve_dtype(config.get("dtype")),
            "init": config.get("init", "pytorch"),
            "cell": check_cell(config.get("cell", "rnn")),
            "dropout": check_dropout(config.get("dropout", 0.0)),
            **check_stack(config.get("residual", False), config.get("layer_norm", False)).config(),
        }
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{source}: bad model configuration: {e}") from None
    if out["init"] not in INITS:
        raise CheckpointError(f"{source}: bad model configuration: unknown init {out['init']!r}")
    if n_arrays is not None and len(cell_module(out["cell"]).PARAMS) * out["num_layers"] + 2 > n_arrays:
        raise CheckpointError(
            f"{source}: the metadata declares {out['num_layers']:,} layers but the file holds only {n_arrays} arrays"
        )
    n = count_parameters(out["vocab_size"], out["hidden_size"], out["num_layers"], out["cell"],
                         layer_norm=out["layer_norm"])
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{source}: bad model configuration: {n:,} parameters is implausibly large")
    return out
