"""Models that ship with charrnn, used by name: `charrnn sample shakespeare`, `charrnn.load("python")`.

A shipped model is a read-only model file (io/modelfile.py: parameters, structure and vocabulary)
in this folder, listed in models.json with the data it learned, that data's licence, how it was
trained and its score. `resolve` is the one place where a name becomes a file:
- a local path always wins over a shipped name (said in one line on stderr when both exist);
- a command that needs a run's own files (its metrics, its text, its optimizer state) or writes
  into a run refuses a shipped name in one line, instead of "no such run directory";
- a shipped file is checked against the sha256 in the index before it is read, so a damaged
  installation is refused by the model's name.

CHARRNN_MODELS names another folder laid out the same way (an index and its files), looked in
instead of the package's.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import CheckpointError, ConfigError, show_path
from ..io.readers import read_file, read_json, reader

FOLDER = Path(__file__).parent
INDEX = "models.json"
ENV = "CHARRNN_MODELS"
INDEX_FORMAT = "charrnn.models"
INDEX_VERSION = 1
# A shipped model's name: one plain word, so that no path with a folder or a suffix is ever taken
# for one ("runs/x", "model.safetensors", "./shakespeare").
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# A shipped file is a few MB; the bound only keeps a damaged index from making us read a huge file.
MAX_MODEL_BYTES = 256 * 2**20

Purpose = Literal["model", "run"]


@dataclass(frozen=True)
class Shipped:
    """One entry of models.json."""

    name: str
    file: str  # in the index's folder
    sha256: str
    bytes: int
    parameters: int
    data: str  # what it learned, in a few words
    licence: str  # the data's licence
    val_nats_per_char: float  # on the whole validation split of its training run
    passage: str  # a held-out passage (from the validation split) ...
    passage_nats_per_char: float  # ... and the model's score on it, checked by the tests
    command: str  # how it was trained
    time_budget_s: float
    threads: int
    steps: int


_STRINGS = ("name", "file", "sha256", "data", "licence", "passage", "command")
_COUNTS = ("bytes", "parameters", "threads", "steps")
_SCORES = ("val_nats_per_char", "passage_nats_per_char", "time_budget_s")


def _entry(raw: Any, where: str) -> Shipped:
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: every model must be an object, got {type(raw).__name__}")
    for k in _STRINGS:
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise CheckpointError(f"{where}: {k} must be a non-empty string")
    name = raw["name"]
    if not NAME.fullmatch(name):
        raise CheckpointError(f"{where}: name {name[:40]!r} is not a plain lowercase word")
    if Path(raw["file"]).name != raw["file"] or raw["file"] in (".", ".."):
        raise CheckpointError(f"{where}: file of {name!r} must be a file name in the index's folder")
    if not re.fullmatch(r"[0-9a-f]{64}", raw["sha256"]):
        raise CheckpointError(f"{where}: sha256 of {name!r} must be 64 lowercase hex digits")
    for k in _COUNTS:
        v = raw.get(k)
        if type(v) is not int or not 0 < v <= 2**53:  # a count a float still holds exactly (JSON readers elsewhere)
            raise CheckpointError(f"{where}: {k} of {name!r} must be a positive integer")
    for k in _SCORES:
        v = raw.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e6:
            raise CheckpointError(f"{where}: {k} of {name!r} must be a positive number")
    return Shipped(**{k: raw[k] for k in Shipped.__dataclass_fields__})


@reader("shipped models index (models.json)", "json")
def read_index(path: Any) -> dict[str, Shipped]:
    """name -> entry of a models.json, every field checked (a damaged installation is refused by name)."""
    where = show_path(path)
    doc = read_json(path, CheckpointError, "shipped models index")
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where}: the index must be a JSON object")
    if doc.get("format") != INDEX_FORMAT or doc.get("version") != INDEX_VERSION:
        raise CheckpointError(f"{where}: not a {INDEX_FORMAT} index of version {INDEX_VERSION}")
    models = doc.get("models")
    if not isinstance(models, list):
        raise CheckpointError(f"{where}: models must be a list")
    out: dict[str, Shipped] = {}
    for raw in models:
        m = _entry(raw, where)
        if m.name in out:
            raise CheckpointError(f"{where}: the model {m.name!r} is listed twice")
        out[m.name] = m
    return out


def folder() -> Path:
    """Where shipped models are looked up: CHARRNN_MODELS, else the package's own folder."""
    return Path(os.environ[ENV]) if os.environ.get(ENV) else FOLDER


def shipped() -> dict[str, Shipped]:
    """name -> entry of every shipped model."""
    return read_index(folder() / INDEX)


def model_path(name: str) -> Path:
    """The file of the shipped model `name`, checked against its sha256: a damaged or missing file
    is refused by the model's name."""
    models = shipped()
    if name not in models:
        raise CheckpointError(f"no shipped model named {name!r} (shipped: {', '.join(sorted(models)) or 'none'})")
    m = models[name]
    path = folder() / m.file
    try:
        data = read_file(path, CheckpointError, "shipped model", MAX_MODEL_BYTES)
    except CheckpointError as e:
        raise CheckpointError(f"shipped model {name!r} cannot be read ({e}): reinstall charrnn") from None
    if hashlib.sha256(data).hexdigest() != m.sha256:
        raise CheckpointError(f"shipped model {name!r} is damaged ({show_path(path)} does not match the sha256 in "
                              f"{INDEX}): reinstall charrnn")
    return path


def _quiet_names() -> set[str]:
    """The shipped names, or none when the index cannot be read (a local path is used either way)."""
    try:
        return set(shipped())
    except CheckpointError:
        return set()


def notice(message: str) -> None:
    """One line on stderr that cannot fail (stderr may be closed)."""
    try:
        print(message, file=sys.stderr)
    except (OSError, ValueError):
        pass


def resolve(path_or_name: Any, purpose: Purpose = "model", why: str = "") -> Any:
    """What a command or `charrnn.load` should open for `path_or_name`.

    An existing local path is returned as it is (with a notice on stderr when it is also a shipped
    model's name). Otherwise a shipped model's name is, for `purpose` "model", its checked file;
    for "run" (the caller needs a run's own files, or writes into a run: `why` says what) a
    ConfigError in one line. A plain word that is neither is, for "model", a CheckpointError that
    names the shipped models' list; anything else is returned as it is, for the caller to refuse as
    it always has."""
    try:
        s = os.fspath(path_or_name)
    except TypeError:
        return path_or_name
    if not isinstance(s, str) or not NAME.fullmatch(s):
        return path_or_name
    names = _quiet_names()
    if os.path.lexists(s):
        if s in names:
            notice(f"charrnn: {s!r} is both a local path and a shipped model: using the local path ./{s}")
        return path_or_name
    if s not in names:
        if purpose == "model":
            raise CheckpointError(f"{s}: no such run directory or checkpoint file, nor a shipped model (charrnn models "
                                  "lists them)")
        return path_or_name
    if purpose == "run":
        raise ConfigError(f"{s!r} is a shipped model, not a run directory: {why or 'this needs a run of your own'}")
    return model_path(s)
