"""A language model's training checkpoint: one safetensors file (arrays.py) with the model's
parameters under their PyTorch names, the optimizer's slots as ``optim/<slot>/<param>``, the
carried state as ``state/hidden`` (and ``state/cell``), and JSON metadata with everything else
needed to continue bit for bit: format version, resolved configuration, vocabulary, the training
state (state.py: step, generators, data position, best validation loss, ...).

The run directory it lives in is described in layout.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import TrainConfig
from ..data.text import Vocab
from ..errors import CheckpointError, ConfigError
from ..model import CharRNN, cell_module
from .modelfile import expected_arrays, model_from_arrays, refuse_task_model, validate_config
from . import formats
from .arrays import read_arrays, read_header, write_arrays
from .state import TrainState
from .layout import BEST, CONFIG, LATEST, METRICS, SAMPLES, TOKENS  # noqa: F401  (a run's file names)

CHECKPOINT_FORMAT = formats.CHECKPOINT
CHECKPOINT_VERSION = formats.VERSIONS[CHECKPOINT_FORMAT]

# The carried state's first two parts (a cell's STATE: h, and the LSTM's c), under the names
# checkpoints have always used; further parts are named by the cell (`state_arrays`).
STATE_ARRAYS = ("state/hidden", "state/cell")
_OPTIM_NAME = re.compile(r"optim/([a-z_]{1,32})/(.+)")


def state_arrays(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The array names of a state with these parts (a cell's STATE), in order."""
    return STATE_ARRAYS[: len(parts)] + tuple(f"state/{p}" for p in parts[len(STATE_ARRAYS):])


@dataclass
class Checkpoint:
    """What a checkpoint file holds, checked and ready to use."""

    path: Path
    model: CharRNN
    vocab: Vocab | None  # None only for a bare model saved without one
    config: TrainConfig | None  # None for a bare model file
    state: dict[str, Any] = field(default_factory=dict)  # step, rng states, data position, ...
    optimizer_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # "<slot>/<param>"
    optimizer_meta: dict[str, Any] | None = None
    hidden: Any = None  # the state carried into the next window: (L, B, H), or a tuple of parts (the LSTM's (h, c))


def save_checkpoint(
    path: Path,
    model: CharRNN,
    vocab: Vocab,
    config: TrainConfig,
    state: dict[str, Any],
    optimizer: Any | None = None,
    hidden: Any = None,
) -> None:
    """Write a full training checkpoint atomically (temporary file, fsync, rename)."""
    arrays = dict(model.params)
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.config,
        "vocab": vocab.to_json(),
        "config": config.to_dict(),
        "state": state,
    }
    if optimizer is not None:
        opt_arrays, opt_meta = optimizer.state_dict()
        arrays.update({f"optim/{k}": v for k, v in opt_arrays.items()})
        meta["optimizer"] = opt_meta
    if hidden is not None:
        arrays.update(zip(state_arrays(model.state_parts), hidden if isinstance(hidden, tuple) else (hidden,)))
    write_arrays(path, arrays, meta)


def resolve_checkpoint(run: str | Path) -> Path:
    """RUN may be a run directory (its best checkpoint, else its latest) or a checkpoint file."""
    from .readers import check_path

    p = Path(check_path(run, CheckpointError, "run directory or checkpoint"))  # "" is no run, never "."
    if p.is_dir():
        for name in (BEST, LATEST):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no checkpoint in this directory (expected {LATEST} or {BEST})")
    if not p.exists():
        raise CheckpointError(f"{p}: no such run directory or checkpoint file")
    return p


def load_checkpoint(run: str | Path, dtype: Any = None) -> Checkpoint:
    """Load and validate a checkpoint (or a bare model file) from a run directory or file.

    The header is checked against the structure its metadata declares before any array is
    read; every problem is a CheckpointError naming the file.
    """
    path = resolve_checkpoint(run)
    src = str(path)
    meta, table = read_header(path)
    refuse_task_model(meta, src)
    mconf = validate_config(meta.get("model"), src, len(table))
    expected = expected_arrays(mconf)
    shapes = {name: shape for name, (shape, _) in expected.items()}
    vocab = None
    if "vocab" in meta or meta["format"] == CHECKPOINT_FORMAT:
        vocab = Vocab.from_json(meta.get("vocab"))
        if vocab.size != mconf["vocab_size"]:
            raise CheckpointError(f"{src}: vocabulary of {vocab.size} symbols for a model of {mconf['vocab_size']}")
    if meta["format"] != CHECKPOINT_FORMAT:
        arrays, _ = read_arrays(path, expected)
        return Checkpoint(path, model_from_arrays(arrays, mconf, dtype, src), vocab, None)

    raw = meta.get("config")
    if isinstance(raw, dict) and "cell" not in raw:  # written before the gated cells: the model says
        raw = raw | {"cell": mconf["cell"]}
    try:
        config = TrainConfig.from_dict(raw, src)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    except OverflowError:  # an integer beyond any float where a number belongs (the file may be hostile)
        raise CheckpointError(f"{src}: a configuration value is out of range") from None
    # Every check of the training state is in this one validator, so whatever loads is a state
    # the trainer can continue from.
    state = meta.get("state")
    train_state = TrainState.from_json(state, src)
    for name, (dtype_name, shape) in table.items():
        if name in expected:
            continue
        m = _OPTIM_NAME.fullmatch(name)
        if m and m.group(2) in shapes:
            expected[name] = (shapes[m.group(2)], mconf["dtype"])
        elif name in state_arrays(cell_module(mconf["cell"]).STATE):
            expected[name] = ((mconf["num_layers"], train_state.batch_size, mconf["hidden_size"]), mconf["dtype"])
        else:
            raise CheckpointError(f"{src}: unexpected array {name!r}")
    arrays, _ = read_arrays(path, expected)
    model = model_from_arrays(arrays, mconf, dtype, src)
    optimizer_arrays = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    parts = [arrays[n] for n in state_arrays(model.state_parts) if n in arrays]
    if any(not np.all(np.isfinite(a)) for a in parts):
        raise CheckpointError(f"{src}: the saved hidden state holds NaN or infinite values")
    if parts and len(parts) != len(model.state_parts):
        raise CheckpointError(f"{src}: the saved state has {len(parts)} part(s), a {model.cell} carries {len(model.state_parts)}")
    hidden = model.public_state(tuple(parts)) if parts else None
    optimizer_meta = meta.get("optimizer")
    if optimizer_meta is not None and not isinstance(optimizer_meta, dict):
        raise CheckpointError(f"{src}: malformed optimizer state")
    return Checkpoint(path, model, vocab, config, state, optimizer_arrays, optimizer_meta, hidden)
