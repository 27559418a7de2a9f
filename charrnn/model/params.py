"""One table of parameter names and shapes per model, and everything derived from it.

The recurrent layers carry the names and layouts of `torch.nn.RNN` / `nn.LSTM` / `nn.GRU`
(prefixed "rnn."), the output layer those of `nn.Linear` ("head."), so moving weights between
charrnn and PyTorch is a copy, never a transpose. A cell with G gate blocks stacks them along
the rows (G = 1, 4 for LSTM's i|f|g|o, 3 for GRU's r|z|n):

    seeds            name                    shape
    U   (W_xh)       rnn.weight_ih_l{k}      (G*H, V) for k = 0, (G*H, H) above
    W   (W_hh)       rnn.weight_hh_l{k}      (G*H, H)
    b   (b_h)        rnn.bias_ih_l{k}        (G*H,)   } PyTorch keeps two biases; only their sum
                     rnn.bias_hh_l{k}        (G*H,)   } matters, except GRU's n gate (r * b_hn)
    V   (W_hy)       head.weight             (V, H)   (K, H) for a task head over K classes / tags
    c   (b_y)        head.bias               (V,)     (K,)
    R                feedback.weight         (G*H, K) the tagger's output-to-hidden recurrence: R y_{t-1}
                                                      joins U x_t in every gate of the first layer

The language model's head predicts the next of V symbols; the task models (classify, tag) have a
head over their K labels (`num_outputs`) and, for the tagger with output recurrence, R
(`feedback`), outside "rnn." so that the recurrent layers still load into PyTorch's modules as
they are.

Creation, counting, initialisation, checkpoint validation and the PyTorch name map all derive
from `parameter_shapes`; no other module spells a parameter name.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..settings import CELLS, DTYPES, INITS
from ..core import CELL_MODULES
from ..errors import ConfigError

# The per-layer parameters of a recurrent layer, in PyTorch's order: (name, rows in units of
# G*H, input columns: "input" for the layer's input size, "hidden" for H, None for a vector).
LAYER_TEMPLATE = (
    ("weight_ih", "input"),
    ("weight_hh", "hidden"),
    ("bias_ih", None),
    ("bias_hh", None),
)
RNN_PREFIX = "rnn."
HEAD_PREFIX = "head."
HEAD_WEIGHT = HEAD_PREFIX + "weight"  # V in the seeds: (V, H)
HEAD_BIAS = HEAD_PREFIX + "bias"  # c in the seeds: (V,)
FEEDBACK_WEIGHT = "feedback.weight"  # R in seed 002: (G*H, K), y_{t-1} -> the first layer's gates

# Refuse models whose parameter count would not fit a plausible machine before allocating them.
MAX_PARAMETERS = 2_000_000_000


def gates(cell: str) -> int:
    """G, the gate blocks stacked in a layer's weights."""
    check_cell(cell)
    return CELL_MODULES[cell].GATES


def check_cell(cell: Any) -> str:
    if cell not in CELLS:
        raise ConfigError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
    return cell


@functools.lru_cache(maxsize=None)  # called per layer per step in generation
def layer_names(k: int) -> tuple[str, str, str, str]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) names of layer k."""
    return tuple(f"{RNN_PREFIX}{n}_l{k}" for n, _ in LAYER_TEMPLATE)  # type: ignore[return-value]


def parameter_shapes(
    vocab_size: int, hidden_size: int, num_layers: int, cell: str = "rnn",
    num_outputs: int | None = None, feedback: bool = False,
) -> dict[str, tuple[int, ...]]:
    """The name -> shape table of a model; its order is the order of `CharRNN.params`.

    num_outputs: K, the head's outputs (None: V, the language model's next symbol).
    feedback: add R (G*H, K), the output-to-hidden recurrence of the tagger."""
    V, H, G = vocab_size, hidden_size, gates(cell)
    K = V if num_outputs is None else num_outputs
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(num_layers):
        for (_, cols), name in zip(LAYER_TEMPLATE, layer_names(k)):
            width = {"input": V if k == 0 else H, "hidden": H, None: None}[cols]
            shapes[name] = (G * H,) if width is None else (G * H, width)
    shapes[HEAD_WEIGHT] = (K, H)
    shapes[HEAD_BIAS] = (K,)
    if feedback:
        shapes[FEEDBACK_WEIGHT] = (G * H, K)
    return shapes


def vocab_axes() -> dict[str, int]:
    """The parameters with one slice per vocabulary symbol, and the axis of those slices: the
    first layer's input columns and the head's output rows."""
    return {layer_names(0)[0]: 1, HEAD_WEIGHT: 0, HEAD_BIAS: 0}


def transplant(params: dict[str, np.ndarray], into: dict[str, np.ndarray], positions: np.ndarray) -> None:
    """Copy a model's parameters into a model with a larger vocabulary, in place in `into`:
    symbol v of the old vocabulary becomes symbol positions[v]; the new symbols' slices keep the
    values `into` was initialised with (as new parameters would be)."""
    axes = vocab_axes()
    for name, target in into.items():
        source = params[name]
        if name in axes:
            index = [slice(None)] * target.ndim
            index[axes[name]] = positions
            target[tuple(index)] = source
        else:
            target[...] = source


def count_parameters(
    vocab_size: int, hidden_size: int, num_layers: int, cell: str = "rnn",
    num_outputs: int | None = None, feedback: bool = False,
) -> int:
    """The sum of the sizes in `parameter_shapes`, in closed form: the sizes come from flags and
    files and are checked with this before anything (even the shape table) is built."""
    V, H, L, G = vocab_size, hidden_size, num_layers, gates(cell)
    K = V if num_outputs is None else num_outputs
    return G * (H * V + (L - 1) * H * H + L * (H * H + 2 * H)) + K * H + K + (G * H * K if feedback else 0)


def torch_state_dicts(params: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The parameters as the state dicts of PyTorch's modules: {"rnn": ..., "head": ...}, and
    {"feedback": ...} (an nn.Linear without bias) for a model with R."""
    out: dict[str, dict[str, np.ndarray]] = {"rnn": {}, "head": {}}
    for name, value in params.items():
        module, _, key = name.partition(".")
        out.setdefault(module, {})[key] = value
    return out


def check_size(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def resolve_dtype(dtype: Any) -> np.dtype:
    """'float32' / 'float64' (or the NumPy types) -> np.dtype; anything else is an error."""
    key = np.dtype(dtype).name if isinstance(dtype, (type, np.dtype)) else dtype
    if key not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return np.dtype(key)


def init_parameters(
    shapes: dict[str, tuple[int, ...]], hidden_size: int, init: str, rng: np.random.Generator, dtype: np.dtype,
    cell: str = "rnn",
) -> dict[str, np.ndarray]:
    """Fresh parameters for `shapes` under the scheme `init`, drawn from `rng` in table order.

    "pytorch":    every tensor U(-1/sqrt(H), 1/sqrt(H)), as nn.RNN / nn.LSTM / nn.GRU and nn.Linear do.
    "orthogonal": each gate block of the recurrent W orthogonal (the backward signal keeps its
                  norm through time at the start), other weights as "pytorch", biases zero, except
                  the LSTM's forget gate, whose bias starts at 1 so that the cell remembers by
                  default (Jozefowicz, Zaremba and Sutskever 2015).
    "normal":     the seeds' min-char-rnn: weights N(0, 0.01^2), biases zero.
    """
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    bound = 1.0 / math.sqrt(hidden_size)
    H = hidden_size
    params = {}
    for name, shape in shapes.items():
        is_bias = len(shape) == 1
        if init == "normal":
            value = np.zeros(shape) if is_bias else rng.standard_normal(shape) * 0.01
        elif init == "orthogonal" and is_bias:
            value = np.zeros(shape)
            if cell == "lstm" and name.startswith(RNN_PREFIX + "bias_ih"):
                value[H : 2 * H] = 1.0  # the forget gate's block
        elif init == "orthogonal" and name.startswith(RNN_PREFIX + "weight_hh"):
            value = np.concatenate([orthogonal(H, rng) for _ in range(shape[0] // H)])
        else:
            value = rng.uniform(-bound, bound, size=shape)
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random n x n orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))
