"""What a request to train turns into: the configuration (defaults < a config file < the settings
given) and the run directory. Shared by `charrnn train` and `charrnn.fit`, so both mean the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..settings import DATASETS, TrainConfig, apply_overrides, read_config_file
from ..errors import ConfigError
from ..io.rundir import run_dir_path


def train_request(
    given: dict[str, Any],
    config_file: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    source: str | None = None,
) -> tuple[TrainConfig, Path, frozenset[str]]:
    """(configuration, run directory, the names of the settings given) of a new run. `given`:
    settings by name overriding the file's: `fit`'s keyword arguments, checked by name and type
    (errors say `source`), or with source None the command line's flags, which argparse has typed
    already (and `validate` then names by their flag). A setting in the file or in `given` is
    asked for even where it equals the default."""
    cfg = TrainConfig()
    asked = set(given)
    if config_file is not None:
        from_file = read_config_file(config_file)
        cfg = apply_overrides(cfg, from_file, str(config_file))
        asked |= set(from_file)
    cfg = apply_overrides(cfg, given, source) if source is not None else cfg.replace(**given)
    if cfg.text is None and cfg.dataset is None:
        raise ConfigError(f"give a text file to train on, or --dataset {' | '.join(DATASETS)}")
    if cfg.text is not None and cfg.dataset is not None:
        raise ConfigError("give either a text file or --dataset, not both")
    run_dir = run_dir_path(out) if out is not None else fresh_run_dir(cfg.dataset or Path(cfg.text or "").stem or "run")
    return cfg, run_dir, frozenset(asked)


def fresh_run_dir(name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3, ... when taken: without --out, an earlier run is never in the way."""
    base = Path("runs") / name
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{name}-{n}")
    return candidate
