"""Evaluation and generation on the torch backend: a CharRNN look-alike over a `TorchLM`.

`TorchModel` has the few methods `evaluate.evaluate_ids` and `sample.generate` call (initial_state,
loss, nll, logits, stepper), so scoring and sampling are the same code for both backends; the carried
state stays on the device between calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..model import CharRNN
from . import resolve_device, torch_dtype
from .module import TorchLM


class TorchModel:
    def __init__(self, module: TorchLM, device: Any, hidden_size: int, num_layers: int, parts: int) -> None:
        self.module, self.device = module, device
        self.vocab_size, self.hidden_size, self.num_layers, self.parts = module.vocab_size, hidden_size, num_layers, parts

    @classmethod
    def from_numpy(cls, model: CharRNN, device: str = "cpu") -> "TorchModel":
        """The NumPy model's weights in a module on `device` (--backend torch of sample and eval)."""
        dev = resolve_device(device)
        if dev.type == "mps" and model.dtype.name == "float64":
            raise_float64_on_mps()
        module = TorchLM.of(model)
        module.to(device=dev, dtype=torch_dtype(model.dtype.name))
        module.load_numpy(model.params)
        return cls(module.eval(), dev, model.hidden_size, model.num_layers, len(model.state_parts))

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        w = self.module.head.weight
        return tuple(w.new_zeros(self.num_layers, batch_size, self.hidden_size) for _ in range(self.parts))

    def _ids(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.int64).T)).to(self.device)  # (T, B)

    @torch.inference_mode()
    def loss(self, inputs: np.ndarray, targets: np.ndarray, h0: Any = None) -> tuple[float, Any]:
        """(mean nats over B*T, final state) of a (B, T) window, dropout off."""
        x = self._ids(inputs)
        state = h0 if h0 is not None else self.initial_state(x.shape[1])
        logits, state = self.module(x, state)
        loss = torch.nn.functional.cross_entropy(logits, self._ids(targets).reshape(-1))
        return float(loss), state

    @torch.inference_mode()
    def nll(self, inputs: np.ndarray, targets: np.ndarray, h0: Any = None) -> tuple[np.ndarray, Any]:
        """(nats of every position (B, T) as NumPy, final state) of a (B, T) window, dropout off:
        what scoring a part of each stream needs (evaluate.py)."""
        x = self._ids(inputs)
        T, B = x.shape
        logits, state = self.module(x, h0 if h0 is not None else self.initial_state(B))
        nll = torch.nn.functional.cross_entropy(logits, self._ids(targets).reshape(-1), reduction="none")
        return nll.reshape(T, B).transpose(0, 1).cpu().numpy(), state

    @torch.inference_mode()
    def logits(self, inputs: np.ndarray, h0: Any = None) -> tuple[np.ndarray, Any]:
        """Logits (B, T, V) as NumPy, and the final state."""
        x = self._ids(inputs)
        T, B = x.shape
        logits, state = self.module(x, h0 if h0 is not None else self.initial_state(B))
        return logits.reshape(T, B, -1).transpose(0, 1).cpu().numpy(), state

    def stepper(self, batch_size: int = 1, h: Any = None) -> "TorchStepper":
        return TorchStepper(self, batch_size, h)


class TorchStepper:
    """Generation one character at a time: stepper(token) -> logits (B, V) as NumPy."""

    def __init__(self, model: TorchModel, batch_size: int, h: Any) -> None:
        self.model = model
        self.state = h if h is not None else model.initial_state(batch_size)
        self._token = torch.zeros((1, batch_size), dtype=torch.int64, device=model.device)

    @torch.inference_mode()
    def __call__(self, tokens: Any) -> np.ndarray:
        self._token.copy_(torch.as_tensor(np.asarray(tokens, dtype=np.int64).reshape(1, -1)))
        logits, self.state = self.model.module(self._token, self.state)
        return logits.cpu().numpy()


def raise_float64_on_mps() -> None:
    from ..errors import ConfigError

    raise ConfigError("--device mps computes in float32 only: train with --dtype float32, or use --device cpu")
