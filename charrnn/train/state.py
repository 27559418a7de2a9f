"""The training state: the counters and positions a checkpoint carries besides the arrays.

It is written into every checkpoint's metadata as one JSON object under ``"state"``, with the
keys of the fields below, and read back through `TrainState.from_json`, the one validator of
those keys: the checkpoint loader calls it for every training checkpoint, so a file that loads
holds a state the trainer can continue from.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

# Counters with the JSON types they must have when read back. An int is accepted where a float
# belongs (JSON does not tell 1.0 from 1) and kept as it is, so a state read and written again is
# the same document.
_COUNTERS = {"step": int, "chars_seen": int, "elapsed": float, "lr_scale": float, "divergences": int}
# Counters added after the first version, with the value a checkpoint without them stands for.
_LATER_COUNTERS = {"report_steps": (int, 0), "report_loss_sum": (float, 0.0)}
# Sizes of the run, each with its least valid value: two tokens are the least text that trains.
_SIZES = {"n_tokens": 2, "batch_size": 1, "seq_len": 1}
_LOSSES = ("best_val_loss", "smoothed_loss", "val_loss", "initial_loss")
_DIGESTS = ("text_sha256", "tokens_sha256")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Bounded like an int64 so that no later arithmetic on a value from a file can overflow a float.
_LIMIT = 2**63


@dataclass
class TrainState:
    """Where a run stands; every field is saved under its own name."""

    step: int = 0  # optimizer steps taken, resumed ones included: drives the schedule and stopping
    chars_seen: int = 0  # input tokens trained on (B * T per step)
    elapsed: float = 0.0  # seconds of training over every invocation of the run, as of the last report
    lr_scale: float = 1.0  # divergence recoveries halve it; multiplies the scheduled rate
    divergences: int = 0  # NaN/inf recoveries so far, checked against --max-divergences
    best_val_loss: float | None = None  # lowest validation nats/char so far (None: not validated yet)
    best_step: int = 0  # step of best_val_loss, which best.safetensors holds; drives --patience
    smoothed_loss: float | None = None  # the reported training loss (None until the first step)
    val_loss: float | None = None  # the latest validation nats/char (None: none yet, or no validation)
    # the loss of the run's first step: a step's loss far above it counts as divergence (None: not
    # taken yet, or a checkpoint from before it was recorded)
    initial_loss: float | None = None
    # The training losses since the last metrics record, which the next record averages: saved so
    # that a run stopped between records and resumed writes the records of one that never stopped.
    report_steps: int = 0
    report_loss_sum: float = 0.0
    # Taken from the live objects at each save (see Setup.save): between saves these are stale.
    data: dict[str, Any] | None = None  # the batcher's position, Batcher.state_dict()
    sample_rng: dict[str, Any] | None = None  # the PCG64 state of the training-time sampler
    dropout_rng: dict[str, Any] | None = None  # the PCG64 state of the model's dropout masks
    # The run's shape, fixed at set-up; a resume that would change them is refused.
    batch_size: int = 0  # B after fitting the batch to the text
    seq_len: int = 0  # T after fitting the batch to the text
    n_tokens: int = 0  # tokens in the whole text, validation part included
    # SHA-256 (hex) of the training text's bytes and of tokens.bin, checked on resume (None in
    # checkpoints made before they were recorded)
    text_sha256: str | None = None
    tokens_sha256: str | None = None
    # The worker threads that shared each window's streams (threads.py), as of the last save:
    # a resume with the same count continues bit-identically (0: not recorded).
    workers: int = 0

    def to_json(self) -> dict[str, Any]:
        """The document saved in a checkpoint: every field under its own name."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any, source: str | Path) -> "TrainState":
        """Check a saved state and rebuild it; anything malformed is a CheckpointError naming
        `source` (the file may be hostile). The data position and the generator's state are
        checked where they are put to use (`Batcher.load_state_dict`, `restore_generator`), which
        know what a valid one is."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: no training state in the metadata")
        for key, kind in _COUNTERS.items():
            value = d.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise CheckpointError(f"{source}: training state {key!r} is missing or malformed")
            if value < 0 or value >= _LIMIT or (isinstance(value, float) and not math.isfinite(value)):
                raise CheckpointError(f"{source}: training state {key!r} = {value!r} is out of range")
        for key, low in _SIZES.items():
            value = d.get(key)
            if type(value) is not int or value < low:
                raise CheckpointError(f"{source}: training state {key!r} is missing or malformed")
        later = {}
        for key, (kind, default) in _LATER_COUNTERS.items():
            value = d.get(key, default)  # absent from checkpoints of earlier versions
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise CheckpointError(f"{source}: training state {key!r} is malformed")
            if abs(value) >= _LIMIT or (isinstance(value, float) and not math.isfinite(value)) or (kind is int and value < 0):
                raise CheckpointError(f"{source}: training state {key!r} = {value!r} is out of range")
            later[key] = value
        best_step = d.get("best_step", 0)  # absent from the first checkpoints of a run's history
        if type(best_step) is not int or not 0 <= best_step < _LIMIT:
            raise CheckpointError(f"{source}: training state 'best_step' = {best_step!r} is malformed")
        workers = d.get("workers", 0)  # absent from checkpoints made before the worker threads
        if type(workers) is not int or not 0 <= workers < _LIMIT:
            raise CheckpointError(f"{source}: training state 'workers' = {workers!r} is malformed")
        for key in _LOSSES:
            value = d.get(key)
            # an int is checked by size: math.isfinite cannot even convert one beyond any float
            ok = value is None or (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) < _LIMIT)
            if not ok:
                raise CheckpointError(f"{source}: training state {key!r} = {value!r} is malformed")
        for key in _DIGESTS:
            value = d.get(key)
            if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
                raise CheckpointError(f"{source}: training state {key!r} is malformed")
        # keys of other versions are dropped, as the trainer has always done on resume
        return cls(**{f.name: d.get(f.name) for f in fields(cls)} | later | {"best_step": best_step, "workers": workers})

    def __getitem__(self, key: str) -> Any:
        # Read access by the saved names (state["step"]), the way a checkpoint's raw state is read,
        # so the two can be used alike.
        if key not in _NAMES:
            raise KeyError(key)
        return getattr(self, key)


_NAMES = frozenset(f.name for f in fields(TrainState))


def restore_generator(state: Any, source: str | Path) -> np.random.Generator:
    """A PCG64 generator restored from its saved state (validated: it comes from a file)."""
    rng = np.random.default_rng(0)
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        rng.bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise CheckpointError(f"{source}: malformed random generator state ({e})") from None
    return rng
