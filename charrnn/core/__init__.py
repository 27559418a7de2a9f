"""The math core: NumPy only, arrays in and out, no files, threads or configuration.

Size letters used throughout:
    B  batch: parallel text streams          T  time steps in one window
    V  vocabulary size (one-hot input size)   H  hidden units per layer
    I  input size of a layer (V for the first, H above)
    G  gate blocks of a cell: 1 (rnn), 4 (lstm: i|f|g|o), 3 (gru: r|z|n), 2 (mingru: z|n),
       3 (minlstm: f|i|g)
    N  = T * B positions scored in a window

The cell contract. A recurrent cell is one module (rnn.py, lstm.py, gru.py, mingru.py, minlstm.py) that declares, near
its top, everything that differs between cells, and provides a fixed set of free functions. It is
registered by name (`register`, below, for the built-in ones); everything outside the core asks
the registry (`cell(name)`) and the module, never compares a cell's name. A new cell is its
module, its kernels module if it has compiled kernels, and one `register` line (or a call of
`register` from the code that uses it).

Constants (`contract.py` defines Param, KerasLayer and OnnxLayer and checks all of them on
registration):

    NAME: str                 the name settings, checkpoints and the command line use
    GATES: int                G, the gate blocks stacked along the rows of the gate weights
    GATE_NAMES: tuple[str]    the G blocks in row order, e.g. ("i", "f", "g", "o")
    SIGMOID_GATES: tuple[str] the blocks with a sigmoid (the others are tanh): diagnostics' saturation
    STATE: tuple[str]         the parts of the carried state, the layer's output "h" first: ("h", "c")
    HEATMAP_STATE: str        the part a heatmap shows by default (the LSTM's memory "c")
    PARAMS: tuple[Param]      the layer's parameter table, in the order the functions take them:
                              PyTorch's names (layer k's "weight_ih" is "rnn.weight_ih_l{k}"), shapes
                              in units of "G*H", "H" and "I" (the input size), and each one's role
                              ("input": the one input weight, one column per vocabulary symbol in
                              the first layer; "recurrent"; "bias"; "weight")
    DEFAULT_INIT, DEFAULT_LR  what a training run uses unless told otherwise
    INIT_BIASES: dict         the cell's own initialisation rules: scheme -> ((bias, gate, value), ...),
                              e.g. the LSTM's forget-gate bias 1 under "orthogonal"
    TORCH_MODULE: str | None  its torch.nn module ("LSTM"), built with TORCH_OPTIONS; or, for a cell no
                              torch.nn class computes, "charrnn.torch_backend.<module>:<Class>":
                              a class of one of the torch backend's own modules (OWN_MODULES in
                              torch_backend/module.py; the parallel-in-time cells' are in scan.py)
                              with nn.LSTM's constructor (input_size, hidden_size, num_layers,
                              **options) and call ((T, B, I), h_0 or (h_0, c_0) of (L, B, H)) ->
                              (out, final state), each layer's parameters registered in PARAMS
                              order; None: the torch backend and PyTorch export refuse the cell by name
    KERAS: KerasLayer | None  its Keras 3 layer, gate order and biases; None: Keras export refuses it
    ONNX: OnnxLayer | None    its standard ONNX operator (RNN, LSTM, GRU), gate order and attributes
                              (the GRU's linear_before_reset=1); None: ONNX export refuses it
    KERNELS: bool             compiled kernels exist (numba, in <NAME>_kernels.py beside the module);
                              then compiled(B, H) -> bool says whether a window of B streams of H
                              units runs in them now
    FUSED_STEP: bool          a whole training step exists as one compiled call
                              (fused_step_kernel(), train/fused.py): the tanh cell's

Functions, for one layer over a window of T steps, time-major; `params` is the layer's tuple in
PARAMS order, `grads` a tuple of arrays of the same shapes:

    forward(x, params, state0, need_cache=True) -> (hs, state_n, cache)
        x: (T, B) integer ids (the first layer: one-hot input, W x_t is column x_t of the input
           weight) or (T, B, I) floats (the layer below's states).
        state0: a tuple of len(STATE) arrays (B, H).
        hs: (T, B, H), h_t for every step, a fresh array; state_n: tuple like state0.
        cache: what `backward` needs (None when need_cache is False).
    backward(dhs, cache, params, grads, dstate_n=None, need_dx=True) -> (dx, dstate0)
        dhs: (T, B, H), dL/dh_t arriving from above; may be overwritten.
        grads: accumulated in place (backward only adds).
        dstate_n: gradients arriving at the final state (tuple like state0, parts may be None)
        or None for zeros.
        dx: (T, B, I) = dL/dx for the layer below, or None (need_dx False, or integer x).
        dstate0: tuple like state0, dL/dstate0.
    step(x, params, state) -> state_new
        One step for generation: x (B,) ids or (B, I) floats; state and state_new tuples of
        (B, H); state_new[0] is h.
    forward_reference / backward_reference: the same signatures, written plainly one equation
        per line; tests hold the tuned functions to them.
    gate_activations(x, params, state) -> (N, G, H)
        The gate blocks after their nonlinearities for N independent steps, each from its own
        recorded state: x (N,) ids or (N, I) floats, state a tuple of (N, H) parts.
    train_flops(input_size, hidden_size) -> float
        The nominal FLOPs of one layer's training step per character: three times the forward
        pass's matrix products, as PyTorch multiplies a one-hot input densely.

Optional (contract.OPTIONAL_FUNCTIONS; consumers ask `getattr(module, name, None)`):

    decay(x, params, state) -> (N, H)
        For a cell whose recurrence is the element-wise first-order filter h_t = a_t * h_{t-1} + b_t
        (a_t depending on the input alone: mingru, minlstm), the coefficient a_t of N independent
        steps, as gate_activations takes them; `charrnn diagnose` shows its distribution.
"""

from __future__ import annotations

from types import ModuleType

from . import gru, lstm, mingru, minlstm, rnn
from .contract import ContractError, KerasLayer, OnnxLayer, Param, check

# name -> cell module, in registration order (the command line lists them so)
CELLS: dict[str, ModuleType] = {}


class UnknownCell(ValueError):
    """A cell name that no module registered."""


def register(module: ModuleType) -> ModuleType:
    """Add a cell module to the registry, after checking that it provides the whole contract;
    a second module with a registered name is refused. Returns the module."""
    check(module)
    if module.NAME in CELLS:
        raise ContractError(f"a cell named {module.NAME!r} is already registered ({CELLS[module.NAME].__name__})")
    CELLS[module.NAME] = module
    return module


def cell(name: object) -> ModuleType:
    """The module of the cell registered as `name`, or UnknownCell naming the known cells."""
    module = CELLS.get(name) if isinstance(name, str) else None
    if module is None:
        raise UnknownCell(f"unknown cell {name!r}: the cells are {', '.join(CELLS)}")
    return module


def cell_names() -> tuple[str, ...]:
    """The registered cells' names, asked at the time of use: a cell registered later is among them."""
    return tuple(CELLS)


register(rnn)
register(lstm)
register(gru)
register(mingru)
register(minlstm)

__all__ = ["CELLS", "ContractError", "KerasLayer", "OnnxLayer", "Param", "UnknownCell", "cell", "cell_names", "register"]
