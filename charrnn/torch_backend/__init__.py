"""The PyTorch backend: the same model, run by nn.RNN / nn.LSTM / nn.GRU on a CPU, an NVIDIA GPU
(cuDNN) or an Apple GPU, and data-parallel under torchrun. The only package that imports torch at
run time; nothing imports it unless `--backend torch` (or torchrun) asks for it.

    module.py       TorchLM: the layers, dropout and head of CharRNN as torch modules
    engine.py       TorchEngine: the training loop's engine (train/engine.py) on a device
    infer.py        TorchModel: evaluation and generation through the same module
    distributed.py  World: torchrun's processes, the run set up by rank 0, collectives

Parameters move between the NumPy model and the modules by their PyTorch names (model/params.py),
so one checkpoint file serves both backends.
"""

from __future__ import annotations

from typing import Any

from ..settings import DEVICES, TORCH_INSTALL
from ..errors import ConfigError


def import_torch() -> Any:
    """torch, or a one-line ConfigError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(f"--backend torch needs PyTorch, which is not installed: {TORCH_INSTALL}") from None
    return torch


def resolve_device(name: str, local_rank: int = 0) -> Any:
    """The torch.device for --device NAME; under torchrun each process on a machine takes the GPU
    of its local rank. A device that is not there is a one-line error."""
    torch = import_torch()
    if name not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device cuda: {why} (torch {torch.__version__}); use --device cpu, or install "
                              f"a CUDA build of PyTorch: {TORCH_INSTALL} (see pytorch.org for the CUDA wheels)")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"--device cuda: process {local_rank} of this machine has no GPU of its own "
                              f"({count} visible): start at most {count} processes per machine")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"--device mps: no Apple GPU is available to PyTorch (torch {torch.__version__}); "
                              "use --device cpu")
        return torch.device("mps")
    return torch.device("cpu")


def torch_dtype(name: str) -> Any:
    torch = import_torch()
    return {"float32": torch.float32, "float64": torch.float64}[name]
