"""What a request to train turns into: the settings given (a config file's, overridden by the
flags or keyword arguments given) and the run directory. Shared by `charrnn train` and
`charrnn.fit`, so both mean the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..io.layout import run_dir_path
from ..settings import DATASETS, LM, check_given, read_config_file


def train_request(
    given: Mapping[str, Any],
    config_file: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    source: str | None = None,
    texts: bool = False,
) -> tuple[dict[str, Any], Path]:
    """(the settings given, run directory) of a new run. `given`: settings by name overriding the
    file's, checked by name and type (errors say `source`, or the flag when None). A setting in
    the file or in `given` is asked for even where it equals the default. `texts`: the run's text
    comes as strings (charrnn.fit(texts=...)), not from a file."""
    settings: dict[str, Any] = {}
    if config_file is not None:
        settings |= check_given(read_config_file(config_file), LM, str(config_file))
    settings |= check_given(given, LM, source)
    text = settings.get("text")
    if text is None and settings.get("dataset") is None and not texts:
        raise ConfigError(f"give a text file to train on, or --dataset {' | '.join(DATASETS)}")
    if (text is not None) + (settings.get("dataset") is not None) + texts > 1:
        raise ConfigError("give one text: a text file, --dataset or texts, not several")
    first = text[0] if isinstance(text, list) else text
    name = settings.get("dataset") or ("texts" if texts else Path(first or "").stem or "run")
    return settings, run_dir_path(out) if out is not None else fresh_run_dir(name)


def fresh_run_dir(name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3, ... when taken: without --out, an earlier run is never in the way."""
    base = Path("runs") / name
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{name}-{n}")
    return candidate
