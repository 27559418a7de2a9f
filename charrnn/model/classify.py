"""Many-to-one: a whole text, one label (seed 002: "only o_tau, L_tau and y_tau count").

    h_t = cell(x_t, h_{t-1}) for t = 1..tau_b      (tau_b = lengths[b], the text's own length)
    o_b = V h_{tau_b} + c,   p_b = softmax(o_b)
    loss = sum_b w[y_b] (-log p_b[y_b]) / sum_b w[y_b]       (w = 1: the plain mean over texts)

The class weights w are PyTorch's `cross_entropy(weight=w)`: a weighted mean, so the loss keeps
its scale whatever the weights. Backward: dL/do_b = w[y_b] (p_b - onehot(y_b)) / sum w, then
dL/dh_{tau_b} = V^T dL/do_b at the last real step of each text and zero everywhere else, and
BPTT through the layers as in the language model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import DType, Range, checked
from ..errors import ConfigError
from .params import HEAD_BIAS, HEAD_WEIGHT
from .stack import StackCache
from .task import TaskModel, log_softmax


@dataclass
class ClassifyCache:
    lengths: np.ndarray  # (B,)
    last: np.ndarray  # (B, H) the top layer's state at each text's last character
    dlogits: np.ndarray  # (B, K) dL/do
    T: int
    stack: StackCache | None
    params: dict


class CharClassifier(TaskModel):
    """model = CharClassifier(vocab_size=V, num_classes=K, hidden_size=H, num_layers=L, cell=...)
    loss, grads = model.loss_and_grads(inputs, targets)        # targets: (B,) class ids
    probs = model.predict_proba(inputs)                        # (B, K)

    inputs: a list of integer sequences of any lengths (>= 1), or a (B, T) array with `lengths`."""

    task = "classify"

    @checked(vocab_size=Range(1), num_classes=Range(2), hidden_size=Range(1), num_layers=Range(1), seed=Range(0),
             dropout=Range(0, 1, high_open=True))
    def __init__(self, vocab_size: int, num_classes: int, hidden_size: int = 128, num_layers: int = 1,
                 dtype: DType = "float32", seed: int | None = 0, init: str = "pytorch", *, cell: str = "rnn",
                 dropout: float = 0.0, residual: bool = False, layer_norm: bool = False,
                 params: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(vocab_size, num_classes, hidden_size, num_layers, dtype, seed, init, cell=cell,
                         dropout=dropout, feedback=False, residual=residual, layer_norm=layer_norm, params=params)

    def _targets(self, targets: Any, batch: int) -> np.ndarray:
        y = np.asarray(targets).reshape(-1)
        if y.shape != (batch,) or y.dtype.kind not in "iu":
            raise ConfigError(f"targets must be {batch} integer class ids, got {np.shape(targets)}")
        if y.min() < 0 or y.max() >= self.num_outputs:
            raise ConfigError(f"targets hold class ids outside [0, {self.num_outputs})")
        return y.astype(np.intp)

    def _weights(self, class_weights: Any, y: np.ndarray) -> np.ndarray:
        if class_weights is None:
            return np.ones(len(y))
        w = np.asarray(class_weights, dtype=np.float64)
        if w.shape != (self.num_outputs,) or not np.all(np.isfinite(w)) or w.min() < 0:
            raise ConfigError(f"class_weights must be {self.num_outputs} finite numbers >= 0")
        return w[y]

    @checked()
    def forward(self, inputs: Any, targets: Any, lengths: Any = None, class_weights: Any = None,
                train: bool = True) -> tuple[float, ClassifyCache]:
        """The batch's loss and what `backward` needs; dropout is on when `train`."""
        x, lens = self._prepare(inputs, lengths)
        y = self._targets(targets, x.shape[0])
        wy = self._weights(class_weights, y)
        top, stack, params = self._layers_forward(x, None, train)
        B = x.shape[0]
        last = top[lens - 1, np.arange(B)]  # (B, H)
        logits = self._head(last)
        logp = log_softmax(logits.astype(np.float64))
        total = wy.sum()
        if total <= 0:
            raise ConfigError("the class weights of this batch sum to zero")
        loss = float(-(wy * logp[np.arange(B), y]).sum() / total)
        dlogits = np.exp(logp)
        dlogits[np.arange(B), y] -= 1.0
        dlogits *= (wy / total)[:, None]
        return loss, ClassifyCache(lens, last, dlogits.astype(self.dtype), x.shape[1], stack, params)

    @checked()
    def backward(self, cache: ClassifyCache) -> dict[str, np.ndarray]:
        """Gradients of every parameter (consumes the cache)."""
        if cache.stack is None:
            raise RuntimeError("this forward cache has already been used by backward(); run forward again")
        stack, cache.stack = cache.stack, None
        grads = self.zero_grads()
        d = cache.dlogits
        grads[HEAD_WEIGHT] += d.T @ cache.last
        grads[HEAD_BIAS] += d.sum(axis=0)
        B = len(cache.lengths)
        dtop = np.zeros((cache.T, B, self.hidden_size), dtype=self.dtype)
        dtop[cache.lengths - 1, np.arange(B)] = d @ self.params[HEAD_WEIGHT]
        self._layers_backward(cache.params, stack, dtop, grads)
        return grads

    @checked()
    def loss_and_grads(self, inputs: Any, targets: Any, lengths: Any = None,
                       class_weights: Any = None) -> tuple[float, dict[str, np.ndarray]]:
        """(loss, grads): the batch's (weighted) mean loss in nats, dL/dparam for every parameter."""
        loss, cache = self.forward(inputs, targets, lengths, class_weights)
        return loss, self.backward(cache)

    @checked()
    def logits(self, inputs: Any, lengths: Any = None) -> np.ndarray:
        """Forward only, dropout off: logits (B, K) at each text's last character."""
        x, lens = self._prepare(inputs, lengths)
        top, _, _ = self._layers_forward(x, None, train=False, need_cache=False)
        return self._head(top[lens - 1, np.arange(x.shape[0])])

    @checked()
    def predict_proba(self, inputs: Any, lengths: Any = None) -> np.ndarray:
        """Class probabilities (B, K), float64."""
        return np.exp(log_softmax(self.logits(inputs, lengths).astype(np.float64)))
