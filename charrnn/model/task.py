"""What the two task models of seed 002 share: L recurrent layers of one cell over a batch of
texts of different lengths, and a head over K labels instead of the next character.

    h^k_t = cell(x^k_t, state^k_{t-1})     x^0_t = one-hot(char_t)   (CharClassifier, CharTagger)
    x^0_t = [one-hot(char_t); y_{t-1}]     with U and R side by side  (CharTagger, feedback on)
    o = V h^{L-1} + c                      at each text's last character, or at every character

with the stack's options (stack.py: residual connections, layer norms) as in the language model.

Variable lengths. A batch of B texts is padded on the right to the longest, T; position t of
text b is real when t < lengths[b]. A recurrent layer only looks back, so what padding holds can
never reach a real position's state, and the losses read real positions only: padding changes
neither the loss nor any gradient (the padded steps' gradients are exact zeros). The trainer
groups texts of similar length into a batch (tasks/data.py), so little is padded at all.

The feedback term. The tagger adds R y_{t-1} to the first layer's pre-activation. Seen from the
cell that is U x_t with a longer input: the first layer reads the concatenation [x_t; y_{t-1}]
through the weight [U R] ((G*H, V+K)), so every gate (LSTM i|f|g|o, GRU r|z|n) gets its R block
and the cells of core/ run unchanged: R widens whichever parameter the cell's table names its
input weight. For the GRU's n gate R y_{t-1} joins the input side, W_in
x_t, outside r * (W_hn h + b_hn), as a longer input would. The gradient of [U R] splits back
into dU and dR column-wise, exactly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import threads
from ..errors import ConfigError
from .lm import check_dropout, check_stack
from .params import (FEEDBACK_WEIGHT, HEAD_BIAS, HEAD_WEIGHT, MAX_PARAMETERS, cell_module, check_size,
                     count_parameters, init_parameters, input_weight, parameter_shapes, resolve_dtype)
from .stack import StackCache, Stacked, State, stack_backward, stack_forward


def pad_batch(inputs: Any, lengths: Any = None, name: str = "inputs") -> tuple[np.ndarray, np.ndarray]:
    """A batch of integer sequences as ((B, T) ids padded with 0 on the right, lengths (B,)).

    inputs: a list of 1-D integer sequences (each at least one long), or a (B, T) array, whose
    rows are all T long unless `lengths` says otherwise."""
    if isinstance(inputs, np.ndarray) and inputs.ndim == 2:
        x = inputs
        if lengths is None:
            lens = np.full(x.shape[0], x.shape[1], dtype=np.intp)
        else:
            lens = np.asarray(lengths)
            if lens.shape != (x.shape[0],) or lens.dtype.kind not in "iu":
                raise ConfigError(f"lengths must be {x.shape[0]} integers, got {lens.shape} of {lens.dtype}")
            if x.shape[0] and (lens.min() < 1 or lens.max() > x.shape[1]):
                raise ConfigError(f"lengths must be in [1, {x.shape[1]}]")
    else:
        if lengths is not None:
            raise ConfigError("lengths go with a padded (B, T) array; a list of sequences carries its own")
        seqs = [np.asarray(s).reshape(-1) for s in inputs]
        lens = np.array([len(s) for s in seqs], dtype=np.intp)
        if len(seqs) and lens.min() < 1:
            raise ConfigError(f"every sequence of {name} must hold at least one element")
        x = np.zeros((len(seqs), int(lens.max()) if len(seqs) else 0), dtype=np.intp)
        for b, s in enumerate(seqs):
            if s.dtype.kind not in "iu":
                raise ConfigError(f"{name} must be integer ids, got dtype {s.dtype}")
            x[b, : len(s)] = s
    if x.size == 0:
        raise ConfigError(f"{name} must hold at least one sequence of at least one element")
    if x.dtype.kind not in "iu":
        raise ConfigError(f"{name} must be integer ids, got dtype {x.dtype}")
    return x.astype(np.intp, copy=False), lens.astype(np.intp, copy=False)


def check_ids(x: np.ndarray, lengths: np.ndarray, size: int, name: str) -> None:
    """Every real position of x (B, T) holds an id in [0, size)."""
    real = x[np.arange(x.shape[1]) < lengths[:, None]]
    if real.min() < 0 or real.max() >= size:
        raise ConfigError(f"{name} holds ids outside [0, {size}): {real.min()}..{real.max()}")


class TaskModel(Stacked):
    """The recurrent layers, the head and (optionally) R of a task model; see the module docstring.

    `params` maps names of the one table (model/params.py) to the live arrays, as CharRNN's do:
    rnn.* as in nn.RNN / nn.LSTM / nn.GRU, head.* (K, H) and (K,), feedback.weight (G*H, K)."""

    task = "task"

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        dtype: Any = "float32",
        seed: int | None = 0,
        init: str = "pytorch",
        *,
        cell: str = "rnn",
        dropout: float = 0.0,
        feedback: bool = False,
        residual: bool = False,
        layer_norm: bool = False,
        params: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.vocab_size = check_size("vocab_size", vocab_size, minimum=1)
        self.num_outputs = check_size("num_outputs", num_outputs, minimum=2)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.cell_module = cell_module(cell)
        self.cell = cell
        self.dropout = check_dropout(dropout)
        self.dtype = resolve_dtype(dtype)
        self.feedback = bool(feedback)
        self.stack = check_stack(residual, layer_norm)
        self.init = init
        self.seed = seed
        n = count_parameters(self.vocab_size, self.hidden_size, self.num_layers, self.cell, self.num_outputs,
                             self.feedback, self.stack.layer_norm)
        if n > MAX_PARAMETERS:
            raise ConfigError(f"a model with {n:,} parameters is too large")
        self.dropout_rng = np.random.default_rng([seed if seed is not None else 0, 2])
        if params is None:
            params = init_parameters(self.shapes(), self.hidden_size, init, np.random.default_rng(seed), self.dtype,
                                     self.cell)
        self.params: dict[str, np.ndarray] = params

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return parameter_shapes(self.vocab_size, self.hidden_size, self.num_layers, self.cell, self.num_outputs,
                                self.feedback, self.stack.layer_norm)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size, "num_outputs": self.num_outputs, "hidden_size": self.hidden_size,
            "num_layers": self.num_layers, "dtype": self.dtype.name, "init": self.init, "cell": self.cell,
            "dropout": self.dropout, "feedback": self.feedback, **self.stack.config(),
        }

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def zero_grads(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(p.shape, p.dtype) for name, p in self.params.items()}

    def _zero_state(self, batch_size: int) -> State:
        shape = (self.num_layers, batch_size, self.hidden_size)
        return tuple(np.zeros(shape, dtype=self.dtype) for _ in self.cell_module.STATE)

    def __repr__(self) -> str:
        extra = ", feedback=True" if self.feedback else ""
        extra += "".join(f", {k}=True" for k, v in self.stack.config().items() if v)
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, num_outputs={self.num_outputs}, "
                f"hidden_size={self.hidden_size}, num_layers={self.num_layers}, cell={self.cell!r}{extra}) "
                f"with {self.num_parameters:,} parameters")

    # -- the layers over a padded batch ---------------------------------------------------------

    def _layer_input(self, x: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        """The first layer's input, time-major: ids (T, B), or with feedback the dense
        [one-hot(x_t); one-hot(prev_t)] (T, B, V+K), where prev_t < 0 is no previous label (zeros)."""
        tokens = np.ascontiguousarray(x.T)
        if not self.feedback:
            return tokens
        T, B = tokens.shape
        V, K = self.vocab_size, self.num_outputs
        dense = np.zeros((T, B, V + K), dtype=self.dtype)
        t, b = np.indices((T, B))
        dense[t, b, tokens] = 1.0
        p = np.ascontiguousarray(prev.T)
        has = p >= 0
        dense[t[has], b[has], V + p[has]] = 1.0
        return dense

    def _stack_params(self) -> dict[str, np.ndarray]:
        """The parameters as the stack reads them: with feedback the first layer's input weight is
        [U R] (G*H, V+K), a fresh array; otherwise the live dict itself."""
        if not self.feedback:
            return self.params
        u = input_weight(self.cell, 0)
        return dict(self.params) | {u: np.concatenate([self.params[u], self.params[FEEDBACK_WEIGHT]], axis=1)}

    def _layers_forward(self, x: np.ndarray, prev: np.ndarray | None, train: bool,
                        need_cache: bool = True) -> tuple[np.ndarray, StackCache | None, dict]:
        """top (T, B, H) over a padded batch, from zero states; dropout only when `train`."""
        threads.ensure_threads()
        params = self._stack_params()
        rng = self.dropout_rng if (train and self.dropout) else None
        top, _, cache = stack_forward(self.cell_module, params, self.num_layers, self._layer_input(x, prev),
                                      self._zero_state(x.shape[0]), self.dropout if train else 0.0, rng,
                                      need_cache=need_cache, options=self.stack)
        return top, cache, params

    def _layers_backward(self, params: dict, cache: StackCache, dtop: np.ndarray,
                         grads: dict[str, np.ndarray]) -> None:
        """Add the layers' gradients (and R's) into `grads` from dL/d(top) (T, B, H), consumed."""
        if not self.feedback:
            stack_backward(self.cell_module, params, grads, cache, dtop)
            return
        u = input_weight(self.cell, 0)
        joint = dict(grads) | {u: np.zeros_like(params[u])}
        stack_backward(self.cell_module, params, joint, cache, dtop)
        V = self.vocab_size
        grads[u] += joint[u][:, :V]
        grads[FEEDBACK_WEIGHT] += joint[u][:, V:]

    def _head(self, h: np.ndarray) -> np.ndarray:
        """Logits (N, K) of states (N, H), a fresh array."""
        return h @ self.params[HEAD_WEIGHT].T + self.params[HEAD_BIAS]

    def _prepare(self, inputs: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        x, lens = pad_batch(inputs, lengths, "inputs")
        check_ids(x, lens, self.vocab_size, "inputs")
        return x, lens


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, a fresh array."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def as_sequences(values: Sequence[Any]) -> list[np.ndarray]:
    return [np.asarray(v).reshape(-1) for v in values]
