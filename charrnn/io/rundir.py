"""Reading a run directory's files: the metrics log, the samples, the configuration and the text.

A run being written (or killed mid-write) may end in a torn line; readers skip what does not
parse rather than fail, and say how much they skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt
from ..data.text import load_encoded, split_train_val
from ..errors import CheckpointError, ConfigError, DataError

_SAMPLE_HEADER = re.compile(r"^---- step (\d+) ----$")


def run_dir_of(run: str | Path) -> Path:
    """The run directory of RUN: itself, or the folder of a checkpoint file. A path that is
    neither is refused (its parent would be some other folder: "/" for "/nonexistent")."""
    p = Path(run)
    if p.is_dir():
        return p
    if not p.is_file():
        raise CheckpointError(f"{run}: no such run directory or checkpoint")
    return p.parent


@dataclass
class Metrics:
    records: list[dict[str, Any]]
    skipped: int  # lines that did not parse (a torn last line of a killed run)


def read_metrics(run_dir: Path) -> Metrics:
    """metrics.jsonl as a list of records in file order; missing file: no records."""
    path = run_dir / ckpt.METRICS
    records, skipped = [], 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return Metrics([], 0)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(r, dict) and isinstance(r.get("step"), int):
            records.append(r)
        else:
            skipped += 1
    return Metrics(records, skipped)


def read_samples(run_dir: Path) -> list[tuple[int, str]]:
    """samples.txt as (step, text) pairs, in file order."""
    path = run_dir / ckpt.SAMPLES
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
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
    path = run_dir / ckpt.CONFIG
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable configuration ({e})") from None
    return d if isinstance(d, dict) else None


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
        raise ConfigError(f"{c.path} is a bare model file, without the run's text: {hint}")
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {ckpt.TOKENS} (the run's text): {hint}")
    enc = load_encoded(path, c.vocab, check=False)
    try:
        train_range, _ = split_train_val(len(enc), c.config.val_frac)
    except ConfigError:
        train_range = range(len(enc))
    return RunText(enc.ids, len(train_range))
