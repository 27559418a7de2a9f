"""ONNX models out: the language model as one graph of standard operators, for ONNX Runtime.

The graph, built directly with the `onnx` package (no exporter traces anything), size letters of
core/ (B batch, T time, V vocabulary, H hidden, L layers, G gate blocks):

    ids (B, T) int64 --Transpose--> (T, B) --OneHot(V)--> x (T, B, V) float32
    layer k:  Y, Y_h[, Y_c] = RNN | LSTM | GRU(x, W_k, R_k, B_k, initial_h = h0[k], [initial_c = c0[k]])
              x = Y without its direction axis (T, B, H)
    logits (B, T, V) = Transpose(x) @ head.weight^T + head.bias
    hT, [cT] (L, B, H) = the layers' Y_h, [Y_c] concatenated

with each cell's ONNX declaration (core/, `OnnxLayer`) saying which operator, the order of its
gate blocks and its attributes:

    PyTorch (charrnn)                   ONNX, one direction
    weight_ih (G*H, I)                  W (1, G*H, I)      gate blocks reordered
    weight_hh (G*H, H)                  R (1, G*H, H)      gate blocks reordered
    bias_ih, bias_hh (G*H,)             B (1, 2*G*H) = [Wb, Rb]: bias_ih then bias_hh, each reordered
    gate blocks  lstm i|f|g|o           i|o|f|c
                 gru  r|z|n             z|r|h, linear_before_reset=1 (PyTorch's r * (W_hn h + b_hn))

The first layer's input is the one-hot matrix of the ids, not a Gather of W's columns: the
operators take X and W, and a one-hot row times W is W's column exactly (every other term of the
sum is an exact zero), so the operator runs as the standard defines it, at the cost of a (T*B, V)
by (V, G*H) product that is small at a character vocabulary's size (an id outside [0, V) is
the caller's to avoid: OneHot gives it a row of zeros). The operators are used time-major
(layout 0), the form every runtime implements (ONNX Runtime's CPU kernels refuse the batch-major
layout 1); the interface is batch-major, with a Transpose at each end.

The interface: inputs `ids` (int64, [batch, time]) and one state input per part of the cell's
state, `h0` (and `c0`), float32 [L, batch, H], all required (zeros start afresh); outputs
`logits` (float32, [batch, time, V]) and `hT` (and `cT`); batch and time dynamic. A step of
time 1 with the states carried from output to input generates text one character at a time.
The weights are float32 whatever the run's dtype (ONNX Runtime's recurrent operators run
float32). The model's metadata_props hold the vocabulary as a JSON list (characters, or byte
values for a bytes model) under `vocab`, and the cell and sizes beside it. Dropout is a training
matter and is not exported. `onnx` is optional (`pip install 'charrnn[onnx]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..core import OnnxLayer
from ..data.text import Vocab
from ..errors import ConfigError
from ..io import formats
from ..io.arrays import dump_json
from ..model import CharRNN
from ..model.params import HEAD_BIAS, HEAD_WEIGHT, layer_names, twin

OPSET = 17  # the operators used here are unchanged since opset 14 (RNN, LSTM, GRU: layout), 13 (the rest)
DTYPE = np.dtype(np.float32)
IDS, LOGITS = "ids", "logits"
# A protobuf message, which an .onnx file is, cannot pass 2 GiB; leave room for the graph around the weights
MAX_WEIGHT_BYTES = 2**31 - 2**24


def onnx_layer(cell: str) -> OnnxLayer:
    """The cell's ONNX operator, or a one-line error naming a cell that has none."""
    return twin(cell, "ONNX", "standard ONNX operator that computes it exactly: export --format onnx takes")


def import_onnx() -> Any:
    """The onnx module, or a one-line error saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ConfigError(f"the onnx package is not installed or cannot start ({e}): pip install 'charrnn[onnx]'") \
            from None
    return onnx


def state_names(model: CharRNN) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The graph's state inputs and outputs: ("h0", "c0") and ("hT", "cT") for the LSTM."""
    return tuple(f"{p}0" for p in model.state_parts), tuple(f"{p}T" for p in model.state_parts)


def _blocks(a: np.ndarray, order: tuple[int, ...], H: int) -> np.ndarray:
    """`a` with its gate blocks along axis 0 in ONNX's order: block j is `a`'s block order[j]."""
    return np.concatenate([a[g * H : (g + 1) * H] for g in order], axis=0)


def onnx_weights(model: CharRNN) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per layer the operator's (W, R, B), float32, each with its leading direction axis of 1."""
    spec, H = onnx_layer(model.cell), model.hidden_size
    out = []
    for k in range(model.num_layers):
        w_ih, w_hh, b_ih, b_hh = (_blocks(model.params[n], spec.gate_order, H) for n in layer_names(model.cell, k))
        out.append(tuple(np.ascontiguousarray(a[None], dtype=DTYPE) for a in (w_ih, w_hh, np.concatenate([b_ih, b_hh]))))
    return out


def check_size(model: CharRNN) -> None:
    """Refuse a model whose float32 weights pass what one ONNX file can hold."""
    size = sum(p.size for p in model.params.values()) * DTYPE.itemsize
    if size > MAX_WEIGHT_BYTES:
        raise ConfigError(f"the model's float32 weights take {size / 2**30:.1f} GiB; one ONNX file holds less than 2 GiB")


def build_onnx_model(model: CharRNN, vocab: Vocab) -> Any:
    """The model as an onnx ModelProto (module docstring), checked by the onnx checker."""
    model.stack.plain_only("export --format onnx")
    spec = onnx_layer(model.cell)
    check_size(model)
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    L, H, V = model.num_layers, model.hidden_size, model.vocab_size
    states_in, states_out = state_names(model)
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: Any, dtype: Any = None) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> list[str]:
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op.lower()}_{len(nodes)}", **attrs))
        return outputs

    # x: (T, B, V), the one-hot ids, time-major as the operators take them
    (ids_tm,) = node("Transpose", [IDS], ["ids_time_major"], perm=[1, 0])
    (x,) = node("OneHot", [ids_tm, const("vocab_size", [V], np.int64), const("one_hot_values", [0, 1], DTYPE)],
                ["one_hot"], axis=-1)
    # each state input (L, B, H) split into the layers' initial states (1, B, H), in layer order
    per_layer = [[name] if L == 1 else node("Split", [name, const(f"{name}_split", [1] * L, np.int64)],
                                            [f"{name}_l{k}" for k in range(L)], axis=0)
                 for name in states_in]
    finals: list[list[str]] = [[] for _ in states_in]
    squeeze_axis = const("direction_axis", [1], np.int64)
    for k, (w, r, b) in enumerate(onnx_weights(model)):
        inputs = [x, const(f"W_l{k}", w), const(f"R_l{k}", r), const(f"B_l{k}", b), ""]  # "": no sequence_lens
        inputs += [parts[k] for parts in per_layer]
        y, *ends = node(spec.op, inputs, [f"Y_l{k}", *(f"{p}T_l{k}" for p in model.state_parts)], hidden_size=H,
                        **spec.attributes)
        for got, end in zip(finals, ends):
            got.append(end)
        (x,) = node("Squeeze", [y, squeeze_axis], [f"h_l{k}"])  # (T, 1, B, H) -> (T, B, H)
    (top,) = node("Transpose", [x], ["top"], perm=[1, 0, 2])  # (B, T, H)
    head_t = np.ascontiguousarray(model.params[HEAD_WEIGHT].T, dtype=DTYPE)  # (H, V)
    (z,) = node("MatMul", [top, const("head_weight_t", head_t)], ["head_product"])
    node("Add", [z, const("head_bias", model.params[HEAD_BIAS], DTYPE)], [LOGITS])
    for name, ends in zip(states_out, finals):
        node("Concat", ends, [name], axis=0)

    def tensor(name: str, elem: int, shape: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, elem, shape)

    state_shape = [L, "batch", H]
    graph = helper.make_graph(
        nodes, f"charrnn_{model.cell}",
        [tensor(IDS, TensorProto.INT64, ["batch", "time"])] + [tensor(n, TensorProto.FLOAT, state_shape)
                                                                for n in states_in],
        [tensor(LOGITS, TensorProto.FLOAT, ["batch", "time", V])] + [tensor(n, TensorProto.FLOAT, state_shape)
                                                                     for n in states_out],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="charrnn",
                              producer_version=__version__,
                              doc_string=f"charrnn {model.cell} language model: ids (batch, time) int64 and "
                              f"{', '.join(states_in)} (layers, batch, hidden) in; logits (batch, time, vocab) and "
                              f"{', '.join(states_out)} out")
    # the IR version that came with opset 17: a newer onnx package writes a newer one by default,
    # which older runtimes refuse although nothing here needs it
    proto.ir_version = 8
    metadata = {"format": formats.ONNX_EXPORT, "vocab": dump_json(vocab.symbols), "encoding": vocab.encoding,
                "cell": model.cell, "vocab_size": str(V), "hidden_size": str(H), "num_layers": str(L),
                "state": dump_json(list(model.state_parts)), "trained_dtype": model.dtype.name}
    helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: CharRNN, vocab: Vocab, out: str | Path, force: bool = False) -> Path:
    """Write `model` as an .onnx file through the one writer (`force` replaces an existing regular
    file); returns its path. Everything is refused before anything is written."""
    from ..io.writer import check_target, write_file

    check_target(out, force=force)
    data = build_onnx_model(model, vocab).SerializeToString()
    return write_file(out, data, force=force)
