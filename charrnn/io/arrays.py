"""Arrays plus JSON metadata in one safetensors file: written atomically, read defensively.

safetensors holds raw little-endian arrays behind a JSON header, so loading a file can never run
code (unlike pickle). Our own metadata rides in the header's string-to-string `__metadata__` map
under one key, as a JSON document that names its format and version.

Files may come from anyone: `read_arrays` checks the header (format, version, names, dtypes,
shapes, sizes) before any array is read, and every failure becomes a one-line CheckpointError.

Files are put in place by the one writer, `charrnn.io.writer`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, show_path
from .formats import VERSIONS as KNOWN_FORMATS
from .readers import check_path, reader
from .readers import parse_json as _parse_json
from .writer import atomic_write_bytes

META_KEY = "charrnn"
# Formats this version reads, with the newest version of each it understands.
ALLOWED_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8, "U32": np.uint32}
MAX_METADATA_BYTES = 64 * 2**20


def parse_json(text: str | bytes, what: str) -> Any:
    """Strict JSON (io/readers.py): nesting, duplicate keys, NaN / Infinity, numbers beyond a
    float's range and lone surrogates are refused, as is anything that is not a JSON document."""
    return _parse_json(text, f"{what}: metadata", CheckpointError)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=False, separators=(",", ":"))


def encode_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """`arrays` with `meta` (which must carry "format" and "version") as the bytes of a file."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={META_KEY: dump_json(meta)})


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Save `arrays` with `meta` atomically to `path` (see `encode_arrays`)."""
    atomic_write_bytes(path, encode_arrays(arrays, meta))


@reader("checkpoint or model file", "safetensors")
def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[str, tuple[int, ...]]]]:
    """The metadata and the (dtype, shape) table of a file, read without loading any array."""
    from safetensors import safe_open

    p = Path(check_path(path, CheckpointError, "checkpoint"))
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    if p.stat().st_size < 8:
        raise CheckpointError(f"{p}: empty or truncated file, not a checkpoint")
    try:
        with safe_open(str(p), framework="numpy") as f:
            raw = f.metadata() or {}
            table = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # the parser's errors for a foreign or damaged file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{p}: not a readable checkpoint ({reason})") from None
    text = raw.get(META_KEY)
    if not isinstance(text, str):
        raise CheckpointError(f"{p}: not a charrnn file (no '{META_KEY}' metadata)")
    if len(text) > MAX_METADATA_BYTES:
        raise CheckpointError(f"{p}: metadata is implausibly large")
    meta = parse_json(text, show_path(p))
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: metadata must be a JSON object")
    fmt, version = meta.get("format"), meta.get("version")
    if not isinstance(fmt, str) or fmt not in KNOWN_FORMATS:
        raise CheckpointError(f"{p}: unknown format {fmt!r}, not a charrnn file")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{p}: bad format version {version!r}")
    if version > KNOWN_FORMATS[fmt]:
        raise CheckpointError(
            f"{p}: written by a newer charrnn ({fmt} version {version}, this one reads up to "
            f"{KNOWN_FORMATS[fmt]}); upgrade charrnn to load it"
        )
    for name, (dtype, _) in table.items():
        if dtype not in ALLOWED_DTYPES:
            raise CheckpointError(f"{p}: array {name} has unsupported dtype {dtype}")
    return meta, table


def read_arrays(
    path: str | Path,
    expected: dict[str, tuple[tuple[int, ...], Any]] | None = None,
    allow_extra: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a file written by `write_arrays`: (arrays, metadata).

    `expected`, when given, maps array names to (shape, dtype) checked against the header
    before anything is read, and only those arrays are loaded; names outside it are refused
    unless `allow_extra` (a training checkpoint read as a bare model), missing ones always.
    """
    from safetensors import safe_open

    meta, table = read_header(path)
    p = Path(path)
    names = list(table)
    if expected is not None:
        check_table(table, expected, str(p), allow_extra)
        names = list(expected)
    try:
        with safe_open(str(p), framework="numpy") as f:
            arrays = {k: f.get_tensor(k) for k in names}
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{p}: damaged array data ({reason})") from None
    return arrays, meta


def check_table(
    table: dict[str, tuple[str, tuple[int, ...]]],
    expected: dict[str, tuple[tuple[int, ...], Any]],
    source: str,
    allow_extra: bool = False,
) -> None:
    """Compare a header's (dtype, shape) table with the expected (shape, dtype) of every array."""
    missing = [k for k in expected if k not in table]
    if missing:
        raise CheckpointError(f"{source}: missing arrays {', '.join(sorted(missing)[:5])}")
    extra = [k for k in table if k not in expected]
    if extra and not allow_extra:
        raise CheckpointError(f"{source}: unexpected arrays {', '.join(sorted(extra)[:5])}")
    for name, (shape, dtype) in expected.items():
        got_dtype, got_shape = table[name]
        if tuple(got_shape) != tuple(shape):
            raise CheckpointError(f"{source}: array {name} has shape {tuple(got_shape)}, expected {tuple(shape)}")
        if np.dtype(ALLOWED_DTYPES[got_dtype]) != np.dtype(dtype):
            raise CheckpointError(f"{source}: array {name} is {got_dtype}, expected {np.dtype(dtype).name}")
