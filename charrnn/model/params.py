"""One table of parameter names and shapes per model, and everything derived from it.

The recurrent layers carry the names and layouts of their cell's table (core/: the `PARAMS` of
each cell module, PyTorch's `nn.RNN` / `nn.LSTM` / `nn.GRU` for the built-in cells), prefixed
"rnn." and suffixed with the layer, the output layer those of `nn.Linear` ("head."), so moving
weights between charrnn and PyTorch is a copy, never a transpose. For the built-in cells, with G
gate blocks stacked along the rows (G = 1, 4 for LSTM's i|f|g|o, 3 for GRU's r|z|n):

    seeds            name                    shape
    U   (W_xh)       rnn.weight_ih_l{k}      (G*H, V) for k = 0, (G*H, H) above
    W   (W_hh)       rnn.weight_hh_l{k}      (G*H, H)
    b   (b_h)        rnn.bias_ih_l{k}        (G*H,)   } PyTorch keeps two biases; only their sum
                     rnn.bias_hh_l{k}        (G*H,)   } matters, except GRU's n gate (r * b_hn)
    V   (W_hy)       head.weight             (V, H)   (K, H) for a task head over K classes / tags
    c   (b_y)        head.bias               (V,)     (K,)
    R                feedback.weight         (G*H, K) the tagger's output-to-hidden recurrence: R y_{t-1}
                                                      joins U x_t in every gate of the first layer
    g^k  (LN_k gain) norm_l{k}.weight        (H,)     } with --layer-norm (stack.py), k = 1..L-1:
    beta^k           norm_l{k}.bias          (H,)     } nn.LayerNorm(H) of layer k's input
    g^out            norm_out.weight         (H,)     } with --layer-norm: nn.LayerNorm(H) of the
    beta^out         norm_out.bias           (H,)     } top, before the head

The norms come after the recurrent layers and before the head in the table's order; a model
without --layer-norm has none of them, so its table is what it was before the option existed.

The language model's head predicts the next of V symbols; the task models (classify, tag) have a
head over their K labels (`num_outputs`) and, for the tagger with output recurrence, R
(`feedback`, as many rows as the cell's input weight), outside "rnn." so that the recurrent
layers still load into PyTorch's modules as they are.

Creation, counting, initialisation, checkpoint validation and the PyTorch name map all derive
from `parameter_shapes`; no other module spells a parameter name.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

import numpy as np

from ..core import CELLS, UnknownCell, cell
from ..core.contract import Param
from ..errors import ConfigError

# The model's dtypes and initialisation schemes (`init_parameters`); settings offer these.
DTYPES = ("float32", "float64")
INITS = ("pytorch", "orthogonal", "normal")

RNN_PREFIX = "rnn."
HEAD_PREFIX = "head."
HEAD_WEIGHT = HEAD_PREFIX + "weight"  # V in the seeds: (V, H)
HEAD_BIAS = HEAD_PREFIX + "bias"  # c in the seeds: (V,)
FEEDBACK_WEIGHT = "feedback.weight"  # R in seed 002: (G*H, K), y_{t-1} -> the first layer's gates
NORM_PREFIX = "norm_"  # the layer norms of --layer-norm (stack.py): gain "weight" and "bias", (H,) each
NORM_OUT = "out"  # the top's norm, before the head: norm_out.weight, norm_out.bias

# Refuse models whose parameter count would not fit a plausible machine before allocating them.
MAX_PARAMETERS = 2_000_000_000


def cell_module(name: Any) -> ModuleType:
    """The registered cell module called `name` (core/), or a ConfigError naming the cells."""
    try:
        return cell(name)
    except UnknownCell as e:
        raise ConfigError(str(e)) from None


def twin(name: str, declaration: str, refusal: str) -> Any:
    """The cell's `declaration` of its twin elsewhere (core/: TORCH_MODULE, KERAS, ONNX), or a
    one-line error: "the NAME cell has no REFUSAL" and the cells that have one."""
    value = getattr(cell_module(name), declaration)
    if value is None:
        have = ", ".join(n for n, m in CELLS.items() if getattr(m, declaration) is not None)
        raise ConfigError(f"the {name} cell has no {refusal} {have}")
    return value


def torch_module_name(name: str) -> str:
    """The torch.nn class of the cell's layers ("LSTM"), or a one-line error naming a cell that has
    none (the torch backend and PyTorch export refuse it)."""
    return twin(name, "TORCH_MODULE", "PyTorch module: the torch backend and export --format torch take")


def check_cell(name: Any) -> str:
    cell_module(name)
    return name


def gates(name: str) -> int:
    """G, the gate blocks stacked in a layer's gate weights."""
    return cell_module(name).GATES


def layer_names(name: str, k: int) -> tuple[str, ...]:
    """The full names of layer k's parameters, in the order of the cell's table (and of its
    functions' `params`): ("rnn.weight_ih_l0", "rnn.weight_hh_l0", ...) for the built-in cells."""
    return cell_layer_names(cell_module(name), k)


@functools.lru_cache(maxsize=None)  # called per layer per step in generation
def cell_layer_names(module: ModuleType, k: int) -> tuple[str, ...]:
    """`layer_names` of a cell module."""
    return tuple(f"{RNN_PREFIX}{p.name}_l{k}" for p in module.PARAMS)


def input_index(name: str) -> int:
    """The position of the input weight in the cell's table (the tagger widens it with R)."""
    return next(i for i, p in enumerate(cell_module(name).PARAMS) if p.role == "input")


def input_weight(name: str, k: int) -> str:
    """The full name of layer k's input weight: in the first layer one column per symbol."""
    return layer_names(name, k)[input_index(name)]


def single_bias_frozen(name: str, k: int) -> tuple[str, ...]:
    """Layer k's biases after its first: those that training with single_bias (the seeds' one b)
    keeps at their initial values (bias_hh for the built-in cells)."""
    return _single_bias_frozen(cell_module(name), k)


@functools.lru_cache(maxsize=None)  # asked at every training step
def _single_bias_frozen(module: ModuleType, k: int) -> tuple[str, ...]:
    biases = [n for n, p in zip(cell_layer_names(module, k), module.PARAMS) if p.role == "bias"]
    return tuple(biases[1:])


def norm_names(k: int | str) -> tuple[str, str]:
    """(gain, bias) of the layer norm of layer k's input (k >= 1) or of the top (k = NORM_OUT)."""
    prefix = f"{NORM_PREFIX}{k}" if k == NORM_OUT else f"{NORM_PREFIX}l{k}"
    return f"{prefix}.weight", f"{prefix}.bias"


def norm_keys(num_layers: int) -> tuple[int | str, ...]:
    """The norms of a --layer-norm stack of `num_layers` layers, in table order: 1..L-1, NORM_OUT."""
    return (*range(1, num_layers), NORM_OUT)


def _shape(p: Param, G: int, H: int, I: int) -> tuple[int, ...]:
    size = {"G*H": G * H, "H": H, "I": I}
    return tuple(size[d] for d in p.shape)


def parameter_shapes(
    vocab_size: int, hidden_size: int, num_layers: int, cell: str = "rnn",
    num_outputs: int | None = None, feedback: bool = False, layer_norm: bool = False,
) -> dict[str, tuple[int, ...]]:
    """The name -> shape table of a model; its order is the order of `CharRNN.params`.

    num_outputs: K, the head's outputs (None: V, the language model's next symbol).
    feedback: add R (rows of the input weight, K), the output-to-hidden recurrence of the tagger.
    layer_norm: add the stack's layer norms (stack.py), gain and bias (H,) each."""
    module = cell_module(cell)
    V, H, G = vocab_size, hidden_size, module.GATES
    K = V if num_outputs is None else num_outputs
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(num_layers):
        for p, name in zip(module.PARAMS, cell_layer_names(module, k)):
            shapes[name] = _shape(p, G, H, V if k == 0 else H)
    if layer_norm:
        for key in norm_keys(num_layers):
            for name in norm_names(key):
                shapes[name] = (H,)
    shapes[HEAD_WEIGHT] = (K, H)
    shapes[HEAD_BIAS] = (K,)
    if feedback:
        shapes[FEEDBACK_WEIGHT] = (shapes[input_weight(cell, 0)][0], K)
    return shapes


def vocab_axes(cell: str) -> dict[str, int]:
    """The parameters with one slice per vocabulary symbol, and the axis of those slices: the
    first layer's input columns and the head's output rows."""
    return {input_weight(cell, 0): 1, HEAD_WEIGHT: 0, HEAD_BIAS: 0}


def transplant(params: dict[str, np.ndarray], into: dict[str, np.ndarray], positions: np.ndarray, cell: str) -> None:
    """Copy a model's parameters into a model of the same cell with a larger vocabulary, in place
    in `into`: symbol v of the old vocabulary becomes symbol positions[v]; the new symbols' slices
    keep the values `into` was initialised with (as new parameters would be)."""
    axes = vocab_axes(cell)
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
    num_outputs: int | None = None, feedback: bool = False, layer_norm: bool = False,
) -> int:
    """The sum of the sizes in `parameter_shapes`, in closed form: the sizes come from flags and
    files and are checked with this before anything (even the shape table) is built."""
    module = cell_module(cell)
    V, H, L, G = vocab_size, hidden_size, num_layers, module.GATES
    K = V if num_outputs is None else num_outputs
    first = [math.prod(_shape(p, G, H, V)) for p in module.PARAMS]
    above = sum(math.prod(_shape(p, G, H, H)) for p in module.PARAMS)
    rows = _shape(module.PARAMS[input_index(cell)], G, H, V)[0]
    norms = 2 * H * L if layer_norm else 0  # L - 1 between the layers and the top's
    return sum(first) + (L - 1) * above + norms + K * H + K + (rows * K if feedback else 0)


def torch_state_dicts(params: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The parameters as the state dicts of PyTorch's modules: {"rnn": ..., "head": ...}, and
    {"feedback": ...} (an nn.Linear without bias) for a model with R, and {"norm_l1": ...,
    "norm_out": ...} (nn.LayerNorm) for a model with layer norms."""
    out: dict[str, dict[str, np.ndarray]] = {RNN_PREFIX[:-1]: {}, HEAD_PREFIX[:-1]: {}}
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
    "orthogonal": each gate block of a recurrent weight orthogonal (the backward signal keeps its
                  norm through time at the start), other weights as "pytorch", biases zero;
    "normal":     the seeds' min-char-rnn: weights N(0, 0.01^2), biases zero;
    and then the cell's own rules (its INIT_BIASES: the LSTM's forget-gate bias 1 under "orthogonal").
    """
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    module = cell_module(cell)
    table = _rows_of_layers(module, shapes)
    bound = 1.0 / math.sqrt(hidden_size)
    H = hidden_size
    params = {}
    for name, shape in shapes.items():
        if name.startswith(NORM_PREFIX):  # nn.LayerNorm's: gain 1, bias 0 under every scheme, no draw
            params[name] = np.full(shape, 1.0 if name.endswith(".weight") else 0.0, dtype=dtype)
            continue
        p = table.get(name)
        role = p.role if p is not None else ("bias" if len(shape) == 1 else "weight")
        if init == "normal":
            value = np.zeros(shape) if role == "bias" else rng.standard_normal(shape) * 0.01
        elif init == "orthogonal" and role == "bias":
            value = np.zeros(shape)
        elif init == "orthogonal" and role == "recurrent":
            value = np.concatenate([orthogonal(H, rng) for _ in range(shape[0] // H)])
        else:
            value = rng.uniform(-bound, bound, size=shape)
        if p is not None:
            for bias, gate, start in module.INIT_BIASES.get(init, ()):
                if p.name == bias:
                    g = module.GATE_NAMES.index(gate)
                    value[g * H : (g + 1) * H] = start
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


def _rows_of_layers(module: ModuleType, shapes: dict[str, tuple[int, ...]]) -> dict[str, Param]:
    """Full parameter name -> its row of the cell's table, for every layer `shapes` holds."""
    table: dict[str, Param] = {}
    k = 0
    while (names := cell_layer_names(module, k))[0] in shapes:
        table.update(zip(names, module.PARAMS))
        k += 1
    return table


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random n x n orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))
