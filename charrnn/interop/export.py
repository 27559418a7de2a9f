"""Exporting a trained model for PyTorch.

The file holds the parameters under the names of `torch.nn.RNN` / `nn.LSTM` / `nn.GRU`
`(V, H, num_layers=L)` (prefixed `rnn.`) and `torch.nn.Linear(H, V)` (prefixed `head.`), and in its
metadata the vocabulary and the model's sizes as JSON strings, so `safetensors.torch.load_file`
plus a `load_state_dict` on each module reproduces the model exactly. The dropout rate is recorded
too; PyTorch's module applies it between layers only, charrnn also before the head, and both
leave it off in evaluation.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ..io.checkpoint import BEST, CHECKPOINT_FORMAT, CONFIG, LATEST, Checkpoint
from ..settings import EXPORT_FORMATS as FORMATS
from ..errors import CharRNNError, CheckpointError, ConfigError
from ..io.writer import atomic_write_bytes
from ..io.arrays import dump_json, read_header


def export(c: Checkpoint, out: str | Path, fmt: str = "torch", force: bool = False) -> Path:
    """Write checkpoint `c`'s model to `out` in format `fmt`; returns the path written.

    `out` may be a new file, or with `force` an existing regular file; never anything else (a
    link, a device, a FIFO, a directory) and never a training checkpoint (see `check_target`)."""
    from safetensors.numpy import save

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if c.vocab is None:
        raise CheckpointError(f"{c.path}: the model has no vocabulary to export with")
    if isinstance(out, str) and out.endswith(("/", os.sep)):  # Path() would drop the slash
        raise ConfigError(f"{out} names a directory: give the path of the file to write")
    out = Path(out)
    check_target(out, force)
    if fmt == "keras":  # a .keras file and its vocabulary beside it, both held to the same rules
        from .keras import export_keras, vocab_path

        check_target(vocab_path(out), force)
        return export_keras(c.model, c.vocab, out)
    from ..model.params import torch_module_name

    torch_class = torch_module_name(c.model.cell)  # a cell without a torch.nn module is refused here
    metadata = {
        "format": "charrnn.torch-export",
        "vocab": dump_json(c.vocab.to_json()),
        "model": dump_json({k: v for k, v in c.model.config.items() if k != "init"}),
        "torch_modules": f"rnn = torch.nn.{torch_class}(vocab_size, hidden_size, num_layers); "
        "head = torch.nn.Linear(hidden_size, vocab_size)",
    }
    data = save({k: np.ascontiguousarray(v) for k, v in c.model.params.items()}, metadata=metadata)
    atomic_write_bytes(out, data)
    return out


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


def check_target(out: Path, force: bool) -> None:
    """Refuse an export target that is not a new file or (with `force`) a regular file, or that
    is or would become a checkpoint of a run: a run whose latest or best an export replaced
    would no longer load."""
    if out.name in (LATEST, BEST) and any((out.parent / n).exists() for n in (LATEST, BEST, CONFIG)):
        raise ConfigError(f"{out} is a checkpoint name of the run in {out.parent}: export never writes a run's checkpoints")
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as e:
        raise CheckpointError(f"cannot write {out}: {e.strerror or e}") from None
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        raise ConfigError(f"{out} is {_KINDS.get(kind, 'not a regular file')}: export writes regular files only")
    if _is_training_checkpoint(out):
        raise ConfigError(f"{out} is a training checkpoint: export never replaces one")
    if not force:
        raise ConfigError(f"{out} already exists: --force replaces it")


def _is_training_checkpoint(path: Path) -> bool:
    try:
        meta, _ = read_header(path)
    except CharRNNError:
        return False
    return meta.get("format") == CHECKPOINT_FORMAT
