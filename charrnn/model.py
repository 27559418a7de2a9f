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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ops
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
    return sum(math.prod(s) for s in parameter_shapes(vocab_size, hidden_size, num_layers).values())


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
    """What the backward pass needs from one forward pass over a window (time-major)."""

    tokens: np.ndarray  # (T, B) input ids
    targets: np.ndarray  # (N,) target ids, time-major
    h0: np.ndarray  # (L, B, H)
    hs: list[np.ndarray]  # L arrays (T, B, H)
    probs: np.ndarray  # (N, V) softmax output, consumed by the backward


class CharRNN:
    """A vanilla (Elman, tanh) RNN language model over one-hot characters.

    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=L, dtype="float32", seed=0)
    loss, grads, h_last = model.loss_and_grads(inputs, targets, h0=None)

    `params` maps PyTorch names (see the module docstring) to the live arrays: editing them in
    place changes the model, which is how the optimizers update it.
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
        return {name: np.zeros_like(p) for name, p in self.params.items()}

    def initial_state(self, batch_size: int) -> np.ndarray:
        """h0 = 0, shape (L, B, H)."""
        return np.zeros((self.num_layers, batch_size, self.hidden_size), dtype=self.dtype)

    def _layer(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, W, b) of layer k, with b = b_ih + b_hh."""
        p = self.params
        return p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"], p[f"rnn.bias_ih_l{k}"] + p[f"rnn.bias_hh_l{k}"]

    def _check_tokens(self, tokens: Any, name: str) -> np.ndarray:
        arr = np.asarray(tokens)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ConfigError(f"{name} must have shape (B, T) with B, T >= 1, got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"{name} must be integer token ids, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            raise ConfigError(f"{name} holds ids outside [0, {self.vocab_size}): {arr.min()}..{arr.max()}")
        return arr.astype(np.intp, copy=False)

    def _check_state(self, h0: Any, batch_size: int) -> np.ndarray:
        if h0 is None:
            return self.initial_state(batch_size)
        h = np.asarray(h0)
        want = (self.num_layers, batch_size, self.hidden_size)
        if h.shape != want:
            raise ConfigError(f"h0 must have shape (L, B, H) = {want}, got {h.shape}")
        return np.ascontiguousarray(h, dtype=self.dtype)

    # ----------------------------------------------------------------------------------------
    # forward and backward over a window

    def _stack_forward(self, tokens_tb: np.ndarray, h0: np.ndarray) -> list[np.ndarray]:
        """All layers' hidden states over the window: L arrays (T, B, H)."""
        hs = []
        x = None
        for k in range(self.num_layers):
            U, W, b = self._layer(k)
            if k == 0:
                xa = ops.embedding_forward(U, tokens_tb)  # (T, B, H), a fresh array
            else:
                T, B, H = x.shape
                xa = ops.linear_forward(x.reshape(T * B, H), U, None).reshape(T, B, H)
            xa += b
            x = ops.rnn_forward(xa, W, h0[k])
            hs.append(x)
        return hs

    def forward(self, inputs: Any, targets: Any, h0: Any = None) -> tuple[float, ForwardCache]:
        """Loss (mean nats over B*T) of a window and the cache for `backward`.

        inputs, targets: int (B, T).  h0: (L, B, H) or None for zeros.
        """
        x = self._check_tokens(inputs, "inputs")
        y = self._check_tokens(targets, "targets")
        if x.shape != y.shape:
            raise ConfigError(f"inputs {x.shape} and targets {y.shape} must have the same shape")
        B, T = x.shape
        h0 = self._check_state(h0, B)
        tokens = np.ascontiguousarray(x.T)  # (T, B)
        hs = self._stack_forward(tokens, h0)
        top = hs[-1].reshape(T * B, self.hidden_size)
        logits = ops.linear_forward(top, self.params["head.weight"], self.params["head.bias"])  # (N, V)
        y_flat = np.ascontiguousarray(y.T).reshape(-1)  # time-major, like the logits
        loss, probs = ops.softmax_cross_entropy_forward(logits, y_flat)
        return loss, ForwardCache(tokens, y_flat, h0, hs, probs)

    def backward(self, cache: ForwardCache) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """BPTT: gradients of every parameter and of h0, in reverse order of `forward`.

        Consumes the cache (its probabilities are overwritten). Returns (grads, dh0 (L, B, H)).
        """
        p = self.params
        grads = self.zero_grads()
        T, B = cache.tokens.shape
        H = self.hidden_size
        dlogits = ops.softmax_cross_entropy_backward(cache.probs, cache.targets)
        top = cache.hs[-1].reshape(T * B, H)
        dx = ops.linear_backward(dlogits, top, p["head.weight"], grads["head.weight"], grads["head.bias"])
        dh0 = np.empty_like(cache.h0)
        dhs = dx.reshape(T, B, H)
        for k in range(self.num_layers - 1, -1, -1):
            _, W, _ = self._layer(k)
            da, dh0[k] = ops.rnn_backward(dhs, cache.hs[k], cache.h0[k], W, grads[f"rnn.weight_hh_l{k}"])
            db = da.sum(axis=(0, 1))
            grads[f"rnn.bias_ih_l{k}"] += db
            grads[f"rnn.bias_hh_l{k}"] += db
            dU = grads[f"rnn.weight_ih_l{k}"]
            if k == 0:
                ops.embedding_backward(dU, da, cache.tokens)
            else:
                below = cache.hs[k - 1].reshape(T * B, H)
                dx = ops.linear_backward(da.reshape(T * B, H), below, p[f"rnn.weight_ih_l{k}"], dU, None)
                dhs = dx.reshape(T, B, H)
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

    def logits(self, inputs: Any, h0: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Forward only: logits (B, T, V) for every position and the final state (L, B, H)."""
        x = self._check_tokens(inputs, "inputs")
        B, T = x.shape
        h0 = self._check_state(h0, B)
        hs = self._stack_forward(np.ascontiguousarray(x.T), h0)
        top = hs[-1].reshape(T * B, self.hidden_size)
        out = ops.linear_forward(top, self.params["head.weight"], self.params["head.bias"])
        h_last = np.stack([h[-1] for h in hs])
        return out.reshape(T, B, self.vocab_size).transpose(1, 0, 2), h_last

    def step(self, tokens: Any, h: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """One generation step: feed token ids (B,) with state h (L, B, H).
        Returns (logits (B, V), new state (L, B, H))."""
        logits, h_new = self.logits(np.asarray(tokens).reshape(-1, 1), h)
        return logits[:, 0, :], h_new

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
        meta, _ = read_header(path)
        config = validate_config(meta.get("model"), str(path))
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


def validate_config(config: Any, source: str) -> dict[str, Any]:
    """A model configuration read from a file, checked field by field (it may be hostile)."""
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
    n = count_parameters(out["vocab_size"], out["hidden_size"], out["num_layers"])
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{source}: bad model configuration: {n:,} parameters is implausibly large")
    return out
