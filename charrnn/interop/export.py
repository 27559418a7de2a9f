"""Exporting a trained model for PyTorch (here), Keras (keras.py) or ONNX Runtime (onnx.py).

The file holds the parameters under the names of `torch.nn.RNN` / `nn.LSTM` / `nn.GRU`
`(V, H, num_layers=L)` (prefixed `rnn.`) and `torch.nn.Linear(H, V)` (prefixed `head.`), and in its
metadata the vocabulary and the model's sizes as JSON strings, so `safetensors.torch.load_file`
plus a `load_state_dict` on each module reproduces the model exactly. minGRU and minLSTM, which no
torch.nn class computes, keep the same names (rnn.weight_ih_l{k}, rnn.bias_ih_l{k}); the README
gives the few lines of PyTorch that compute their logits. The dropout rate is recorded
too; PyTorch's module applies it between layers only, charrnn also before the head, and both
leave it off in evaluation. The stack options (--residual, --layer-norm) are recorded with the
sizes; the layer norms' parameters are nn.LayerNorm's under norm_l{k}.* and norm_out.* (params.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import formats
from ..io.checkpoint import Checkpoint
from ..settings import EXPORT_FORMATS as FORMATS
from ..errors import CheckpointError, ConfigError
from ..io.writer import check_target, write_file
from ..io.arrays import dump_json


def export(c: Checkpoint, out: str | Path, fmt: str = "torch", force: bool = False) -> Path:
    """Write checkpoint `c`'s model to `out` in format `fmt`; returns the path written.

    `out` may be a new file, or with `force` an existing regular file; never anything else (a
    link, a device, a FIFO, a directory), never a run's training files and never a training
    checkpoint (the writer's `check_target`)."""
    from safetensors.numpy import save

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if c.vocab is None:
        raise CheckpointError(f"{c.path}: the model has no vocabulary to export with")
    out = check_target(out, force=force)
    if fmt == "keras":  # a .keras file and its vocabulary beside it, both held to the same rules
        from .keras import export_keras

        return export_keras(c.model, c.vocab, out, force=force)
    if fmt == "onnx":
        from .onnx import export_onnx

        return export_onnx(c.model, c.vocab, out, force=force)
    from ..model.params import cell_module, torch_module_name

    torch_class = torch_module_name(c.model.cell)  # a cell without a torch module is refused here
    # a module of the torch backend's own ("module:Class") is not torch's: the README's few lines of
    # PyTorch compute its equations from the same names
    rnn = (f"rnn = torch.nn.{torch_class}(vocab_size, hidden_size, num_layers)" if ":" not in torch_class
           else f"rnn = the {c.model.cell} equations over "
           + ", ".join(f"rnn.{p.name}_l{{k}}" for p in cell_module(c.model.cell).PARAMS)
           + " (charrnn's README, Export to PyTorch)")
    if c.model.stack.layer_norm or c.model.stack.residual:
        # one module of L layers cannot add a residual or norm between them: one per layer
        rnn = rnn.replace("num_layers)", "1) per layer") + (
            "; norm_l{k} (k >= 1), norm_out = torch.nn.LayerNorm(hidden_size)" if c.model.stack.layer_norm else ""
        ) + "; the stack as charrnn's README says (Stack options)"
    metadata = {
        "format": formats.TORCH_EXPORT,
        "vocab": dump_json(c.vocab.to_json()),
        "model": dump_json({k: v for k, v in c.model.config.items() if k != "init"}),
        "torch_modules": f"{rnn}; head = torch.nn.Linear(hidden_size, vocab_size)",
    }
    data = save({k: np.ascontiguousarray(v) for k, v in c.model.params.items()}, metadata=metadata)
    return write_file(out, data, force=force)
