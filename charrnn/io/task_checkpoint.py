"""A classifier's or tagger's checkpoint: one safetensors file (arrays.py) with the parameters
under the table's names, the optimizer's slots as ``optim/<slot>/<param>``, and JSON metadata:
format, task, model structure, the character and label sets, the resolved configuration and the
training state (state.py). Its run directory is laid out as a language model's (layout.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import resolve_checkpoint
from ..errors import CheckpointError, ConfigError
from ..model import CharClassifier, CharTagger
from ..model.lm import check_dropout, check_stack
from ..model.params import INITS, MAX_PARAMETERS, check_cell, check_size, count_parameters, parameter_shapes, resolve_dtype
from . import formats
from .arrays import read_arrays, read_header, write_arrays
from .state import TASK as TASK_STATE, TrainState
from ..settings import TaskConfig
from ..data.labelled import Labels, Symbols

TASK_FORMAT = formats.TASK
TASK_VERSION = formats.VERSIONS[TASK_FORMAT]
_OPTIM_NAME = re.compile(r"optim/([a-z_]{1,32})/(.+)")
MODELS = {"classify": CharClassifier, "tag": CharTagger}


@dataclass
class TaskCheckpoint:
    path: Path
    task: str
    model: Any  # CharClassifier or CharTagger
    symbols: Symbols
    labels: Labels
    config: TaskConfig
    state: dict[str, Any] = field(default_factory=dict)
    optimizer_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer_meta: dict[str, Any] | None = None


def build_model(task: str, mconf: dict[str, Any], params: dict[str, np.ndarray] | None = None, seed: int | None = 0):
    kw = dict(hidden_size=mconf["hidden_size"], num_layers=mconf["num_layers"], dtype=mconf["dtype"], seed=seed,
              init=mconf["init"], cell=mconf["cell"], dropout=mconf["dropout"],
              residual=mconf.get("residual", False), layer_norm=mconf.get("layer_norm", False), params=params)
    if task == "tag":
        kw["feedback"] = mconf["feedback"]
    return MODELS[task](mconf["vocab_size"], mconf["num_outputs"], **kw)


def save_task_checkpoint(path: Path, model: Any, symbols: Symbols, labels: Labels, cfg: TaskConfig,
                         state: dict[str, Any], optimizer: Any | None = None) -> None:
    arrays = dict(model.params)
    meta: dict[str, Any] = {"format": TASK_FORMAT, "version": TASK_VERSION, "task": model.task, "model": model.config,
                            "symbols": symbols.chars, "labels": labels.names, "config": cfg.to_dict(), "state": state}
    if optimizer is not None:
        opt_arrays, opt_meta = optimizer.state_dict()
        arrays.update({f"optim/{k}": v for k, v in opt_arrays.items()})
        meta["optimizer"] = opt_meta
    write_arrays(path, arrays, meta)


def _model_config(task: str, m: Any, src: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise CheckpointError(f"{src}: no model configuration in the metadata")
    try:
        out = {
            "vocab_size": check_size("vocab_size", m.get("vocab_size")),
            "num_outputs": check_size("num_outputs", m.get("num_outputs"), minimum=2),
            "hidden_size": check_size("hidden_size", m.get("hidden_size")),
            "num_layers": check_size("num_layers", m.get("num_layers")),
            "dtype": resolve_dtype(m.get("dtype")),
            "init": m.get("init"),
            "cell": check_cell(m.get("cell")),
            "dropout": check_dropout(m.get("dropout")),
            "feedback": m.get("feedback"),
            # absent from checkpoints made before the stack's options: neither
            **check_stack(m.get("residual", False), m.get("layer_norm", False)).config(),
        }
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{src}: bad model configuration: {e}") from None
    if out["init"] not in INITS or not isinstance(out["feedback"], bool) or (out["feedback"] and task != "tag"):
        raise CheckpointError(f"{src}: bad model configuration")
    n = count_parameters(out["vocab_size"], out["hidden_size"], out["num_layers"], out["cell"], out["num_outputs"],
                         out["feedback"], out["layer_norm"])
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{src}: bad model configuration: {n:,} parameters is implausibly large")
    return out


def load_task_checkpoint(run: str | Path, task: str | None = None) -> TaskCheckpoint:
    """A task run's checkpoint (its best, else its latest, for a directory), checked before any
    array is read; `task`, when given, must be the file's."""
    path = resolve_checkpoint(run)
    src = str(path)
    meta, table = read_header(path)
    if meta.get("format") != TASK_FORMAT:
        raise CheckpointError(f"{src}: a language model, not a classifier or tagger (use charrnn sample / eval)")
    kind = meta.get("task")
    if kind not in MODELS:
        raise CheckpointError(f"{src}: unknown task {kind!r}")
    if task is not None and kind != task:
        raise CheckpointError(f"{src}: a {kind} model, not a {task} one: use charrnn {kind}")
    mconf = _model_config(kind, meta.get("model"), src)
    symbols = Symbols.from_json(meta.get("symbols"), src)
    labels = Labels.from_json(meta.get("labels"), src)
    if symbols.size != mconf["vocab_size"] or labels.size != mconf["num_outputs"]:
        raise CheckpointError(f"{src}: the character or label set does not match the model")
    try:
        config = TaskConfig.from_dict(meta.get("config"), src)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    shapes = parameter_shapes(mconf["vocab_size"], mconf["hidden_size"], mconf["num_layers"], mconf["cell"],
                              mconf["num_outputs"], mconf["feedback"], mconf["layer_norm"])
    expected = {n: (s, mconf["dtype"]) for n, s in shapes.items()}
    for name in table:
        if name in expected:
            continue
        m = _OPTIM_NAME.fullmatch(name)
        if not (m and m.group(2) in shapes):
            raise CheckpointError(f"{src}: unexpected array {name!r}")
        expected[name] = (shapes[m.group(2)], mconf["dtype"])
    arrays, _ = read_arrays(path, expected)
    for n in shapes:
        if not np.all(np.isfinite(arrays[n])):
            raise CheckpointError(f"{src}: parameter {n} holds NaN or infinite values")
    params = {n: np.array(arrays[n], order="C") for n in shapes}
    model = build_model(kind, mconf, params)
    state = meta.get("state")
    TrainState.from_json(state, src, TASK_STATE)  # every field checked, as the language model's loader does
    opt_meta = meta.get("optimizer")
    if opt_meta is not None and not isinstance(opt_meta, dict):
        raise CheckpointError(f"{src}: malformed optimizer state")
    opt_arrays = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    return TaskCheckpoint(path, kind, model, symbols, labels, config, state, opt_arrays, opt_meta)
