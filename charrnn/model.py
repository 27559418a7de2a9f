"""The character-level RNN: parameters, initialisation, forward, BPTT and generation steps.

The network of the seeds, with `num_layers` (L) stacked tanh layers:

    a_t^k = W^k h_{t-1}^k + U^k x_t^k + b^k        x_t^0 = one-hot(char_t),  x_t^k = h_t^{k-1}
    h_t^k = tanh(a_t^k)
    o_t   = V h_t^{L-1} + c,     p_t = softmax(o_t),     loss = mean over B*T of -log p_t[y_t]

Parameters carry PyTorch's names and layouts, `torch.nn.RNN(V, H, num_layers=L)` followed by
`torch.nn.Linear(H, V)`, so moving weights between the two is a copy, never a transpose:

    seeds            charrnn / PyTorch name       shape
    U   (W_xh)       rnn.weight_ih_l{k}           (H, V) for k = 0, (H, H) above
    W   (W_hh)       rnn.weight_hh_l{k}           (H, H)
    b   (b_h)        rnn.bias_ih_l{k} + rnn.bias_hh_l{k}   (H,) each; only their sum matters
    V   (W_hy)       head.weight                  (V, H)
    c   (b_y)        head.bias                    (V,)

(PyTorch keeps two hidden biases; they always appear summed, so each gets the same gradient.)
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ops, threads
from .errors import CheckpointError, ConfigError
from .serialization import read_arrays, read_header, write_arrays

DTYPES = {"float32": np.float32, "float64": np.float64}

# Initialisation schemes (`init=`):
#   "pytorch":    every tensor U(-1/sqrt(H), 1/sqrt(H)), as nn.RNN and nn.Linear do.
#   "orthogonal": recurrent W orthogonal (keeps the backward signal's norm through time at
#                 the start), other weights as "pytorch", biases zero.
#   "normal":     the seeds' min-char-rnn: weights N(0, 0.01^2), biases zero.
INITS = ("pytorch", "orthogonal", "normal")

MODEL_FORMAT = "charrnn.model"
MODEL_FORMAT_VERSION = 1

# Refuse models whose parameter count would not fit a plausible machine before allocating them.
MAX_PARAMETERS = 2_000_000_000


def parameter_shapes(vocab_size: int, hidden_size: int, num_layers: int) -> dict[str, tuple[int, ...]]:
    """The name -> shape table of a model; the order is the order of `CharRNN.params`."""
    V, H = vocab_size, hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(num_layers):
        shapes[f"rnn.weight_ih_l{k}"] = (H, V if k == 0 else H)
        shapes[f"rnn.weight_hh_l{k}"] = (H, H)
        shapes[f"rnn.bias_ih_l{k}"] = (H,)
        shapes[f"rnn.bias_hh_l{k}"] = (H,)
    shapes["head.weight"] = (V, H)
    shapes["head.bias"] = (V,)
    return shapes


def count_parameters(vocab_size: int, hidden_size: int, num_layers: int) -> int:
    """sum of the sizes in `parameter_shapes`, in closed form: the sizes come from flags and
    files and are checked with this before anything (even the shape table) is built."""
    V, H, L = vocab_size, hidden_size, num_layers
    return H * V + (L - 1) * H * H + L * (H * H + 2 * H) + V * H + V


def _check_size(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def resolve_dtype(dtype: Any) -> np.dtype:
    """'float32' / 'float64' (or the NumPy types) -> np.dtype; anything else is an error."""
    key = np.dtype(dtype).name if isinstance(dtype, (type, np.dtype)) else dtype
    if key not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return np.dtype(DTYPES[key])


def init_parameters(
    shapes: dict[str, tuple[int, ...]], hidden_size: int, init: str, rng: np.random.Generator, dtype: np.dtype
) -> dict[str, np.ndarray]:
    """Fresh parameters for `shapes` under the scheme `init` (see INITS), drawn from `rng`."""
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    bound = 1.0 / math.sqrt(hidden_size)
    params = {}
    for name, shape in shapes.items():
        is_bias = len(shape) == 1
        if init == "normal":
            value = np.zeros(shape) if is_bias else rng.standard_normal(shape) * 0.01
        elif init == "orthogonal" and is_bias:
            value = np.zeros(shape)
        elif init == "orthogonal" and "weight_hh" in name:
            value = orthogonal(shape[0], rng)
        else:
            value = rng.uniform(-bound, bound, size=shape)
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random n x n orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@dataclass
class ForwardCache:
    """What the backward pass needs from one forward pass over a window (time-major).

    The arrays are views into the model's workspace for this window shape: they stay valid
    until the next forward pass of the same shape, and `backward` refuses a cache whose
    workspace has been reused since (see `_Workspace`).
    """

    tokens: np.ndarray  # (T, B) input ids
    targets: np.ndarray  # (N,) target ids, time-major
    h0: np.ndarray  # (L, B, H)
    hs: list[np.ndarray]  # L views (T, B, H) of the hidden states
    probs: np.ndarray  # (N, V) softmax output, consumed by the backward
    workspace: "_Workspace | None" = None
    generation: int = 0


class _Workspace:
    """Every window-sized buffer of one (B, T) shape, allocated once and reused by every call.

    Reuse keeps the stacked inputs mostly built: the constant row is written once, and a new
    window only clears the previous window's one-hot entries and sets its own. (The allocations
    themselves are cheap here: the C library hands a freed block straight back.) Layouts as in
    ops (column form, K_k = H + I_k + 1):

        X[k]     (T+1, K_k, B)  layer k step-major: [h_{t-1}; x_t; 1] per step (ops.rnn_forward)
        XT[k]    (K_k, T+1, B)  the same, feature-major, for the products over all steps
        wcat[k]  (H, K_k)       [W U b] of layer k, restacked from the live parameters each call
        logits   (N, V)         logits, then probabilities, then dL/dlogits, all in place
        dh, dh2  (H, T, B)      dL/dh arriving at a layer, consumed as dL/da; dh2 for the layer below
    """

    def __init__(self, V: int, H: int, L: int, B: int, T: int, dtype: np.dtype, training: bool) -> None:
        self.X, self.XT = [], []
        for k in range(L):
            K = H + (V if k == 0 else H) + 1
            X = np.zeros((T + 1, K, B), dtype=dtype)
            X[:T, -1] = 1  # the constant input that multiplies b; never overwritten
            self.X.append(X)
            self.XT.append(np.zeros((K, T + 1, B), dtype=dtype))
        self.onehot_at: np.ndarray | None = None  # flat indices of the ones now set in X[0]
        self.wcat = [np.empty((H, x.shape[1]), dtype=dtype) for x in self.X]
        self.logits = np.empty((T * B, V), dtype=dtype)
        self.dh = np.empty((H, T, B), dtype=dtype) if training else None
        self.dh2 = np.empty((H, T, B), dtype=dtype) if training and L > 1 else None
        # bumped by every forward pass; a cache remembers the value it was made under
        self.generation = 0

    def set_tokens(self, tokens: np.ndarray, H: int) -> None:
        """Write onehot(tokens) into the input rows of X[0], clearing the previous call's ones.

        tokens: (T, B). Element (t, H + v, b) of X[0] sits at flat offset (t*K + H + v)*B + b.
        """
        X0 = self.X[0]
        T, B = tokens.shape
        K = X0.shape[1]
        flat = X0.reshape(-1)
        if self.onehot_at is not None:
            flat[self.onehot_at] = 0
        t = np.arange(T).reshape(T, 1)
        at = ((t * K + H + tokens) * B + np.arange(B)).reshape(-1)
        flat[at] = 1
        self.onehot_at = at


# How many window shapes a model keeps buffers for (training and evaluation windows, the last,
# shorter window of a text, ...); the least recently used is dropped beyond this.
MAX_WORKSPACES = 4


class CharRNN:
    """A vanilla (Elman, tanh) RNN language model over one-hot characters.

    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=L, dtype="float32", seed=0)
    loss, grads, h_last = model.loss_and_grads(inputs, targets, h0=None)

    `params` maps PyTorch names (see the module docstring) to the live arrays: editing them in
    place changes the model, which is how the optimizers update it.

    A model reuses its window buffers between calls (`_Workspace`), so one model must not run two
    computations at the same time from different threads.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        dtype: Any = "float32",
        seed: int | None = 0,
        init: str = "pytorch",
    ) -> None:
        self.vocab_size = _check_size("vocab_size", vocab_size, minimum=2)
        self.hidden_size = _check_size("hidden_size", hidden_size)
        self.num_layers = _check_size("num_layers", num_layers)
        self.dtype = resolve_dtype(dtype)
        self.init = init
        n = count_parameters(self.vocab_size, self.hidden_size, self.num_layers)
        if n > MAX_PARAMETERS:
            raise ConfigError(
                f"a model with {n:,} parameters ({n * self.dtype.itemsize / 2**30:.1f} GiB) is too large"
            )
        shapes = parameter_shapes(self.vocab_size, self.hidden_size, self.num_layers)
        self.params: dict[str, np.ndarray] = init_parameters(
            shapes, self.hidden_size, init, np.random.default_rng(seed), self.dtype
        )

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
        }

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def zero_grads(self) -> dict[str, np.ndarray]:
        # np.zeros rather than np.zeros_like: the same arrays for a fifth of the Python overhead,
        # which shows at B=1 where a whole window costs a few hundred microseconds
        return {name: np.zeros(p.shape, p.dtype) for name, p in self.params.items()}

    def initial_state(self, batch_size: int) -> np.ndarray:
        """h0 = 0, shape (L, B, H)."""
        return np.zeros((self.num_layers, batch_size, self.hidden_size), dtype=self.dtype)

    def _layer(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(U, W, b_ih, b_hh) of layer k, looked up live (the optimizers update them in place)."""
        names = self.__dict__.get("_layer_names")
        if names is None:  # built once; models made by from_arrays skip __init__
            names = self.__dict__["_layer_names"] = [
                tuple(f"rnn.{n}_l{i}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                for i in range(self.num_layers)
            ]
        p = self.params
        u, w, bi, bh = names[k]
        return p[u], p[w], p[bi], p[bh]

    def _check_tokens(self, tokens: Any, name: str, ndim: int = 2) -> np.ndarray:
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

    def _check_window(self, inputs: Any, targets: Any, h0: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A window's (inputs, targets, h0), validated: ids (B, T) in range, h0 (L, B, H)."""
        x = self._check_tokens(inputs, "inputs")
        y = self._check_tokens(targets, "targets")
        if x.shape != y.shape:
            raise ConfigError(f"inputs {x.shape} and targets {y.shape} must have the same shape")
        return x, y, self._check_state(h0, x.shape[0])

    def _check_state(self, h0: Any, batch_size: int) -> np.ndarray:
        if h0 is None:
            return self.initial_state(batch_size)
        h = np.asarray(h0)
        want = (self.num_layers, batch_size, self.hidden_size)
        if h.shape != want:
            raise ConfigError(f"h0 must have shape (L, B, H) = {want}, got {h.shape}")
        return np.ascontiguousarray(h, dtype=self.dtype)

    def _workspace(self, B: int, T: int, training: bool) -> _Workspace:
        """The reusable buffers for windows of this shape (see `_Workspace`)."""
        pool: dict[tuple, _Workspace] = self.__dict__.setdefault("_workspaces", {})
        key = (B, T, training, self.dtype)
        ws = pool.pop(key, None)
        if ws is None:
            if len(pool) >= MAX_WORKSPACES:
                del pool[next(iter(pool))]  # dicts keep insertion order: the least recently used
            ws = _Workspace(self.vocab_size, self.hidden_size, self.num_layers, B, T, self.dtype, training)
        pool[key] = ws  # (re)inserted last: the most recently used
        return ws

    # ----------------------------------------------------------------------------------------
    # forward and backward over a window

    def _stack_forward(
        self, tokens_tb: np.ndarray, h0: np.ndarray, ws: _Workspace, training: bool
    ) -> list[np.ndarray]:
        """Run every layer over the window, leaving the states in ws.X (and ws.XT, see below).

        training: make the feature-major copy XT of every layer (the backward pass needs it);
        otherwise only the top layer's states are copied, for the output layer.
        Returns L views (T, B, H) of the hidden states.
        """
        threads.ensure_threads()
        ws.generation += 1
        H = self.hidden_size
        ws.set_tokens(tokens_tb, H)
        for k in range(self.num_layers):
            X = ws.X[k]
            X[0, :H] = h0[k].T
            if k > 0:
                X[:-1, H : 2 * H] = ws.X[k - 1][1:, :H]  # this layer's inputs: the states below
            U, W, b_ih, b_hh = self._layer(k)
            ops.rnn_forward(X, ops.stack_weights(W, U, b_ih, b_hh, out=ws.wcat[k]))
            if training:
                np.copyto(ws.XT[k], X.transpose(1, 0, 2))
        if not training:
            np.copyto(ws.XT[-1][:H, 1:], ws.X[-1][1:, :H].transpose(1, 0, 2))
        return [X[1:, :H].transpose(0, 2, 1) for X in ws.X]

    def _head_forward(self, ws: _Workspace, out: np.ndarray | None) -> np.ndarray:
        """Logits (N, V) of the top layer's states, time-major."""
        H = self.hidden_size
        top = ws.XT[-1][:H, 1:].reshape(H, -1)  # (H, N), a view
        return ops.linear_forward(top.T, self.params["head.weight"], self.params["head.bias"], out=out)

    def forward(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[float, ForwardCache]:
        """Loss (mean nats over B*T) of a window and the cache for `backward`.

        inputs, targets: int (B, T).  h0: (L, B, H) or None for zeros.
        The cache lives in buffers reused by the next forward pass of the same shape: call
        `backward` before that (it raises if the cache has been overwritten).
        """
        x, y, h0 = self._check_window(inputs, targets, h0)
        B, T = x.shape
        ws = self._workspace(B, T, training=True)
        tokens = np.ascontiguousarray(x.T)  # (T, B)
        hs = self._stack_forward(tokens, h0, ws, training=True)
        logits = self._head_forward(ws, out=ws.logits)  # (N, V)
        y_flat = np.ascontiguousarray(y.T).reshape(-1)  # time-major, like the logits
        loss, probs = ops.softmax_cross_entropy_forward(logits, y_flat)
        return loss, ForwardCache(tokens, y_flat, h0, hs, probs, ws, ws.generation)

    def backward(self, cache: ForwardCache) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """BPTT: gradients of every parameter and of h0, in reverse order of `forward`.

        Consumes the cache (its probabilities are overwritten). Returns (grads, dh0 (L, B, H)).
        """
        ws = cache.workspace
        if ws is None or cache.generation != ws.generation or ws.dh is None:
            raise RuntimeError(
                "this forward cache has been overwritten by a later forward pass of the same shape; "
                "call backward(cache) before the next forward(...)"
            )
        ws.generation += 1  # the probabilities are consumed below: a second backward must fail
        p = self.params
        grads = self.zero_grads()
        T, B = cache.tokens.shape
        H = self.hidden_size
        dlogits = ops.softmax_cross_entropy_backward(cache.probs, cache.targets)  # (N, V)
        top = ws.XT[-1][:H, 1:].reshape(H, T * B)
        dh, dh_below = ws.dh, ws.dh2
        ops.linear_backward(  # dL/dh of the top layer lands in dh, feature-major
            dlogits, top.T, p["head.weight"], grads["head.weight"], grads["head.bias"],
            dx_out=dh.reshape(H, -1).T,
        )
        dh0 = np.empty_like(cache.h0)
        for k in range(self.num_layers - 1, -1, -1):
            U, W, _, _ = self._layer(k)
            XT = ws.XT[k]
            da, dh0_k = ops.rnn_backward(dh, XT[:H, 1:], XT[:H, 0], W, grads[f"rnn.weight_hh_l{k}"])
            dh0[k] = dh0_k.T
            ops.rnn_input_backward(
                da, XT, U,
                grads[f"rnn.weight_ih_l{k}"], grads[f"rnn.bias_ih_l{k}"], grads[f"rnn.bias_hh_l{k}"],
                dx_out=dh_below if k > 0 else None,
            )
            dh, dh_below = dh_below, dh  # dL/dh of the layer below; da of this layer is spent
        return grads, dh0

    def loss_and_grads(
        self, inputs: Any, targets: Any, h0: Any = None
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """(loss, grads, h_last): one window's mean loss in nats, dL/dparam for every parameter,
        and the final hidden state (L, B, H) to carry into the next window (truncated BPTT)."""
        loss, cache = self.forward(inputs, targets, h0)
        h_last = np.stack([h[-1] for h in cache.hs])
        grads, _ = self.backward(cache)
        return loss, grads, h_last

    # ----------------------------------------------------------------------------------------
    # inference

    def loss(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[float, np.ndarray]:
        """Forward only: (mean loss in nats over B*T, final state (L, B, H)), for evaluation.

        The same numbers as `forward`'s loss, without the backward pass's copies or a cache,
        and without materialising logits for the caller (the softmax runs in a reused buffer).
        """
        x, y, h0 = self._check_window(inputs, targets, h0)
        B, T = x.shape
        ws = self._workspace(B, T, training=False)
        hs = self._stack_forward(np.ascontiguousarray(x.T), h0, ws, training=False)
        logits = self._head_forward(ws, out=ws.logits)
        loss, _ = ops.softmax_cross_entropy_forward(logits, np.ascontiguousarray(y.T).reshape(-1))
        return loss, np.stack([h[-1] for h in hs])

    def logits(self, inputs: Any, h0: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Forward only: logits (B, T, V) for every position and the final state (L, B, H)."""
        x = self._check_tokens(inputs, "inputs")
        B, T = x.shape
        h0 = self._check_state(h0, B)
        ws = self._workspace(B, T, training=False)
        hs = self._stack_forward(np.ascontiguousarray(x.T), h0, ws, training=False)
        out = self._head_forward(ws, out=None)  # a fresh array: the caller keeps it
        h_last = np.stack([h[-1] for h in hs])
        return out.reshape(T, B, self.vocab_size).transpose(1, 0, 2), h_last

    def step(self, tokens: Any, h: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """One generation step: feed token ids (B,) with state h (L, B, H).
        Returns (logits (B, V), new state (L, B, H)), both new arrays.

        Generation calls this once per character, so it is written for a small B: no window
        buffers, the input column looked up rather than multiplied, seven NumPy calls a layer,
        and validation that costs no reductions when B = 1."""
        tok = np.asarray(tokens).reshape(-1)
        B = tok.shape[0]
        if B == 1 and tok.dtype.kind in "iu" and 0 <= tok[0] < self.vocab_size:
            first = int(tok[0])
        else:
            tok, first = self._check_tokens(tok, "tokens", ndim=1), None
        want = (self.num_layers, B, self.hidden_size)
        if not (isinstance(h, np.ndarray) and h.dtype == self.dtype and h.shape == want):
            h = self._check_state(h, B)
        threads.ensure_threads()
        p = self.params
        h_new = np.empty_like(h)
        for k in range(self.num_layers):
            U, W, b_ih, b_hh = self._layer(k)
            if B == 1:  # a matrix-vector product: BLAS's gemv is faster here than a 1-row gemm
                np.matmul(W, h[k, 0], out=h_new[k, 0])
                a = h_new[k]
            else:
                a = np.matmul(h[k], W.T, out=h_new[k])  # W h_{t-1}
            if k > 0:
                a += h_new[k - 1] @ U.T  # U x_t, x_t the state of the layer below
            elif first is not None:
                a[0] += U[:, first]  # U x_t for one-hot x_t: a column of U
            else:
                a += U.T[tok]
            a += b_ih
            a += b_hh
            np.tanh(a, out=a)
        if B == 1:
            logits = (p["head.weight"] @ h_new[-1, 0]).reshape(1, -1)
        else:
            logits = h_new[-1] @ p["head.weight"].T
        logits += p["head.bias"]
        return logits, h_new

    def stepper(self, batch_size: int = 1, h: Any = None) -> "Stepper":
        """A `Stepper` for generating `batch_size` streams one character at a time from state h."""
        return Stepper(self, batch_size, h)

    # ----------------------------------------------------------------------------------------
    # persistence: arrays in safetensors (no code can run on load), structure in JSON

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        """Write the parameters and configuration to `path` (safetensors, written atomically)."""
        meta = {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "model": self.config}
        if metadata:
            meta["extra"] = metadata
        write_arrays(path, self.params, meta)

    @classmethod
    def load(cls, path: str | Path, dtype: Any = None) -> "CharRNN":
        """Read a model written by `save` (or a training checkpoint); `dtype` converts on load.

        The structure comes from the metadata and is checked against the file's array table
        before any array is read, so a damaged or hostile file fails with a CheckpointError."""
        meta, table = read_header(path)
        config = validate_config(meta.get("model"), str(path), len(table))
        shapes = parameter_shapes(config["vocab_size"], config["hidden_size"], config["num_layers"])
        expected = {name: (shape, config["dtype"]) for name, shape in shapes.items()}
        arrays, _ = read_arrays(path, expected, allow_extra=True)
        return cls.from_arrays(arrays, config, dtype=dtype, source=str(path))

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], config: Any, dtype: Any = None, source: str = "checkpoint"
    ) -> "CharRNN":
        """Rebuild a model from its configuration and parameter arrays, checking both."""
        config = validate_config(config, source)
        model = cls.__new__(cls)
        model.vocab_size = config["vocab_size"]
        model.hidden_size = config["hidden_size"]
        model.num_layers = config["num_layers"]
        model.init = config["init"]
        model.dtype = resolve_dtype(dtype) if dtype is not None else config["dtype"]
        shapes = parameter_shapes(model.vocab_size, model.hidden_size, model.num_layers)
        missing = [n for n in shapes if n not in arrays]
        if missing:
            raise CheckpointError(f"{source}: missing parameters {', '.join(missing)}")
        model.params = {}
        for name, shape in shapes.items():
            a = np.asarray(arrays[name])
            if a.shape != shape:
                raise CheckpointError(f"{source}: parameter {name} has shape {a.shape}, expected {shape}")
            if a.dtype != config["dtype"]:
                raise CheckpointError(f"{source}: parameter {name} is {a.dtype}, the metadata says {config['dtype']}")
            if not np.all(np.isfinite(a)):
                raise CheckpointError(f"{source}: parameter {name} holds NaN or infinite values")
            model.params[name] = np.array(a, dtype=model.dtype, order="C")  # owned and writable
        return model

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CharRNN(vocab_size={c['vocab_size']}, hidden_size={c['hidden_size']}, "
            f"num_layers={c['num_layers']}, dtype={c['dtype']!r}) with {self.num_parameters:,} parameters"
        )


class Stepper:
    """Generation one character at a time, with the state and buffers kept between calls.

        stepper = model.stepper(batch_size=1, h=h)   # h: (L, B, H) or None for zeros
        logits = stepper(token_ids)                 # (B, V), valid until the next call
        stepper.h                                   # the current state (L, B, H), a copy

    The same arithmetic as `CharRNN.step` (tests/test_fast.py holds them together), without its
    per-call validation of the state and its fresh arrays. For one stream the token may be a
    plain int and each layer is a matrix-vector product plus four small in-place operations: the
    Python around them is kept to a few dictionary lookups, which at H=512 is a third of the
    time of `step`. It reads the model's live parameters at every call, so it stays right while
    an optimizer changes them.
    """

    def __init__(self, model: CharRNN, batch_size: int = 1, h: Any = None) -> None:
        self.model = model
        self.batch_size = _check_size("batch_size", batch_size)
        L, H, V = model.num_layers, model.hidden_size, model.vocab_size
        self._h = model._check_state(h, self.batch_size).copy()  # (L, B, H), updated in place
        self._logits = np.empty((self.batch_size, V), dtype=model.dtype)
        self._a = np.empty((self.batch_size, H), dtype=model.dtype)
        model._layer(0)  # builds the cached parameter names
        self._names = model.__dict__["_layer_names"]
        # one stream: 1-D views made once, so that a call creates no array objects
        self._h1 = [self._h[k, 0] for k in range(L)]
        self._a1, self._logits1 = self._a[0], self._logits[0]
        threads.ensure_threads()

    @property
    def h(self) -> np.ndarray:
        return self._h.copy()

    def reset(self, h: Any = None) -> None:
        self._h[...] = self.model._check_state(h, self.batch_size)

    def __call__(self, tokens: Any) -> np.ndarray:
        if self.batch_size == 1:
            try:
                tok = operator.index(tokens)  # a Python or NumPy integer
            except TypeError:
                tok = None
            if tok is not None and 0 <= tok < self.model.vocab_size and not isinstance(tokens, bool):
                return self._step_one(tok)
        return self._step_batch(tokens)

    def _step_one(self, tok: int) -> np.ndarray:
        p, a, hs = self.model.params, self._a1, self._h1
        for k, (u, w, bi, bh) in enumerate(self._names):
            np.matmul(p[w], hs[k], out=a)  # W h_{t-1}
            if k == 0:
                a += p[u][:, tok]  # U x_t for one-hot x_t: a column of U
            else:
                a += p[u] @ hs[k - 1]  # U x_t, x_t the new state of the layer below
            a += p[bi]
            a += p[bh]
            np.tanh(a, out=hs[k])
        np.matmul(p["head.weight"], hs[-1], out=self._logits1)
        self._logits1 += p["head.bias"]
        return self._logits

    def _step_batch(self, tokens: Any) -> np.ndarray:
        model, h, a = self.model, self._h, self._a
        tok = np.asarray(tokens).reshape(-1)
        if tok.shape[0] != self.batch_size:
            raise ConfigError(f"tokens must have shape ({self.batch_size},), got {np.shape(tokens)}")
        tok = model._check_tokens(tok, "tokens", ndim=1)
        for k in range(model.num_layers):
            U, W, b_ih, b_hh = model._layer(k)
            np.matmul(h[k], W.T, out=a)
            a += U.T[tok] if k == 0 else h[k - 1] @ U.T
            a += b_ih
            a += b_hh
            np.tanh(a, out=h[k])
        p = model.params
        np.matmul(h[-1], p["head.weight"].T, out=self._logits)
        self._logits += p["head.bias"]
        return self._logits


def validate_config(config: Any, source: str, n_arrays: int | None = None) -> dict[str, Any]:
    """A model configuration read from a file, checked field by field (it may be hostile).

    `n_arrays`, the number of arrays the file holds, bounds the layer count before the
    4L + 2 entry shape table is built: a tiny file cannot make us build a huge one."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: no model configuration in the metadata")
    try:
        out = {
            "vocab_size": _check_size("vocab_size", config.get("vocab_size"), minimum=2),
            "hidden_size": _check_size("hidden_size", config.get("hidden_size")),
            "num_layers": _check_size("num_layers", config.get("num_layers")),
            "dtype": resolve_dtype(config.get("dtype")),
            "init": config.get("init", "pytorch"),
        }
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{source}: bad model configuration: {e}") from None
    if out["init"] not in INITS:
        raise CheckpointError(f"{source}: bad model configuration: unknown init {out['init']!r}")
    if n_arrays is not None and 4 * out["num_layers"] + 2 > n_arrays:
        raise CheckpointError(
            f"{source}: the metadata declares {out['num_layers']:,} layers but the file holds only {n_arrays} arrays"
        )
    n = count_parameters(out["vocab_size"], out["hidden_size"], out["num_layers"])
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{source}: bad model configuration: {n:,} parameters is implausibly large")
    return out


# --------------------------------------------------------------------------------------------
# The plain path: the network written one equation per line with the reference ops (time-major,
# fresh arrays, no stacking, no workspaces, no compiled loops). CharRNN's tuned methods must give
# the same numbers; tests/test_fast.py checks it in float64 over random shapes.


def reference_loss_and_grads(
    model: CharRNN, inputs: np.ndarray, targets: np.ndarray, h0: np.ndarray | None = None
) -> tuple[float, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(loss, grads, h_last, dh0) of one window, computed the plain way. inputs, targets: (B, T)."""
    p, L, H = model.params, model.num_layers, model.hidden_size
    x = np.asarray(inputs).T  # (T, B)
    y = np.asarray(targets).T.reshape(-1)
    T, B = x.shape
    N = T * B
    h0 = model.initial_state(B) if h0 is None else np.asarray(h0, dtype=model.dtype)
    hs = []
    for k in range(L):
        U, W, b_ih, b_hh = (p[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        xa = ops.embedding_forward(U, x) if k == 0 else hs[-1] @ U.T  # U x_t
        hs.append(ops.rnn_forward_reference(xa + b_ih + b_hh, W, h0[k]))
    top = hs[-1].reshape(N, H)
    logits = top @ p["head.weight"].T + p["head.bias"]
    loss, dlogits = ops.softmax_cross_entropy_reference(logits, y)
    grads = {name: np.zeros_like(a) for name, a in p.items()}
    grads["head.weight"] += dlogits.T @ top
    grads["head.bias"] += dlogits.sum(axis=0)
    dhs = (dlogits @ p["head.weight"]).reshape(T, B, H)
    dh0 = np.empty_like(h0)
    for k in range(L - 1, -1, -1):
        U, W = p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"]
        da, dh0[k] = ops.rnn_backward_reference(dhs, hs[k], h0[k], W, grads[f"rnn.weight_hh_l{k}"])
        db = da.sum(axis=(0, 1))
        grads[f"rnn.bias_ih_l{k}"] += db
        grads[f"rnn.bias_hh_l{k}"] += db
        if k == 0:
            ops.embedding_backward_reference(grads["rnn.weight_ih_l0"], da, x)
        else:
            grads[f"rnn.weight_ih_l{k}"] += da.reshape(N, H).T @ hs[k - 1].reshape(N, H)
            dhs = da @ U
    return loss, grads, np.stack([h[-1] for h in hs]), dh0


def reference_step(model: CharRNN, tokens: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One generation step the plain way: (logits (B, V), new state (L, B, H))."""
    p = model.params
    below = None
    h_new = np.empty_like(h)
    for k in range(model.num_layers):
        U, W, b_ih, b_hh = (p[f"rnn.{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        ux = U.T[np.asarray(tokens)] if k == 0 else below @ U.T
        h_new[k] = below = np.tanh(h[k] @ W.T + ux + b_ih + b_hh)
    return below @ p["head.weight"].T + p["head.bias"], h_new
