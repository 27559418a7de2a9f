"""The types a cell module declares itself with, and the check that it provides the whole contract
(documented once, in core/__init__.py)."""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

# The symbols a parameter's shape is written in: the gate-stacked rows (G blocks of H), the hidden
# size, and the layer's input size (V for the first layer, whose input is one-hot, H above it).
DIMS = ("G*H", "H", "I")
# What a parameter is to the layer, which is what initialisation, the tagger's feedback and the
# vocabulary's growth need to know: the input weight (exactly one, its last axis "I": in the first
# layer one column per vocabulary symbol), a weight applied to h_{t-1}, a bias, any other weight.
ROLES = ("input", "recurrent", "bias", "weight")


# A layer's parameters (or their gradients) as the cell functions take them, in the order of the
# cell's PARAMS; a state as a tuple of one (B, H) array per part of its STATE.
Params = tuple[np.ndarray, ...]
State = tuple[np.ndarray, ...]


class Param(NamedTuple):
    """One row of a cell's layer parameter table."""

    name: str  # PyTorch's style, without the layer suffix: "weight_ih" is layer k's "weight_ih_l{k}"
    shape: tuple[str, ...]  # in the symbols of DIMS: ("G*H", "I") is (G*H, I)
    role: str  # one of ROLES


class KerasLayer(NamedTuple):
    """How a cell's layer is written as a Keras 3 layer: (kernel, recurrent_kernel, bias), the
    transposes of (weight_ih, weight_hh) with the gate blocks reordered."""

    layer: str  # the keras.layers class: "SimpleRNN", "LSTM", "GRU"
    gate_order: tuple[int, ...]  # Keras's gate block j is this cell's block gate_order[j]
    both_biases: bool  # True: bias (2, G*H) = [bias_ih; bias_hh]; False: bias (G*H,) = their sum
    options: dict[str, Any]  # layer options beyond the defaults, required of an imported layer too


class OnnxLayer(NamedTuple):
    """How a cell's layer is written as one standard ONNX recurrent operator, with its default
    activations: W = weight_ih, R = weight_hh and B = [bias_ih, bias_hh] (ONNX keeps both biases,
    as PyTorch does), the gate blocks of each reordered. A cell that no standard operator
    expresses exactly declares ONNX = None and is refused by name (a plain-operator form would be
    a second type beside this one)."""

    op: str  # the operator: one of ONNX_OPERATORS
    gate_order: tuple[int, ...]  # ONNX's gate block j is this cell's block gate_order[j]
    attributes: dict[str, Any]  # the operator's attributes beyond hidden_size and the defaults


# The standard ONNX recurrent operators: their gate blocks and the state parts they carry, in the
# order of their initial-state inputs (initial_h, initial_c) and final-state outputs (Y_h, Y_c)
ONNX_OPERATORS = {"RNN": (1, ("h",)), "GRU": (3, ("h",)), "LSTM": (4, ("h", "c"))}

# name -> what it must be; the functions' signatures are documented in core/__init__.py
CONSTANTS = ("NAME", "GATES", "GATE_NAMES", "SIGMOID_GATES", "STATE", "HEATMAP_STATE", "PARAMS", "DEFAULT_INIT",
             "DEFAULT_LR", "INIT_BIASES", "TORCH_MODULE", "TORCH_OPTIONS", "KERAS", "ONNX", "KERNELS", "FUSED_STEP")
FUNCTIONS = ("forward", "backward", "step", "forward_reference", "backward_reference", "gate_activations",
             "train_flops")


# what a cell may provide, and consumers ask it for when it does (`getattr(module, name, None)`)
OPTIONAL_FUNCTIONS = ("decay",)


class ContractError(TypeError):
    """A module registered as a cell that does not provide the contract."""


def check(module: ModuleType) -> None:
    """Raise ContractError naming the first thing `module` lacks or gets wrong."""
    name = getattr(module, "__name__", repr(module))

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ContractError(f"cell module {name}: {what}")

    for attr in CONSTANTS + FUNCTIONS:
        need(hasattr(module, attr), f"lacks {attr}")
    for attr in FUNCTIONS:
        need(callable(getattr(module, attr)), f"{attr} must be a function")
    m = module
    need(isinstance(m.NAME, str) and m.NAME.isidentifier(), "NAME must be an identifier")
    need(isinstance(m.GATES, int) and m.GATES >= 1, "GATES must be an integer >= 1")
    need(_names(m.GATE_NAMES) and len(m.GATE_NAMES) == m.GATES, "GATE_NAMES must name the GATES gate blocks")
    need(_names(m.SIGMOID_GATES, empty=True) and set(m.SIGMOID_GATES) <= set(m.GATE_NAMES),
         "SIGMOID_GATES must be a tuple of some of GATE_NAMES")
    need(_names(m.STATE) and m.STATE[0] == "h", 'STATE must name the state parts, the layer\'s output "h" first')
    need(m.HEATMAP_STATE in m.STATE, "HEATMAP_STATE must be one of STATE")
    need(isinstance(m.PARAMS, tuple) and len(m.PARAMS) >= 1 and all(isinstance(p, Param) for p in m.PARAMS),
         "PARAMS must be a tuple of Param")
    need(_names(tuple(p.name for p in m.PARAMS)), "PARAMS must have distinct identifiers as names")
    for p in m.PARAMS:
        need(p.role in ROLES, f"parameter {p.name}: role must be one of {', '.join(ROLES)}")
        need(isinstance(p.shape, tuple) and 1 <= len(p.shape) <= 2 and all(d in DIMS for d in p.shape),
             f"parameter {p.name}: shape must be one or two of {', '.join(DIMS)}")
        need((p.role == "bias") == (len(p.shape) == 1), f"parameter {p.name}: biases, and only they, are vectors")
        need(p.role != "recurrent" or p.shape == ("G*H", "H"), f"parameter {p.name}: a recurrent weight is (G*H, H)")
        need((p.role == "input") == ("I" in p.shape), f"parameter {p.name}: only the input weight reads the input")
    inputs = [p for p in m.PARAMS if p.role == "input"]
    need(len(inputs) == 1 and inputs[0].shape[-1] == "I", 'PARAMS must hold one input weight of shape (rows, "I")')
    need(isinstance(m.DEFAULT_INIT, str), "DEFAULT_INIT must name an initialisation")
    need(isinstance(m.DEFAULT_LR, float) and m.DEFAULT_LR > 0, "DEFAULT_LR must be a positive float")
    need(isinstance(m.INIT_BIASES, dict) and all(
        isinstance(scheme, str) and isinstance(rules, tuple) and all(
            len(r) == 3 and r[0] in {p.name for p in m.PARAMS if p.role == "bias"} and r[1] in m.GATE_NAMES
            and isinstance(r[2], float) for r in rules)
        for scheme, rules in m.INIT_BIASES.items()),
        "INIT_BIASES must map a scheme to (bias name, gate name, value) rules")
    need(m.TORCH_MODULE is None or (isinstance(m.TORCH_MODULE, str) and (
        m.TORCH_MODULE.isidentifier() or _module_path(m.TORCH_MODULE))),
        'TORCH_MODULE must be a torch.nn name, "charrnn.torch_backend.<module>:<Class>" or None')
    need(isinstance(m.TORCH_OPTIONS, dict), "TORCH_OPTIONS must be a dict")
    need(m.KERAS is None or (isinstance(m.KERAS, KerasLayer) and sorted(m.KERAS.gate_order) == list(range(m.GATES))),
         "KERAS must be a KerasLayer (gate_order a permutation of the gate blocks) or None")
    # a Keras layer, and a torch.nn module, hold PyTorch's table: input and recurrent weights, two biases
    # (a module of the torch backend's own, "module:Class", lists its parameters in the table's order)
    standard = tuple(p.role for p in m.PARAMS) == ("input", "recurrent", "bias", "bias")
    need(m.KERAS is None or standard, "a cell with a Keras layer has the table (input, recurrent, bias, bias)")
    need(not isinstance(m.TORCH_MODULE, str) or not m.TORCH_MODULE.isidentifier() or standard,
         "a cell with a torch.nn module has the table (input, recurrent, bias, bias)")
    need(m.ONNX is None or (isinstance(m.ONNX, OnnxLayer) and isinstance(m.ONNX.attributes, dict)
                            and ONNX_OPERATORS.get(m.ONNX.op) == (m.GATES, m.STATE)
                            and sorted(m.ONNX.gate_order) == list(range(m.GATES))),
         "ONNX must be an OnnxLayer (an operator of ONNX_OPERATORS with the cell's gate blocks and state parts, "
         "gate_order a permutation of the blocks) or None")
    need(m.ONNX is None or standard, "a cell with an ONNX operator has the table (input, recurrent, bias, bias)")
    need(isinstance(m.KERNELS, bool), "KERNELS must be a bool")
    need(not m.KERNELS or callable(getattr(m, "compiled", None)), "a cell with KERNELS needs compiled(B, H)")
    need(isinstance(m.FUSED_STEP, bool), "FUSED_STEP must be a bool")
    need(not m.FUSED_STEP or callable(getattr(m, "fused_step_kernel", None)),
         "a cell with FUSED_STEP needs fused_step_kernel()")
    for attr in OPTIONAL_FUNCTIONS:
        need(not hasattr(m, attr) or callable(getattr(m, attr)), f"{attr}, when given, must be a function")


def _names(value: Any, empty: bool = False) -> bool:
    """A tuple of distinct identifiers (non-empty unless `empty`)."""
    return (isinstance(value, tuple) and (empty or len(value) > 0) and len(set(value)) == len(value)
            and all(isinstance(v, str) and v.isidentifier() for v in value))


def _module_path(value: str) -> bool:
    """"charrnn.torch_backend.<module>:<Class>": dotted identifiers, a colon, an identifier (which
    modules the torch backend has is its to say, when it builds the layer)."""
    module, colon, name = value.partition(":")
    return bool(colon) and name.isidentifier() and all(part.isidentifier() for part in module.split("."))
