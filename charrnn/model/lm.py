"""The character-level language model: L recurrent layers of one cell and a softmax head.

    h^k_t = cell(x^k_t, state^k_{t-1})      x^0_t = one-hot(char_t),  x^{k+1}_t = h^k_t
    o_t   = V h^{L-1}_t + c,     p_t = softmax(o_t),     loss = mean over B*T of -log p_t[y_t]

and, with the stack's options (stack.py), residual connections and layer norms between the layers.

with the cells of core/ (the seeds' tanh RNN, PyTorch's LSTM and GRU) and the parameter table of
params.py. The model knows arrays, not files: reading and writing them is modelfile.py's job.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import threads
from ..core.linear import linear_backward, linear_forward
from ..core.loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from ..checks import DType, Range, checked
from ..errors import ConfigError
from .params import (HEAD_BIAS, HEAD_WEIGHT, MAX_PARAMETERS, cell_module, check_size, count_parameters, init_parameters,
                     parameter_shapes, resolve_dtype)
from .parallel import min_shard_work, run_shards, stream_shards
from .stack import State, StackCache, StackOptions, Stacked, draw_masks, stack_backward, stack_forward

if TYPE_CHECKING:
    from .stepper import Stepper


@dataclass
class ForwardCache:
    """What the backward pass needs from one forward pass over a window (time-major)."""

    tokens: np.ndarray  # (T, B) input ids
    targets: np.ndarray  # (N,) target ids, time-major
    top: np.ndarray  # (T, B, H) the head's input
    stack: StackCache | None  # None once consumed by `backward`
    probs: np.ndarray  # (N, V) softmax output, consumed by the backward
    h_last: State  # the final state, one (L, B, H) array per part


class CharRNN(Stacked):
    """A recurrent language model over one-hot characters.

    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=L, dtype="float32", seed=0,
                    cell="rnn" | "lstm" | "gru" | any registered cell, dropout=0.0,
                    residual=False, layer_norm=False)
    loss, grads, h_last = model.loss_and_grads(inputs, targets, h0=None)

    `params` maps PyTorch names (model/params.py) to the live arrays: editing them in place
    changes the model, which is how the optimizers update it. States (h0, h_last, step's h) of a
    cell with several parts (the LSTM's (h, c)) are tuples of (L, B, H) arrays, as in PyTorch; of a
    one-part cell ("rnn", "gru") arrays.
    `loss_and_grads` trains (dropout on, masks drawn from `dropout_rng`); `loss`, `logits`,
    `step` and `stepper` evaluate (dropout off).
    """

    @checked(vocab_size=Range(2), hidden_size=Range(1), num_layers=Range(1), seed=Range(0),
             dropout=Range(0, 1, high_open=True))
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        dtype: DType = "float32",
        seed: int | None = 0,
        init: str = "pytorch",
        *,
        cell: str = "rnn",
        dropout: float = 0.0,
        residual: bool = False,
        layer_norm: bool = False,
        params: dict[str, np.ndarray] | None = None,
    ) -> None:
        """`params`, when given, are used instead of fresh ones (their shapes are the caller's
        responsibility: modelfile.model_from_arrays checks them). `residual`, `layer_norm`: the
        stack's options (stack.py)."""
        self.vocab_size = check_size("vocab_size", vocab_size, minimum=2)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.cell_module = cell_module(cell)  # the cell's functions and declarations (core/)
        self.cell = cell
        self.dropout = check_dropout(dropout)
        self.stack = check_stack(residual, layer_norm)
        self.dtype = resolve_dtype(dtype)
        self.init = init
        self.seed = seed
        n = count_parameters(self.vocab_size, self.hidden_size, self.num_layers, self.cell,
                             layer_norm=self.stack.layer_norm)
        if n > MAX_PARAMETERS:
            raise ConfigError(
                f"a model with {n:,} parameters ({n * self.dtype.itemsize / 2**30:.1f} GiB) is too large"
            )
        # the generator of the dropout masks; training saves and restores its state
        self.dropout_rng = np.random.default_rng([seed if seed is not None else 0, 2])
        if params is None:
            shapes = parameter_shapes(self.vocab_size, self.hidden_size, self.num_layers, self.cell,
                                      layer_norm=self.stack.layer_norm)
            params = init_parameters(shapes, self.hidden_size, init, np.random.default_rng(seed), self.dtype, self.cell)
        self.params: dict[str, np.ndarray] = params

    # ----------------------------------------------------------------------------------------
    # bookkeeping

    @property
    def config(self) -> dict[str, Any]:
        """The hyperparameters that rebuild this model's structure."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dtype": self.dtype.name,
            "init": self.init,
            "cell": self.cell,
            "dropout": self.dropout,
            **self.stack.config(),
        }

    @property
    def state_parts(self) -> tuple[str, ...]:
        """The parts of the carried state: ("h",), the LSTM's ("h", "c")."""
        return self.cell_module.STATE

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def zero_grads(self) -> dict[str, np.ndarray]:
        # np.zeros rather than np.zeros_like: the same arrays for a fifth of the Python overhead,
        # which shows at B=1 where a whole window costs a few hundred microseconds
        return {name: np.zeros(p.shape, p.dtype) for name, p in self.params.items()}

    @checked(batch_size=Range(1))
    def initial_state(self, batch_size: int) -> Any:
        """Zeros: an (L, B, H) array, or a tuple of them, one per part of a several-part state."""
        return self.public_state(self._zero_state(batch_size))

    def _zero_state(self, batch_size: int) -> State:
        shape = (self.num_layers, batch_size, self.hidden_size)
        return tuple(np.zeros(shape, dtype=self.dtype) for _ in self.state_parts)

    @checked()
    def public_state(self, state: State) -> Any:
        """The internal tuple of parts as the API shows it: the tuple for several parts, else h."""
        return state if len(state) > 1 else state[0]

    @checked(ndim=Range(1, 2))
    def check_tokens(self, tokens: Any, name: str, ndim: int = 2) -> np.ndarray:
        arr = np.asarray(tokens)
        shape = "(B, T) with B, T >= 1" if ndim == 2 else "(B,) with B >= 1"
        if arr.ndim != ndim or arr.size == 0:
            raise ConfigError(f"{name} must have shape {shape}, got {arr.shape}")
        if arr.dtype.kind not in "iu":  # signed or unsigned integers (bools are not token ids)
            raise ConfigError(f"{name} must be integer token ids, got dtype {arr.dtype}")
        lo, hi = (arr.flat[0],) * 2 if arr.size == 1 else (arr.min(), arr.max())  # skip reductions when B=1
        if lo < 0 or hi >= self.vocab_size:
            raise ConfigError(f"{name} holds ids outside [0, {self.vocab_size}): {lo}..{hi}")
        return arr.astype(np.intp, copy=False)

    @checked(batch_size=Range(1))
    def check_state(self, h0: Any, batch_size: int) -> State:
        """A state given by a caller (array, or a tuple of parts; None for zeros) as the internal
        tuple of C-contiguous (L, B, H) arrays of the model's dtype."""
        if h0 is None:
            return self._zero_state(batch_size)
        parts = self.state_parts
        if len(parts) > 1:
            if not (isinstance(h0, (tuple, list)) and len(h0) == len(parts)):
                raise ConfigError(f"the state of the {self.cell} cell must be a tuple ({', '.join(parts)})")
        else:
            h0 = (h0,)
        want = (self.num_layers, batch_size, self.hidden_size)
        out = []
        for name, part in zip(parts, h0):
            a = np.asarray(part)
            if a.shape != want:
                raise ConfigError(f"{name}0 must have shape (L, B, H) = {want}, got {a.shape}")
            out.append(np.ascontiguousarray(a, dtype=self.dtype))
        return tuple(out)

    def _check_window(self, inputs: Any, targets: Any, h0: Any) -> tuple[np.ndarray, np.ndarray, State]:
        """A window's (inputs, targets, h0), validated: ids (B, T) in range, h0 of (L, B, H)."""
        x = self.check_tokens(inputs, "inputs")
        y = self.check_tokens(targets, "targets")
        if x.shape != y.shape:
            raise ConfigError(f"inputs {x.shape} and targets {y.shape} must have the same shape")
        return x, y, self.check_state(h0, x.shape[0])

    # ----------------------------------------------------------------------------------------
    # forward and backward over a window

    def _head_forward(self, top: np.ndarray) -> np.ndarray:
        """Logits (N, V) of the head's input (T, B, H), time-major, a fresh array."""
        T, B, H = top.shape
        return linear_forward(top.reshape(T * B, H), self.params[HEAD_WEIGHT], self.params[HEAD_BIAS])

    @checked()
    def forward(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[float, ForwardCache]:
        """Loss (mean nats over B*T) of a window in training mode, and the cache for `backward`.

        inputs, targets: int (B, T).  h0: as `initial_state` gives it, or None for zeros.
        """
        x, y, state0 = self._check_window(inputs, targets, h0)
        threads.ensure_threads()
        return self._forward(x, y, state0)

    def _forward(self, x: np.ndarray, y: np.ndarray, state0: State,
                 masks: list[np.ndarray] | None = None) -> tuple[float, ForwardCache]:
        tokens = np.ascontiguousarray(x.T)  # (T, B)
        rng = self.dropout_rng if self.dropout else None
        top, state_n, stack = stack_forward(self.cell_module, self.params, self.num_layers, tokens, state0,
                                            self.dropout, rng, masks=masks, options=self.stack)
        logits = self._head_forward(top)  # (N, V)
        y_flat = np.ascontiguousarray(y.T).reshape(-1)  # time-major, like the logits
        loss, probs = softmax_cross_entropy_forward(logits, y_flat)
        return loss, ForwardCache(tokens, y_flat, top, stack, probs, state_n)

    @checked(n_total=Range(1))
    def backward(self, cache: ForwardCache, n_total: int | None = None) -> tuple[dict[str, np.ndarray], Any]:
        """BPTT: gradients of every parameter and of h0, in reverse order of `forward`.

        Consumes the cache (its probabilities are overwritten). Returns (grads, dh0) with dh0 in
        the form of h0. n_total: the positions of the whole window when this cache is a shard's
        (its gradients are then its share of the window's mean)."""
        if cache.stack is None:
            raise RuntimeError("this forward cache has already been used by backward(); run forward again")
        stack, cache.stack = cache.stack, None
        p = self.params
        grads = self.zero_grads()
        T, B = cache.tokens.shape
        H = self.hidden_size
        dlogits = softmax_cross_entropy_backward(cache.probs, cache.targets, n_total)  # (N, V)
        # dL/d(top), written feature-major (H, T, B) and seen time-major: the cells' tuned
        # backward passes work in column form and take this view without a copy
        dtop = np.empty((H, T, B), dtype=self.dtype)
        linear_backward(dlogits, cache.top.reshape(T * B, H), p[HEAD_WEIGHT], grads[HEAD_WEIGHT],
                        grads[HEAD_BIAS], dx_out=dtop.reshape(H, T * B).T)
        dstate0 = stack_backward(self.cell_module, p, grads, stack, dtop.transpose(1, 2, 0))
        return grads, self.public_state(dstate0)

    @checked()
    def loss_and_grads(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[float, dict[str, np.ndarray], Any]:
        """(loss, grads, h_last): one window's mean loss in nats, dL/dparam for every parameter,
        and the final state to carry into the next window (truncated BPTT)."""
        x, y, state0 = self._check_window(inputs, targets, h0)
        B, T = x.shape
        shards = self._shards(B)
        if len(shards) == 1:  # the plain path
            loss, cache = self._forward(x, y, state0)
            grads, _ = self.backward(cache)
            return loss, grads, self.public_state(cache.h_last)
        # the window's streams shared out among the workers (parallel.py); the dropout masks
        # are drawn first, as the plain path would draw them, and each shard takes its streams'
        masks = (draw_masks(self.dropout_rng, self.num_layers, (T, B, self.hidden_size), self.dropout, self.dtype)
                 if self.dropout else None)

        def shard(sl: slice) -> tuple[float, dict[str, np.ndarray], State]:
            loss, cache = self._forward(x[sl], y[sl], _state_part(state0, sl),
                                        [m[:, sl] for m in masks] if masks else None)
            grads, _ = self.backward(cache, n_total=x.size)
            return loss * (sl.stop - sl.start) * T, grads, cache.h_last

        results = run_shards(shard, shards)
        grads = results[0][1]
        for _, g, _ in results[1:]:  # in shard order: a fixed worker count gives fixed numbers
            for name, arr in g.items():
                grads[name] += arr
        loss = sum(r[0] for r in results) / x.size
        return loss, grads, self.public_state(_state_cat([r[2] for r in results]))

    def _shards(self, batch_size: int) -> list[slice]:
        # cells whose steps run as compiled kernels share out finer
        return stream_shards(batch_size, self.hidden_size, threads.workers(), min_shard_work(self.cell))

    @checked(batch_size=Range(1))
    def workers_for(self, batch_size: int) -> int:
        """How many worker threads share a window of `batch_size` streams with the current
        thread setting: its results are bit-identical for a fixed count (a checkpoint records it)."""
        return len(self._shards(batch_size))

    # ----------------------------------------------------------------------------------------
    # inference (dropout off)

    def _eval_forward(self, x: np.ndarray, state0: State) -> tuple[np.ndarray, State]:
        threads.ensure_threads()
        top, state_n, _ = stack_forward(self.cell_module, self.params, self.num_layers, np.ascontiguousarray(x.T),
                                        state0, need_cache=False, options=self.stack)
        return self._head_forward(top), state_n

    @checked()
    def loss(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[float, Any]:
        """Forward only: (mean loss in nats over B*T, final state), for evaluation."""
        x, y, state0 = self._check_window(inputs, targets, h0)

        def shard(sl: slice) -> tuple[float, State]:
            logits, state_n = self._eval_forward(x[sl], _state_part(state0, sl))
            loss, _ = softmax_cross_entropy_forward(logits, np.ascontiguousarray(y[sl].T).reshape(-1))
            return loss, state_n

        shards = self._shards(x.shape[0])
        results = run_shards(shard, shards)
        if len(results) == 1:  # the plain path's own number
            return results[0][0], self.public_state(results[0][1])
        loss = sum(r[0] * (sl.stop - sl.start) for r, sl in zip(results, shards)) / x.shape[0]
        return loss, self.public_state(_state_cat([r[1] for r in results]))

    @checked()
    def nll(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[np.ndarray, Any]:
        """Forward only: (nats of every position (B, T) in float64, final state)."""
        x, y, state0 = self._check_window(inputs, targets, h0)

        def shard(sl: slice) -> tuple[np.ndarray, State]:
            logits, state_n = self._eval_forward(x[sl], _state_part(state0, sl))  # (N, V) time-major
            y_flat = np.ascontiguousarray(y[sl].T).reshape(-1)
            logits -= logits.max(axis=1, keepdims=True)
            logz = np.log(np.exp(logits).sum(axis=1, dtype=np.float64))
            nll = logz - logits[np.arange(len(y_flat)), y_flat]
            return nll.reshape(x.shape[1], -1).T, state_n

        results = run_shards(shard, self._shards(x.shape[0]))
        return (np.concatenate([r[0] for r in results]),
                self.public_state(_state_cat([r[1] for r in results])))

    @checked()
    def logits(self, inputs: Any, h0: Any = None) -> tuple[np.ndarray, Any]:
        """Forward only: logits (B, T, V) for every position and the final state."""
        x = self.check_tokens(inputs, "inputs")
        B, T = x.shape
        logits, state_n = self._eval_forward(x, self.check_state(h0, B))
        return logits.reshape(T, B, self.vocab_size).transpose(1, 0, 2), self.public_state(state_n)

    @checked()
    def step(self, tokens: Any, h: Any = None) -> tuple[np.ndarray, Any]:
        """One generation step: feed token ids (B,) with state h.
        Returns (logits (B, V), new state), both new arrays."""
        tok = self.check_tokens(np.asarray(tokens).reshape(-1), "tokens", ndim=1)
        stepper = self.stepper(tok.shape[0], h)
        return stepper(tok).copy(), self.public_state(stepper.state)

    @checked(batch_size=Range(1))
    def stepper(self, batch_size: int = 1, h: Any = None) -> "Stepper":
        """A `Stepper` for generating `batch_size` streams one character at a time from state h."""
        from .stepper import Stepper

        return Stepper(self, batch_size, h)

    # ----------------------------------------------------------------------------------------
    # persistence, in modelfile.py: arrays in safetensors (no code can run on load), structure in JSON

    @checked()
    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        """Write the parameters and configuration to `path` (safetensors, written atomically)."""
        from ..io.modelfile import save_model

        save_model(self, path, metadata)

    @classmethod
    @checked()
    def load(cls, path: str | Path, dtype: DType | None = None) -> "CharRNN":
        """Read a model written by `save` (or a training checkpoint); `dtype` converts on load."""
        from ..io.modelfile import load_model

        return load_model(path, dtype)

    def __repr__(self) -> str:
        c = self.config
        extra = f", cell={c['cell']!r}" if c["cell"] != _DEFAULT_CELL else ""
        extra += f", dropout={c['dropout']:g}" if c["dropout"] else ""
        extra += "".join(f", {k}=True" for k, v in self.stack.config().items() if v)
        return (
            f"CharRNN(vocab_size={c['vocab_size']}, hidden_size={c['hidden_size']}, "
            f"num_layers={c['num_layers']}, dtype={c['dtype']!r}{extra}) with {self.num_parameters:,} parameters"
        )


# the constructor's default cell, which the repr leaves out as it leaves out dropout 0
_DEFAULT_CELL = inspect.signature(CharRNN).parameters["cell"].default


def _state_part(state: State, sl: slice) -> State:
    """The streams `sl` of a state: (L, B_i, H) parts, contiguous."""
    return tuple(np.ascontiguousarray(part[:, sl]) for part in state)


def _state_cat(states: list[State]) -> State:
    """Shards' states joined along the streams, in shard order."""
    if len(states) == 1:
        return states[0]
    return tuple(np.concatenate([s[i] for s in states], axis=1) for i in range(len(states[0])))


def check_stack(residual: Any, layer_norm: Any) -> StackOptions:
    """The stack's options, each a bool (a model file's metadata may say anything)."""
    for name, value in (("residual", residual), ("layer_norm", layer_norm)):
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    return StackOptions(bool(residual), bool(layer_norm))


def check_dropout(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1), got {p!r}")
    return float(p)
