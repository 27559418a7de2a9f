"""The classifier and the tagger on the torch backend: the task objectives' engine.

`TorchTask` is model/task.py's network in torch: one nn.RNN / nn.LSTM / nn.GRU per layer over a
padded batch of texts (right padding: a recurrent layer only looks back, so no real position sees
it), dropout from the run's generator, a Linear head over the K labels. The tagger's output
recurrence R joins U as the first layer's wider input, [x_t; y_{t-1}] read through [U R], as the
NumPy model computes it; U and R stay two parameters under their own names (the first layer runs
with their concatenation as its input weight), so that optimizer slots, gradient norms and
checkpoints are those of the NumPy engine, name for name.

`TorchTaskEngine` is the language model's engine (engine.py) with this module and the task losses:
a classifier's (weighted) mean over its texts' last characters, a tagger's mean over every real
character, teacher-forced. Validation runs on the NumPy model after the weights are brought back
(the task data is small), so its numbers are the NumPy engine's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from ..model.params import FEEDBACK_WEIGHT, HEAD_BIAS, HEAD_WEIGHT, input_index, layer_names
from ..model.task import pad_batch
from . import torch_dtype
from .engine import TorchEngine
from .module import NumpyTwin, StackNorms, recurrent_layers, run_layers


class TorchTask(NumpyTwin):
    def __init__(self, model: Any) -> None:
        super().__init__()
        V, K, H = model.vocab_size, model.num_outputs, model.hidden_size
        self.vocab_size, self.num_outputs, self.dropout, self.feedback = V, K, model.dropout, model.feedback
        self.cell = model.cell
        self.parts = len(model.cell_module.STATE)
        self.num_layers, self.hidden_size = model.num_layers, H
        self.layers = recurrent_layers(model.cell, V + (K if self.feedback else 0), H, model.num_layers)
        self.residual = model.residual
        self.norms = StackNorms(H, model.num_layers, model.layer_norm)
        self.head = nn.Linear(H, K)
        if self.feedback:  # U and R as parameters of their own; the layer's joint weight is not trained
            # the first layer's input weight, at its place in the cell's table
            self.input_key, joint = list(self.layers[0].named_parameters())[input_index(self.cell)]
            rows = joint.shape[0]
            self.input_weight = nn.Parameter(torch.empty(rows, V))
            self.feedback_weight = nn.Parameter(torch.empty(rows, K))
            joint.requires_grad_(False)

    def named_charrnn_parameters(self) -> dict[str, nn.Parameter]:
        """charrnn's name -> the parameter, in the NumPy model's table order."""
        out: dict[str, nn.Parameter] = {}
        for k, layer in enumerate(self.layers):
            names = layer_names(self.cell, k)
            ws = dict(zip(names, layer.parameters()))  # a layer lists its parameters in the table's order
            if k == 0 and self.feedback:
                ws[names[input_index(self.cell)]] = self.input_weight
            out.update(ws)
        out.update(self.norms.named_charrnn_parameters())
        out[HEAD_WEIGHT], out[HEAD_BIAS] = self.head.weight, self.head.bias
        if self.feedback:
            out[FEEDBACK_WEIGHT] = self.feedback_weight
        return out

    def top(self, x: torch.Tensor, prev: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        """The last layer's states (T, B, H) over ids x (T, B) from zero states; with feedback,
        `prev` (T, B) holds the tag fed back at each position (-1: none)."""
        T, B = x.shape
        dtype = self.head.weight.dtype
        inp = nn.functional.one_hot(x, self.vocab_size).to(dtype)
        zeros = tuple(inp.new_zeros(self.num_layers, B, self.hidden_size) for _ in range(self.parts))
        if not self.feedback:
            out, _ = run_layers(self.layers, inp, zeros, self.dropout, generator, self.residual, self.norms)
            return self.norms.top(out)
        fed = nn.functional.one_hot(prev.clamp(min=0), self.num_outputs).to(dtype) * (prev >= 0).unsqueeze(-1).to(dtype)
        first = self.layers[0]
        weights = dict(first.named_parameters()) | {self.input_key: torch.cat([self.input_weight, self.feedback_weight], 1)}
        s0 = tuple(part[0:1] for part in zeros)
        out, _ = functional_call(first, weights, (torch.cat([inp, fed], -1), s0 if len(s0) > 1 else s0[0]))
        if generator is not None and self.dropout:
            keep = 1.0 - self.dropout
            out = out * torch.empty_like(out).bernoulli_(keep, generator=generator).div_(keep)
        rest = tuple(part[1:] for part in zeros)
        out, _ = run_layers(self.layers[1:], out, rest, self.dropout, generator, self.residual, self.norms, first=1)
        return self.norms.top(out)


class TorchTaskEngine(TorchEngine):
    """The engine of a classifier's or tagger's run on the torch backend (one process)."""

    def __init__(self, objective: Any, world: Any = None) -> None:
        if world is not None:
            raise ConfigError(f"charrnn {objective.kind} trains in one process: start it without torchrun")
        super().__init__(objective, None)
        w = objective.weights
        self.class_weights = None if w is None else torch.from_numpy(w).to(self.device, self.module.head.weight.dtype)

    def _build(self, objective: Any) -> tuple[Any, dict[str, nn.Parameter]]:
        model = objective.model
        self.share = 0
        module = TorchTask(model).to(device=self.device, dtype=torch_dtype(model.dtype.name))
        module.load_numpy(model.params)
        return module, module.named_charrnn_parameters()

    def initial_state(self, batch_size: int) -> None:
        return None

    def _loss(self, batch: Any, hidden: Any) -> tuple[torch.Tensor, None]:
        x, lens = pad_batch(batch.inputs)
        B, T = x.shape
        xt = torch.from_numpy(np.ascontiguousarray(x.T)).to(self.device)  # (T, B)
        if self.objective.kind == "classify":
            top = self.module.top(xt, None, self.generator)
            last = top[torch.from_numpy(lens - 1).to(self.device), torch.arange(B, device=self.device)]
            logits = self.module.head(last)
            y = torch.from_numpy(np.asarray(batch.targets, dtype=np.int64)).to(self.device)
            return nn.functional.cross_entropy(logits, y, weight=self.class_weights), None
        y, _ = pad_batch(batch.targets, None, "targets")
        yt = torch.from_numpy(np.ascontiguousarray(y[:, :T].T)).to(self.device)  # (T, B)
        prev = None
        if self.module.feedback:  # teacher forcing: the true previous tag, none at t = 0
            prev = torch.cat([torch.full_like(yt[:1], -1), yt[:-1]])
        logits = self.module.head(self.module.top(xt, prev, self.generator))  # (T, B, K)
        real = torch.from_numpy(np.arange(T)[:, None] < lens[None, :]).to(self.device)
        return nn.functional.cross_entropy(logits[real], yt[real]), None

    def inference_model(self) -> Any:
        """The NumPy model with the device's weights: validation is the NumPy engine's own."""
        self.module.store_numpy(self.objective.model.params)
        return self.objective.model

    def pull(self, objective: Any) -> None:
        self.module.store_numpy(objective.model.params)
        self._optimizer_out(objective.optimizer)
        return None
