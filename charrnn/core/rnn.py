"""The vanilla (Elman, tanh) recurrent layer of the seeds, under the cell contract (core/__init__).

    a_t = W h_{t-1} + U x_t + b        h_t = tanh(a_t)

with PyTorch's `nn.RNN` names: U = weight_ih (H, I), W = weight_hh (H, H), b = bias_ih + bias_hh
(two biases, always summed, so each gets the same gradient).

The tuned recurrence writes the three terms of a_t as one product, a_t = [W U b] [h_{t-1}; x_t; 1],
so each step is a single matrix product and a tanh. For the first layer x_t is one-hot and the U
part adds only V/H to each step's work; it replaces a gather and an add per step, and in the
backward pass the gradients of U and b come out of one product over all steps
(`rnn_input_backward`) instead of a scatter-add, which is slower than the product (BENCHMARKS.md,
"The tanh cell's column form"). The plain, seed-shaped versions are kept as `*_reference`, and
tests/core/test_tuned_vs_reference.py holds the two to the same results.

numba, when installed, runs the recurrence's loops for small batches (rnn_kernels.py,
tuning.RNN_JIT_MAX_WORK), and the whole training step of one stream (rnn_fused.py).
"""

from __future__ import annotations

import numpy as np

from . import _jit, tuning
from .contract import KerasLayer, OnnxLayer, Param, Params, State
from .linear import gate_layer_train_flops, input_backward_reference, input_forward, is_ids

# ---- the cell's declarations (the contract in core/__init__)
NAME = "rnn"
GATES = 1
GATE_NAMES = ("h",)  # the one block is the new state itself
SIGMOID_GATES: tuple[str, ...] = ()
STATE = ("h",)
HEATMAP_STATE = "h"
PARAMS = (
    Param("weight_ih", ("G*H", "I"), "input"),  # U
    Param("weight_hh", ("G*H", "H"), "recurrent"),  # W
    Param("bias_ih", ("G*H",), "bias"),  # } b
    Param("bias_hh", ("G*H",), "bias"),  # }
)
# measured best for this cell before the gated cells arrived (BENCHMARKS.md, "Choosing the defaults")
DEFAULT_INIT = "orthogonal"
DEFAULT_LR = 3e-3
INIT_BIASES: dict[str, tuple] = {}
TORCH_MODULE = "RNN"
TORCH_OPTIONS = {"nonlinearity": "tanh"}
KERAS = KerasLayer("SimpleRNN", (0,), both_biases=False, options={})
# ONNX's RNN with its default Tanh: the same equation, both biases kept
ONNX = OnnxLayer("RNN", (0,), attributes={})
KERNELS = True
FUSED_STEP = True


def train_flops(input_size: int, hidden_size: int) -> float:
    return gate_layer_train_flops(GATES, input_size, hidden_size)


def compiled(batch_size: int, hidden_size: int) -> bool:
    """Whether a window of B streams of H units runs in the compiled loops now."""
    return use_jit(batch_size, hidden_size)


def fused_step_kernel():
    """The whole training step of a one-layer model on one stream, compiled (rnn_fused.py)."""
    from . import rnn_fused

    return rnn_fused.kernel()


#
# The tuned recurrence works in column form, as the seeds write it (vectors are columns, one
# column per stream), with two layouts of a window:
#
#   step-major X     (T+1, K, B)   X[t] = [h_{t-1}; x_t; 1], the stacked input of step t
#   feature-major XT (K, T+1, B)   the same numbers, one row per feature across all steps
#
# Step t of the forward pass reads the contiguous block X[t] and writes h_t into X[t+1, :H], which
# step t+1 reads: one product and one tanh per step, no copies. Once the loop is done a single
# transposing copy gives XT, in which every feature's whole window is one row: the states of the
# window are the (H, N) matrix XT[:H, 1:] and the inputs of every step the (K, N) matrix XT[:, :T],
# ready for the large products over all steps (output layer, weight gradients).
#
# Why this layout: OpenBLAS multiplies the per-step blocks faster as (H, K) x (K, B), with both
# operands contiguous, than in the row form (B, K) x (K, H) (BENCHMARKS.md, "The tanh cell's
# column form").


def stack_weights(
    weight_hh: np.ndarray, weight_ih: np.ndarray, bias_ih: np.ndarray, bias_hh: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """[W U b] with b = b_ih + b_hh: (H, K), K = H + I + 1, into `out` if given."""
    H, I = weight_ih.shape
    if out is None:
        out = np.empty((H, H + I + 1), dtype=weight_hh.dtype)
    out[:, :H] = weight_hh
    out[:, H : H + I] = weight_ih
    np.add(bias_ih, bias_hh, out=out[:, H + I])
    return out


def use_jit(batch_size: int, hidden_size: int) -> bool:
    """Whether the recurrence of B streams of H units runs in the compiled loops (tuning.py)."""
    return batch_size * hidden_size <= tuning.RNN_JIT_MAX_WORK and _jit.available()


_compiled = None


def _kernels():
    """This cell's compiled kernels (rnn_kernels.py), imported on first use (that imports numba)."""
    global _compiled
    if _compiled is None:
        from . import rnn_kernels

        _compiled = rnn_kernels
    return _compiled


def rnn_forward(X: np.ndarray, weight_cat: np.ndarray) -> None:
    """h_t = tanh([W U b] [h_{t-1}; x_t; 1]) for t = 1..T, in place in X.

    X: (T+1, K, B) step-major, with X[0, :H] = h_0 and X[t, H:] = [x_t; 1] on entry; on return
    X[t+1, :H] = h_t.  weight_cat: (H, K) from `stack_weights`, C-contiguous.
    """
    H = weight_cat.shape[0]
    if use_jit(X.shape[2], H):
        # the compiled loop reads the weights one input row at a time: it wants them transposed
        wct = np.ascontiguousarray(weight_cat.T)
        _kernels().forward_loop(X, wct)
        return
    for t in range(X.shape[0] - 1):
        h = X[t + 1, :H]
        np.matmul(weight_cat, X[t], out=h)
        np.tanh(h, out=h)


def rnn_backward(
    dhs: np.ndarray, hs: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, dweight_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror of `rnn_forward`: backpropagation through time over one window, feature-major.

    dhs: (H, T, B), dL/dh_t arriving from above (the output layer or the next layer). It is
    consumed: da is computed in place in it, so no window-sized array is allocated.
    hs: (H, T, B) and h0: (H, B), the forward's states (views into XT are fine).
    weight_hh: (H, H), W.  dweight_hh: (H, H), accumulated in place.
    Returns (da, dh0): da (H, T, B) = dL/da_t (the same array as dhs), which the caller turns
    into the input-side gradients, and dh0 (H, B) = dL/dh_0.

    Going backwards, h_t receives gradient from the layer above at step t *and* from a_{t+1}
    through W: dh_t = dhs_t + W^T da_{t+1}. That sum is the only sequential work; dW is then
    one product over all steps, sum_t da_t h_{t-1}^T.
    """
    H, T, B = dhs.shape
    da = dhs
    wT = weight_hh.T
    if use_jit(B, H):
        _kernels().bptt_loop(da, hs, weight_hh)
    else:
        _bptt_loop(da, hs, weight_hh)
    dh0 = wT @ da[:, 0]
    # sum_t da_t h_{t-1}^T with h_{t-1} = h0 for the first step and hs[t-1] after it
    prev = _states_before(hs, h0)
    if prev is not None:  # one product over the whole window
        dweight_hh += da.reshape(H, -1) @ prev.reshape(H, -1).T
    else:
        dweight_hh += da[:, 0] @ h0.T
        if T > 1:
            dweight_hh += da[:, 1:].reshape(H, -1) @ hs[:, :-1].reshape(H, -1).T
    return da, dh0


def _states_before(hs: np.ndarray, h0: np.ndarray) -> np.ndarray | None:
    """[h0, hs[:, :-1]], the state before each step, as one (H, T, B) view, or None.

    Possible when h0 sits in memory exactly one step before hs with the same layout, as in the
    model's feature-major buffer (h0 = XT[:H, 0], hs = XT[:H, 1:]). Then the weight gradient is
    one product instead of two, and the first step's (H, B) x (B, H) product, which NumPy runs
    slowly for B=1 (BENCHMARKS.md, "The tanh cell's column form"), goes away.
    """
    if (
        hs.base is not None
        and hs.base is h0.base
        and h0.strides == (hs.strides[0], hs.strides[2])
        and h0.shape == (hs.shape[0], hs.shape[2])
        and h0.ctypes.data + hs.strides[1] == hs.ctypes.data
    ):
        return np.lib.stride_tricks.as_strided(h0, shape=hs.shape, strides=hs.strides, writeable=False)
    return None


def _bptt_loop(da: np.ndarray, hs: np.ndarray, weight_hh: np.ndarray) -> None:
    """The sequential part of `rnn_backward`: da_t = (dhs_t + W^T da_{t+1}) * (1 - h_t^2), in place.

    The step's arithmetic runs on contiguous (H, B) blocks (`cur`, `tmp` and a step-major chunk
    of tanh'), and W^T is copied once to a contiguous array: BLAS multiplies those measurably
    faster than strided slices of the feature-major da or the transposed view of W
    (BENCHMARKS.md). Each step's result is then written back into da's column block.
    """
    H, T, B = da.shape
    wT = np.ascontiguousarray(weight_hh.T)
    cur = np.empty((H, B), dtype=da.dtype)  # da_{t+1}, then da_t
    tmp = np.empty((H, B), dtype=da.dtype)
    # tanh'(a_t) = 1 - h_t^2 for a chunk of steps at a time, vectorised, in cache-sized pieces
    chunk = max(1, min(T, tuning.DTANH_CHUNK_ELEMENTS // (B * H)))
    dtanh = np.empty((chunk, H, B), dtype=da.dtype)
    for hi in range(T, 0, -chunk):
        lo = max(0, hi - chunk)
        d = dtanh[: hi - lo]
        np.multiply(hs[:, lo:hi], hs[:, lo:hi], out=d.transpose(1, 0, 2))
        np.subtract(1, d, out=d)
        for t in range(hi - 1, lo - 1, -1):
            if t == T - 1:
                np.multiply(da[:, t], d[t - lo], out=cur)
            else:
                np.matmul(wT, cur, out=tmp)  # W^T da_{t+1}
                tmp += da[:, t]
                np.multiply(tmp, d[t - lo], out=cur)
            da[:, t] = cur


def rnn_input_backward(
    da: np.ndarray,
    XT: np.ndarray,
    weight_ih: np.ndarray,
    dweight_ih: np.ndarray,
    dbias_ih: np.ndarray,
    dbias_hh: np.ndarray,
    dx_out: np.ndarray | None = None,
) -> np.ndarray | None:
    """Mirror of the input side of `rnn_forward`: d[U b] += sum_t da_t [x_t; 1]^T, dx = U^T da.

    da: (H, T, B) from `rnn_backward`.  XT: (K, T+1, B), the feature-major copy of the forward's X.
    weight_ih: (H, I), U.  dweight_ih: (H, I), dbias_ih, dbias_hh: (H,), accumulated in place
    (both biases get the same gradient: only their sum enters the network).
    dx_out: (I, T, B) to receive dL/dx_t for the layer below, or None when there is none (the
    first layer, whose inputs are characters). Returns dx_out.
    """
    H, T, B = da.shape
    I = weight_ih.shape[1]
    flat_da = da.reshape(H, T * B)
    # one product gives dU and db together: the last input row is the constant 1
    dub = flat_da @ XT[H:, :T].reshape(I + 1, T * B).T  # (H, I + 1)
    dweight_ih += dub[:, :I]
    dbias_ih += dub[:, I]
    dbias_hh += dub[:, I]
    if dx_out is None:
        return None
    np.matmul(weight_ih.T, flat_da, out=dx_out.reshape(I, T * B))
    return dx_out


def rnn_forward_reference(xa: np.ndarray, weight_hh: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """The plain recurrence h_t = tanh(xa_t + W h_{t-1}), kept as the reference.

    xa: (T, B, H), the input projection U x_t + b already added for every step.
    weight_hh: (H, H), W.  h0: (B, H).  Returns hs: (T, B, H).
    """
    hs = np.empty_like(xa)
    h = h0
    for t in range(xa.shape[0]):
        h = np.tanh(xa[t] + h @ weight_hh.T)
        hs[t] = h
    return hs


def rnn_backward_reference(
    dhs: np.ndarray, hs: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, dweight_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The plain BPTT of `rnn_forward_reference`, kept as the reference.

    dhs: (T, B, H) from above (not modified).  hs, h0, weight_hh: as in / out of the forward.
    dweight_hh: (H, H), accumulated in place.  Returns (da (T, B, H), dh0 (B, H)).
    """
    da = np.empty_like(dhs)
    dh_next = np.zeros_like(h0)
    for t in range(dhs.shape[0] - 1, -1, -1):
        da[t] = (dhs[t] + dh_next) * (1.0 - hs[t] * hs[t])
        h_prev = hs[t - 1] if t > 0 else h0
        dweight_hh += da[t].T @ h_prev
        dh_next = da[t] @ weight_hh
    return da, dh_next


# --------------------------------------------------------------------------------------------
# the cell contract (core/__init__): a layer over a window, time-major at the interface


def _stacked_input(x: np.ndarray, h0: np.ndarray, H: int, I: int) -> np.ndarray:
    """X (T+1, K, B) step-major with X[0, :H] = h0, X[t, H:] = [x_t; 1] (see `rnn_forward`).

    x: (T, B) ids, set as one-hot entries, or (T, B, I) floats, copied in column form.
    """
    T, B = x.shape[:2]
    K = H + I + 1
    X = np.empty((T + 1, K, B), dtype=h0.dtype)
    X[0, :H] = h0.T
    X[:T, K - 1] = 1  # the constant input that multiplies b
    if is_ids(x):
        X[:T, H : H + I] = 0
        # element (t, H + v, b) of X sits at flat offset (t*K + H + v)*B + b
        t = np.arange(T).reshape(T, 1)
        X.reshape(-1)[((t * K + H + x) * B + np.arange(B)).reshape(-1)] = 1
    else:
        X[:T, H : H + I] = x.transpose(0, 2, 1)
    return X


def forward(x: np.ndarray, params: Params, state0: State, need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """The layer over a window (contract in core/__init__). hs is a (T, B, H) view into this
    call's own buffer, so a layer above that reads it in column form reads contiguous memory."""
    w_ih, w_hh, b_ih, b_hh = params
    H, I = w_ih.shape
    X = _stacked_input(x, state0[0], H, I)
    rnn_forward(X, stack_weights(w_hh, w_ih, b_ih, b_hh))
    h_n = np.ascontiguousarray(X[-1, :H].T)
    if not need_cache:
        return X[1:, :H].transpose(0, 2, 1), (h_n,), None
    XT = np.ascontiguousarray(X.transpose(1, 0, 2))  # (K, T+1, B): every feature's window is a row
    return XT[:H, 1:].transpose(1, 2, 0), (h_n,), (XT, is_ids(x))


def backward(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
             need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """Mirror of `forward`. dhs given as the transposed view of a feature-major (H, T, B) array
    (as the model's head and the layer above produce it) is consumed in place, with no copy."""
    XT, ids = cache
    w_ih, w_hh = params[0], params[1]
    dw_ih, dw_hh, db_ih, db_hh = grads
    H, I = w_ih.shape
    T, B = dhs.shape[:2]
    dh = np.ascontiguousarray(dhs.transpose(2, 0, 1))  # (H, T, B)
    if dstate_n is not None and dstate_n[0] is not None:
        dh[:, -1] += dstate_n[0].T  # h_T is both the last output and the carried state
    da, dh0 = rnn_backward(dh, XT[:H, 1:], XT[:H, 0], w_hh, dw_hh)
    dxT = np.empty((I, T, B), dtype=dh.dtype) if need_dx and not ids else None
    rnn_input_backward(da, XT, w_ih, dw_ih, db_ih, db_hh, dx_out=dxT)
    return (dxT.transpose(1, 2, 0) if dxT is not None else None), (np.ascontiguousarray(dh0.T),)


def step(x: np.ndarray, params: Params, state: State) -> State:
    """One step for generation: h' = tanh(W h + U x + b). x: (B,) ids or (B, I); state ((B, H),)."""
    w_ih, w_hh, b_ih, b_hh = params
    h = state[0]
    ids = is_ids(x)
    if h.shape[0] == 1:  # one stream: a matrix-vector product (BLAS's gemv beats a 1-row gemm)
        a = (w_hh @ h[0])[None]
        a[0] += w_ih[:, x[0]] if ids else w_ih @ x[0]  # U x_t: for one-hot x_t a column of U
    else:
        a = h @ w_hh.T
        a += w_ih.T[x] if ids else x @ w_ih.T
    a += b_ih
    a += b_hh
    return (np.tanh(a, out=a),)


def gate_activations(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, 1, H): the one block after its tanh, h' itself, of N independent steps."""
    return step(x, params, state)[0][:, None, :]


def forward_reference(x: np.ndarray, params: Params, state0: State,
                      need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """The plain layer: U x_t + b for all steps, then the recurrence one equation per step."""
    w_ih, w_hh, b_ih, b_hh = params
    xa = input_forward(x, w_ih, b_ih) + b_hh
    hs = rnn_forward_reference(xa, w_hh, state0[0])
    return hs, (hs[-1].copy(),), (x, hs, state0[0])


def backward_reference(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
                       need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    x, hs, h0 = cache
    w_ih, w_hh = params[0], params[1]
    dw_ih, dw_hh, db_ih, db_hh = grads
    dhs = dhs.copy()
    if dstate_n is not None and dstate_n[0] is not None:
        dhs[-1] += dstate_n[0]
    da, dh0 = rnn_backward_reference(dhs, hs, h0, w_hh, dw_hh)
    db_hh += da.sum(axis=(0, 1))
    return input_backward_reference(da, x, w_ih, dw_ih, db_ih, need_dx), (dh0,)
