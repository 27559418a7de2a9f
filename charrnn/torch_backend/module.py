"""CharRNN as torch modules: one nn.RNN / nn.LSTM / nn.GRU (or the cell's own module) per layer,
dropout, a Linear head.

    x^0_t = one-hot(char_t)      h^k = layer_k(x^k, state0^k)      x^{k+1} = dropout(h^k)
    o_t = head(x^L_t)            loss = cross_entropy(o, y), the mean over B*T

the model of model/lm.py and model/stack.py (with its options: from layer 1 up x^{k+1} = x^k +
dropout(h^k) and h^k = layer_k(LN_k(x^k)), the head reading LN_out(x^L); nn.LayerNorm(H)
modules), time-major (T, B) like the NumPy engine's internals and cuDNN's native layout. One module per layer, rather than one module of L layers, so that the
dropout between layers is ours: its masks come from a generator the run seeds (from the NumPy
dropout generator that checkpoints carry), which makes a torch run resume with the same masks;
nn.LSTM's own inter-layer dropout draws from a global generator (cuDNN from a state it seeds
once), which a checkpoint cannot hold. The first layer takes the one-hot vectors, as the NumPy
engine's lookup of W_ih's columns computes (exactly: a product with 0 and 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..model.params import (HEAD_BIAS, HEAD_WEIGHT, NORM_OUT, cell_module, layer_names, norm_keys, norm_names,
                            torch_module_name)
from . import scan

# The backend's own torch modules, for cells no torch.nn class computes: a cell's TORCH_MODULE
# "charrnn.torch_backend.scan:MinGRU" names a class of one of them. Looked up here, never
# imported by a name.
OWN_MODULES = {scan.__name__: scan}


def torch_layer(cell: str) -> tuple[type, dict]:
    """The torch module class of the cell's layer and its options (the cell's TORCH_MODULE: a
    torch.nn name, or "module:Class" for one of OWN_MODULES; and TORCH_OPTIONS), or a
    one-line error naming a cell that has none."""
    name = torch_module_name(cell)
    where, _, cls = name.rpartition(":")
    home = OWN_MODULES.get(where) if where else nn
    layer = getattr(home, cls, None)
    if layer is None:
        raise ConfigError(f"the {cell} cell's torch module {name} is not one the torch backend has "
                          f"(torch.nn's, or those of {', '.join(OWN_MODULES)})")
    return layer, cell_module(cell).TORCH_OPTIONS


def recurrent_layers(cell: str, input_size: int, hidden_size: int, num_layers: int) -> nn.ModuleList:
    """One torch module of `cell` per layer, the first reading `input_size` features."""
    layer, options = torch_layer(cell)
    H = hidden_size
    return nn.ModuleList(layer(input_size if k == 0 else H, H, 1, **options) for k in range(num_layers))


class StackNorms(nn.Module):
    """The layer norms of a --layer-norm stack (model/stack.py): nn.LayerNorm(H) of layer k's input
    for k = 1..L-1 and of the top; with the option off, none (every method is the identity)."""

    def __init__(self, hidden_size: int, num_layers: int, layer_norm: bool) -> None:
        super().__init__()
        keys = norm_keys(num_layers) if layer_norm else ()
        self.norms = nn.ModuleDict({str(k): nn.LayerNorm(hidden_size) for k in keys})

    def layer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        norm = self.norms[str(k)] if str(k) in self.norms else None
        return x if k == 0 or norm is None else norm(x)

    def top(self, x: torch.Tensor) -> torch.Tensor:
        return self.norms[NORM_OUT](x) if NORM_OUT in self.norms else x

    def named_charrnn_parameters(self) -> dict[str, nn.Parameter]:
        out: dict[str, nn.Parameter] = {}
        for key, norm in self.norms.items():
            k = NORM_OUT if key == NORM_OUT else int(key)
            out.update(zip(norm_names(k), (norm.weight, norm.bias)))
        return out


def run_layers(layers: nn.ModuleList, out: torch.Tensor, state: tuple[torch.Tensor, ...], dropout: float,
               generator: torch.Generator | None, residual: bool = False, norms: StackNorms | None = None,
               first: int = 0) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Every layer over (T, B, I) inputs from `state` (one (L, B, H) tensor per part), dropout
    after each layer when a generator is given, the stack's options (`residual`, `norms`) from
    layer 1 up: (x^L (T, B, H), final state). `first`: the stack's index of layers[0] (the
    tagger runs its first layer apart)."""
    if not len(layers):
        return out, state
    finals = []
    for j, layer in enumerate(layers):
        k = first + j
        s0 = tuple(part[j : j + 1] for part in state)
        x = out
        h, s_n = layer(x if norms is None else norms.layer(k, x), s0 if len(s0) > 1 else s0[0])  # (T, B, H)
        finals.append(s_n if isinstance(s_n, tuple) else (s_n,))
        if generator is not None and dropout:
            keep = 1.0 - dropout
            mask = torch.empty_like(h).bernoulli_(keep, generator=generator).div_(keep)
            h = h * mask
        out = x + h if residual and k > 0 else h
    return out, tuple(torch.cat([f[i] for f in finals]) for i in range(len(state)))


class NumpyTwin(nn.Module):
    """A torch module whose parameters are a NumPy model's under charrnn's names
    (`named_charrnn_parameters`), copied in and out whole: shapes are PyTorch's, so a copy, never
    a transpose."""

    def named_charrnn_parameters(self) -> dict[str, nn.Parameter]:
        raise NotImplementedError

    @torch.no_grad()
    def load_numpy(self, params: dict[str, np.ndarray]) -> None:
        """Copy the NumPy model's parameters in."""
        for name, p in self.named_charrnn_parameters().items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))

    @torch.no_grad()
    def store_numpy(self, params: dict[str, np.ndarray]) -> None:
        """Copy the parameters into the NumPy model's arrays, in place (a GPU's are brought over)."""
        for name, p in self.named_charrnn_parameters().items():
            params[name][...] = p.detach().cpu().numpy()


class TorchLM(NumpyTwin):
    def __init__(self, cell: str, vocab_size: int, hidden_size: int, num_layers: int, dropout: float,
                 residual: bool = False, layer_norm: bool = False) -> None:
        super().__init__()
        V, H = vocab_size, hidden_size
        self.cell, self.vocab_size, self.dropout, self.residual = cell, V, dropout, residual
        self.layers = recurrent_layers(cell, V, H, num_layers)
        self.norms = StackNorms(H, num_layers, layer_norm)
        self.head = nn.Linear(H, V)

    @classmethod
    def of(cls, model: Any) -> "TorchLM":
        """The twin of a NumPy CharRNN's structure (its parameters not yet copied in)."""
        return cls(model.cell, model.vocab_size, model.hidden_size, model.num_layers, model.dropout,
                   model.residual, model.layer_norm)

    def named_charrnn_parameters(self) -> dict[str, nn.Parameter]:
        """Our name -> the module's parameter. nn.RNN lists a layer's parameters in the order of
        the cell's table (weight_ih, weight_hh, bias_ih, bias_hh), nn.Linear weight, bias."""
        out: dict[str, nn.Parameter] = {}
        for k, layer in enumerate(self.layers):
            out.update(zip(layer_names(self.cell, k), layer.parameters()))
        out.update(self.norms.named_charrnn_parameters())
        out.update(zip((HEAD_WEIGHT, HEAD_BIAS), self.head.parameters()))
        return out

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...],
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x: (T, B) ids; state: one (L, B, H) tensor per part (h, or h and c).
        Returns logits (T*B, V), time-major, and the final state. Dropout only with a generator."""
        T, B = x.shape
        out = nn.functional.one_hot(x, self.vocab_size).to(self.head.weight.dtype)  # (T, B, V)
        out, state_n = run_layers(self.layers, out, state, self.dropout, generator, self.residual, self.norms)
        return self.head(self.norms.top(out).reshape(T * B, -1)), state_n
