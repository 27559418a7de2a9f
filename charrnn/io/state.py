"""The training state: the counters and positions a checkpoint carries besides the arrays, for
every objective (language model, classifier, tagger).

It is written into every checkpoint's metadata as one JSON object under ``"state"``, with the keys
of the fields below that belong to the run's objective, and read back through
`TrainState.from_json`, the one validator of those keys: the checkpoint loaders call it for every
training checkpoint, so a file that loads holds a state the trainer can continue from.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

LM, TASK = "lm", "task"  # which objectives a field belongs to (both when not said)
# Bounded like an int64 so that no later arithmetic on a value from a file can overflow a float.
_LIMIT = 2**63
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The number of steps a loss average of a checkpoint from before the bias correction stands for:
# so many that the correction is 1 (the average is used as it is).
_UNCORRECTED = 1 << 30


@dataclass
class TrainState:
    """Where a run stands; every field is saved under its own name."""

    step: int = 0  # optimizer steps taken, resumed ones included: drives the schedule and stopping
    elapsed: float = 0.0  # seconds of training over every invocation of the run, as of the last report
    lr_scale: float = 1.0  # divergence recoveries halve it; multiplies the scheduled rate
    divergences: int = 0  # NaN/inf recoveries so far, checked against --max-divergences
    best_val_loss: float | None = None  # lowest validation loss so far (None: not validated yet)
    best_step: int = 0  # step of best_val_loss, which best.safetensors holds; drives --patience
    # The reported training loss: the exponential average of the steps' losses (loss_average, over
    # averaged_steps steps) divided by 1 - smooth^averaged_steps, so that it starts at the first
    # step's loss instead of creeping up or down from a guess (None until the first step).
    smoothed_loss: float | None = None
    loss_average: float | None = None
    averaged_steps: int = 0
    val_loss: float | None = None  # the latest validation loss (None: none yet, or no validation)
    # the loss of the run's first step: a smoothed loss far above it counts as divergence
    initial_loss: float | None = None
    # The training losses since the last metrics record, which the next record averages: saved so
    # that a run stopped between records and resumed writes the records of one that never stopped.
    report_steps: int = 0
    report_loss_sum: float = 0.0
    # Taken from the live objects at each save: between saves these are stale.
    data: dict[str, Any] | None = None  # the batcher's position
    dropout_rng: dict[str, Any] | None = None  # the PCG64 state of the model's dropout masks
    # The worker threads that shared each step's streams, as of the last save: a resume with the
    # same count continues bit-identically (0: not recorded).
    workers: int = 0
    # Seconds per training step, measured once over the first steps (0: not yet) and turned into
    # the step intervals of eval_seconds / sample_seconds: kept so that a resume does not measure
    # again, and a run continues with the intervals it chose.
    step_seconds: float = 0.0
    # ---- the language model's
    chars_seen: int = 0  # input tokens trained on (B * T per step)
    sample_rng: dict[str, Any] | None = None  # the PCG64 state of the training-time sampler
    batch_size: int = 0  # B after fitting the batch to the text (fixed at set-up)
    seq_len: int = 0  # T after fitting the batch to the text (fixed at set-up)
    n_tokens: int = 0  # tokens in the whole text, validation part included
    # SHA-256 (hex) of the training text's bytes and of tokens.bin, checked on resume (None in
    # checkpoints made before they were recorded)
    text_sha256: str | None = None
    tokens_sha256: str | None = None
    # the files of a text made of several ([{"path", "size"}]; None: one file, or a built-in corpus)
    files: list[dict[str, Any]] | None = None
    # ---- the classifier's and tagger's
    examples_seen: int = 0  # texts trained on
    val_accuracy: float | None = None  # the latest validation accuracy (teacher-forced for a tagger with R)
    val_free_accuracy: float | None = None  # a tagger with R's on its own previous tags (greedy); else None
    digests: dict[str, str] | None = None  # sha256 of the data files read: a resume must read the same
    max_length: int = 0  # the longest training text, for eval's note on longer ones

    def to_json(self, objective: str = LM) -> dict[str, Any]:
        """The document saved in a checkpoint: every field of the objective under its own name."""
        return {k: v for k, v in asdict(self).items() if objective in _SPEC[k][2]}

    @classmethod
    def from_json(cls, d: Any, source: str | Path, objective: str = LM) -> "TrainState":
        """Check a saved state and rebuild it; anything malformed is a CheckpointError naming
        `source` (the file may be hostile). The data position and the generators' states are
        checked where they are put to use (the batchers' `load_state_dict`, `restore_generator`),
        which know what a valid one is. Keys of other versions are dropped."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: no training state in the metadata")
        values: dict[str, Any] = {}
        for f in fields(cls):
            kind, required, objectives = _SPEC[f.name]
            if objective not in objectives:
                continue
            value = d.get(f.name, _MISSING)
            if value is _MISSING:
                if required:
                    raise CheckpointError(f"{source}: training state {f.name!r} is missing or malformed")
                continue
            values[f.name] = _check(f.name, kind, value, source)
        if objective == LM:
            for key, low in (("n_tokens", 2), ("batch_size", 1), ("seq_len", 1)):
                if values[key] < low:
                    raise CheckpointError(f"{source}: training state {key!r} is missing or malformed")
        if values.get("loss_average") is None and values.get("smoothed_loss") is not None:
            # a checkpoint from before the bias correction: its smoothed loss is the average itself
            values["loss_average"], values["averaged_steps"] = values["smoothed_loss"], _UNCORRECTED
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        # Read access by the saved names (state["step"]), the way a checkpoint's raw state is read,
        # so the two can be used alike.
        if key not in _SPEC:
            raise KeyError(key)
        return getattr(self, key)


_MISSING = object()
_BOTH = (LM, TASK)
# field -> (kind, required in a checkpoint of its objective, objectives). Kinds: "count" (int >= 0),
# "number" (finite, int or float), "loss" (finite number or None), "rng" / "position" (a dict or
# None, checked where used), "sha" (hex digest or None), "digests" (name -> hex digest).
_SPEC: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "step": ("count", True, _BOTH), "elapsed": ("number", True, _BOTH), "lr_scale": ("number", True, _BOTH),
    "divergences": ("count", True, _BOTH), "best_val_loss": ("loss", False, _BOTH),
    "best_step": ("count", False, _BOTH), "smoothed_loss": ("loss", False, _BOTH),
    "loss_average": ("loss", False, _BOTH), "averaged_steps": ("count", False, _BOTH),
    "val_loss": ("loss", False, _BOTH), "initial_loss": ("loss", False, _BOTH),
    "report_steps": ("count", False, _BOTH), "report_loss_sum": ("signed", False, _BOTH),
    "data": ("position", False, _BOTH), "dropout_rng": ("rng", False, _BOTH), "workers": ("count", False, _BOTH),
    "step_seconds": ("number", False, _BOTH),
    "chars_seen": ("count", True, (LM,)), "sample_rng": ("rng", False, (LM,)),
    "batch_size": ("count", True, (LM,)), "seq_len": ("count", True, (LM,)), "n_tokens": ("count", True, (LM,)),
    "text_sha256": ("sha", False, (LM,)), "tokens_sha256": ("sha", False, (LM,)),
    "files": ("files", False, (LM,)),
    "examples_seen": ("count", False, (TASK,)), "val_accuracy": ("fraction", False, (TASK,)),
    "val_free_accuracy": ("fraction", False, (TASK,)),
    "digests": ("digests", False, (TASK,)), "max_length": ("count", False, (TASK,)),
}


def _check(name: str, kind: str, value: Any, source: str | Path) -> Any:
    bad = CheckpointError(f"{source}: training state {name!r} = {_short(value)} is malformed")
    if kind == "count":
        if type(value) is not int or not 0 <= value < _LIMIT:
            raise bad
    elif kind in ("number", "signed"):
        # an int is checked by size: math.isfinite cannot even convert one beyond any float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= _LIMIT:
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
        if kind == "number" and value < 0:
            raise CheckpointError(f"{source}: training state {name!r} = {value!r} is out of range")
    elif kind in ("loss", "fraction"):
        ok = value is None or (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) < _LIMIT)
        if not ok or (kind == "fraction" and value is not None and not 0 <= value <= 1):
            raise bad
    elif kind in ("rng", "position"):
        if value is not None and not isinstance(value, dict):
            raise bad
    elif kind == "sha":
        if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
            raise bad
    elif kind == "files":
        if value is not None and not (isinstance(value, list) and 1 <= len(value) <= 1 << 20 and all(
                isinstance(f, dict) and isinstance(f.get("path"), str) and type(f.get("size")) is int
                and 0 <= f["size"] < _LIMIT for f in value)):
            raise bad
    elif kind == "digests":
        if value is not None and not (isinstance(value, dict) and len(value) <= 8 and all(
                isinstance(k, str) and isinstance(v, str) and _HEX64.fullmatch(v) for k, v in value.items())):
            raise bad
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
