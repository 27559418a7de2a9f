"""Reading a run directory's files: the metrics log, the samples, the configuration and the text.

Every file is read through io/readers.py (a regular file only, a size limit, strict UTF-8 and JSON)
and every field that `plot`, `report` and `sample --novelty` use is checked for its type and range
here, so that a damaged or hostile run directory is one line, never a traceback. A run being written
(or killed mid-write) may end in a torn line: the metrics log skips a line that is not a valid
record and counts it, and a torn last sample shows its damaged bytes as U+FFFD.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt
from .readers import MAX_DATA_BYTES, check_path, decode_text, parse_json, read_file, read_json, reader, text_lines
from ..data.text import load_encoded, split_train_val
from ..errors import CheckpointError, ConfigError, DataError, show_path
from ..core import cell_names

_SAMPLE_HEADER = re.compile(r"^---- step (\d{1,18}) ----$")
# A recorded loss, rate or norm beyond this is no measurement (and a figure's axes computed from a
# value near a float's end overflow); NaN and infinity are a diverged step's, drawn as gaps.
MAX_RECORDED = 1e100
MAX_STEP = 2**53  # a step stays exact as a float, as a figure's x axis holds it
# The numbers of a metrics record that plot and report read.
_MEASURED = ("train_loss", "smoothed_loss", "val_nats_per_char", "val_bits_per_char", "lr", "grad_norm")
MAX_PARAMETERS = 4096  # entries of a record's per-parameter gradient norms
MAX_LAYERS, MAX_GATE_BLOCKS = 4096, 16  # of a record's spectral radii, [layer][gate block]


def run_dir_of(run: Any) -> Path:
    """The run directory of RUN: itself, or the folder of a checkpoint file in one."""
    p = Path(check_path(run, ConfigError, "run"))
    if p.is_dir():
        return p
    if not p.is_file():  # a missing path's parent would be some other folder ("/" for "/nonexistent")
        raise ConfigError(f"{show_path(p)}: no such run directory or checkpoint")
    return p.parent


@dataclass
class Metrics:
    records: list[dict[str, Any]]
    skipped: int  # lines that are not a valid record (a torn last line of a killed run, a damaged one)


def _measured(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isnan(v) or v == math.inf or 0 <= v <= MAX_RECORDED


def valid_record(r: Any) -> bool:
    """Whether `r` is a metrics record whose every field that plot and report read has its type and
    range: a step, measured numbers, per-parameter norms by name, spectral radii by [layer][block]."""
    if not isinstance(r, dict):
        return False
    step = r.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        return False
    if not all(_measured(r.get(k)) for k in _MEASURED):
        return False
    if (r.get("val_nats_per_char") is None) != (r.get("val_bits_per_char") is None):  # one loss, two units
        return False
    norms = r.get("grad_norms")
    if norms is not None and not (isinstance(norms, dict) and len(norms) <= MAX_PARAMETERS
                                  and all(_measured(v) and v is not None for v in norms.values())):
        return False
    radii = r.get("spectral_radius")
    if radii is not None and not (isinstance(radii, list) and 0 < len(radii) <= MAX_LAYERS and all(
            isinstance(layer, list) and 0 < len(layer) <= MAX_GATE_BLOCKS
            and all(_measured(v) and v is not None for v in layer) for layer in radii)):
        return False
    return True


def read_metrics(run_dir: Path) -> Metrics:
    """metrics.jsonl as a list of records in file order; missing file: no records."""
    path = run_dir / ckpt.METRICS
    if not path.exists() and not path.is_symlink():
        return Metrics([], 0)
    return read_metrics_file(path)


@reader("metrics log (metrics.jsonl)", "json lines", tolerant=True)
def read_metrics_file(path: Any) -> Metrics:
    """The valid records of a metrics log (see `valid_record`), with the number of lines skipped.
    NaN and Infinity are read: the trainer writes them for a step that diverged."""
    records, skipped = [], 0
    for _, line in text_lines(path, DataError, "metrics log", strict=False):
        if line is None:
            skipped += 1
        elif line.strip():
            try:
                r = parse_json(line, "", DataError, constants=True)
            except DataError:
                r = None
            if valid_record(r):
                records.append(r)
            else:
                skipped += 1
    return Metrics(records, skipped)


def read_samples(run_dir: Path) -> list[tuple[int, str]]:
    """samples.txt as (step, text) pairs, in file order; missing file: none."""
    path = run_dir / ckpt.SAMPLES
    if not path.exists() and not path.is_symlink():
        return []
    return read_samples_file(path)


@reader("samples (samples.txt)", "text")
def read_samples_file(path: Any) -> list[tuple[int, str]]:
    """The samples of a samples file, as (step, text) pairs in file order. Text that a killed run
    tore mid-character shows U+FFFD where its bytes were."""
    data = read_file(path, DataError, "samples file", MAX_DATA_BYTES, allow_empty=True)
    try:
        text = decode_text(data, show_path(path))
    except DataError:
        text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    out: list[tuple[int, list[str]]] = []
    for line in text.split("\n"):
        m = _SAMPLE_HEADER.match(line)
        if m:
            out.append((int(m.group(1)), []))
        elif out:
            out[-1][1].append(line)
    # each sample is written followed by one newline: drop the empty line it leaves
    return [(step, "\n".join(lines[:-1] if lines and lines[-1] == "" else lines)) for step, lines in out]


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """config.json of a run directory, or None when it has none yet."""
    path = run_dir / ckpt.CONFIG
    if not path.exists() and not path.is_symlink():
        return None
    return read_run_config(path)


@reader("run configuration (config.json)", "json")
def read_run_config(path: Any) -> dict[str, Any]:
    """A run's config.json: an object, whose cell (what plot and report read of it) names a cell.
    It is a record of what ran, shown by `report`; training reads its settings from the checkpoint."""
    d = read_json(path, CheckpointError, "run configuration")
    where = show_path(path)
    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: a run's configuration must be a JSON object")
    cell = d.get("cell")
    if cell is not None and cell not in cell_names():
        raise CheckpointError(f"{where}: cell must be one of {', '.join(cell_names())}, got {_short(cell)}")
    return d


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:40] + "..."


@dataclass
class RunText:
    """The run's text as token ids (memory-mapped) and where its training part ends."""

    ids: np.ndarray  # (N,)
    n_train: int  # ids[:n_train] trained on, ids[n_train:] held out for validation

    @property
    def train(self) -> np.ndarray:
        return self.ids[: self.n_train]

    @property
    def val(self) -> np.ndarray:
        return self.ids[self.n_train :]


def run_text(c: Any, hint: str = "give the text with --text FILE") -> RunText:
    """The text of the run that checkpoint `c` belongs to, from its run directory's tokens.bin.
    `hint` ends the error when there is none."""
    run_dir = c.path.parent
    path = run_dir / ckpt.TOKENS
    if c.config is None or c.vocab is None:
        raise ConfigError(f"{show_path(c.path)} is a bare model file, without the run's text: {hint}")
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"{show_path(run_dir)} has no {ckpt.TOKENS} (the run's text): {hint}")
    enc = load_encoded(path, c.vocab)  # every id checked: a foreign tokens.bin is named, not decoded
    try:
        train_range, _ = split_train_val(len(enc), c.config.val_frac)
    except ConfigError:
        train_range = range(len(enc))
    return RunText(enc.ids, len(train_range))
