"""The GRU cell: PyTorch's `nn.GRU` equations and parameter layouts, over one window.

For every step t, with the three gate blocks of the weights' rows in the order r|z|n:

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)         reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)         update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))    candidate state
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Unlike the other gates, the candidate's recurrent part W_hn h_{t-1} + b_hn is multiplied by r_t
before it is added, so b_hn cannot be merged into b_in, and W_hn and b_hn receive r-weighted
gradients.

PyTorch's names for one layer: w_ih = weight_ih_l0 (3H, I), w_hh = weight_hh_l0 (3H, H),
b_ih = bias_ih_l0, b_hh = bias_hh_l0 (3H,); rows [0:H] belong to r, [H:2H] to z, [2H:3H] to n
(W_ir, W_iz, W_in are the row blocks of w_ih; W_hr, W_hz, W_hn those of w_hh). The state is (h,).

Backward, with dh_t the whole gradient reaching h_t (from above and from step t+1) and
hn_t = W_hn h_{t-1} + b_hn:

    dn = dh_t * (1 - z_t) * (1 - n_t^2)             (gradients of the pre-activations)
    dz = dh_t * (h_{t-1} - n_t) * z_t * (1 - z_t)
    dr = dn * hn_t * r_t * (1 - r_t)
    input side:   dxw_t = [dr, dz, dn]              -> dW_ih, db_ih, dx
    hidden side:  drec_t = [dr, dz, r_t * dn]       -> dW_hh, db_hh
    carried to step t-1:  dh = drec_t W_hh + dh_t * z_t

Layout. Only the recurrence is sequential. The input projection W_ih x_t + b_ih (with b_hr, b_hz
folded in; b_hn cannot be) of every step is one call of `linear.input_forward` before the loop;
after the loop dW_hh is one product over the whole window, sum_t drec_t^T h_{t-1}, and the input
side one call of `linear.input_backward`. Each step does the (B, H) x (H, 3H) product (as three
gate blocks), the gate arithmetic on preallocated (B, H) blocks, and in backward one
(B, 3H) x (3H, H) product.

The layout is the one of `core.lstm`, for the reasons measured there: time-major row form for the
interface and everything read across steps (h_t written straight into the buffer whose tail is
hs, the hidden-side gradients drec written into a (T, B, 3H) array read as it is by the next
step's product, the dW_hh product and, once its n block is replaced by dn, by
`linear.input_backward`), and gate-major (3, B, H) blocks within a step, from one batched
product with the transposed gate blocks of W_hh, stored in the memory of the step's slice of
the input projection. For the GRU the batched product and the single one take about the same
time; the contiguous gate blocks are what count (BENCHMARKS.md, "The gated cells' layout").

The compiled path (gru_kernels.py), as described in `core.lstm`: the same products and cache, one
compiled call for each step's elementwise work, the (V, 3H) table of W_ih^T + b for ids, db and
(for ids) dW_ih summed by the backward kernel, the whole window in one call up to B * H =
tuning.JIT_WINDOW_MAX_WORK, and the backward pass's window-sized gradients kept in
`_jit.scratch`. It differs from the NumPy code only by the kernels' tanh and the order of the
sums into the biases and dW_ih (and, in the whole-window kernels, of the products). Its speed
against nn.GRU: BENCHMARKS.md, "The gated cells' compiled path".

`hs` is a view of the state buffer that the cache keeps (backward reads h_{t-1} from it): do not
write into it before backward. `backward` modifies neither the cache nor `dhs`, so it may be run
more than once on one forward.
"""

from __future__ import annotations

import numpy as np

from . import _jit, tuning
from .contract import KerasLayer, OnnxLayer, Param, Params, State
from .linear import (as_layer_input, gate_layer_train_flops, input_backward, input_backward_reference, input_forward,
                     is_ids, sigmoid)

# ---- the cell's declarations (the contract in core/__init__)
NAME = "gru"
GATES = 3
GATE_NAMES = ("r", "z", "n")
SIGMOID_GATES = ("r", "z")
STATE = ("h",)
HEATMAP_STATE = "h"
PARAMS = (
    Param("weight_ih", ("G*H", "I"), "input"),
    Param("weight_hh", ("G*H", "H"), "recurrent"),
    Param("bias_ih", ("G*H",), "bias"),
    Param("bias_hh", ("G*H",), "bias"),  # b_hn acts inside r * (W_hn h + b_hn): not merged into b_ih
)
# PyTorch's init ahead of orthogonal gate blocks on prose and on code (BENCHMARKS.md, "Choosing the defaults")
DEFAULT_INIT = "pytorch"
DEFAULT_LR = 3e-3
INIT_BIASES: dict[str, tuple] = {}
TORCH_MODULE = "GRU"
TORCH_OPTIONS: dict = {}
# Keras's blocks are z|r|h, the first two swapped; reset_after=True is PyTorch's GRU (r multiplies
# W_hn h + b_hn), and keeps both biases
KERAS = KerasLayer("GRU", (1, 0, 2), both_biases=True, options={"reset_after": True})
# ONNX's blocks are z|r|h; linear_before_reset=1 is PyTorch's r * (W_hn h + b_hn) (ONNX's default
# multiplies r into h before W_hn: another cell)
ONNX = OnnxLayer("GRU", (1, 0, 2), attributes={"linear_before_reset": 1})
KERNELS = True
FUSED_STEP = False

def train_flops(input_size: int, hidden_size: int) -> float:
    return gate_layer_train_flops(GATES, input_size, hidden_size)


def compiled(batch_size: int, hidden_size: int) -> bool:
    """Whether a window runs in the compiled kernels now (for float32 / float64 parameters and
    ids in range, at any size)."""
    return _jit.available()


class _Cache:
    """What `backward` reads: the forward's input, gate activations, states and W_hn h + b_hn."""

    __slots__ = ("x", "acts", "hbuf", "hn")

    def __init__(self, x, acts, hbuf, hn):
        self.x = x  # (T, B) ids or (T, B, I) floats in the parameters' dtype
        self.acts = acts  # (T, 3, B, H): r, z, n after their nonlinearities, gate-major
        self.hbuf = hbuf  # (T+1, B, H): h_0, h_1 .. h_T (hs is a view of [1:])
        self.hn = hn  # (T, B, H): W_hn h_{t-1} + b_hn


def forward(x: np.ndarray, params: Params, state0: State, need_cache: bool = True) -> tuple[np.ndarray, State, _Cache | None]:
    """One window, as the contract in `charrnn.core` says: (hs, (h_T,), cache)."""
    w_ih, w_hh, b_ih, b_hh = params
    dtype = w_hh.dtype
    x = as_layer_input(x, dtype)
    if use_jit(x, w_ih):
        return _forward_jit(x, w_ih, w_hh, b_ih, b_hh, state0, need_cache)
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    (h0,) = state0

    # b_hr and b_hz join the input projection's bias; b_hn stays inside r * (W_hn h + b_hn)
    bias = b_ih.copy()
    bias[: 2 * H] += b_hh[: 2 * H]
    b_hn = b_hh[2 * H :]
    # For ids the projection gathers rows of W_ih^T: with W_ih in Fortran order they are
    # contiguous rows, gathered faster than the strided columns of a C-ordered W_ih.
    w_in = np.asfortranarray(w_ih) if is_ids(x) else w_ih
    xw = input_forward(x, w_in, bias)  # (T, B, 3H): W_ih x_t + b_ih + [b_hr, b_hz, 0]
    xw3 = xw.reshape(T, B, 3, H)
    # The gate activations of step t are stored gate-major, (3, B, H), in the memory that held
    # step t's input projection (read just before): contiguous blocks for the gate arithmetic,
    # and no second window-sized array.
    acts = xw.reshape(T, 3, B, H)
    # W_k^T for each gate k, contiguous: the step's product then comes out gate-major too
    w3 = np.ascontiguousarray(w_hh.reshape(3, H, H).transpose(0, 2, 1))

    hbuf = np.empty((T + 1, B, H), dtype=dtype)
    hbuf[0] = h0
    hn = np.empty((T if need_cache else 1, B, H), dtype=dtype)
    pre = np.empty((3, B, H), dtype=dtype)

    for t in range(T):
        h_prev = hbuf[t]
        np.matmul(h_prev, w3, out=pre)  # W_hh h_{t-1}, one (B, H) block per gate
        hn_t = hn[t % hn.shape[0]]
        np.add(pre[2], b_hn, out=hn_t)
        pre[:2] += xw3[t, :, :2].transpose(1, 0, 2)  # r and z are neighbours: one add, one sigmoid
        pre[2] = xw3[t, :, 2]  # W_in x_t + b_in: the last read of step t's projection
        a = acts[t]
        sigmoid(pre[:2], out=a[:2])
        r, z, n = a
        np.multiply(r, hn_t, out=n)  # r * (W_hn h + b_hn)
        n += pre[2]
        np.tanh(n, out=n)
        # h_t = (1 - z) * n + z * h_{t-1} = n + z * (h_{t-1} - n): one product fewer
        h = hbuf[t + 1]
        np.subtract(h_prev, n, out=h)
        h *= z
        h += n

    hs = hbuf[1:]
    state_n = (hbuf[T].copy(),)  # a copy: the caller may change its state without touching hs
    cache = _Cache(x, acts, hbuf, hn) if need_cache else None
    return hs, state_n, cache


def backward(dhs: np.ndarray, cache: _Cache, params: Params, grads: Params, dstate_n: State | None = None,
             need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """Mirror of `forward`: adds into grads; returns (dx, (dh_0,))."""
    w_ih, w_hh = params[0], params[1]
    dw_ih, dw_hh, db_ih, db_hh = grads
    dtype = w_hh.dtype
    x, acts, hbuf, hn = cache.x, cache.acts, cache.hbuf, cache.hn
    T, B, H = hn.shape
    dhs = np.asarray(dhs, dtype=dtype)
    dh_n = None if dstate_n is None else dstate_n[0]
    if use_jit(x, w_ih):
        return _backward_jit(dhs, cache, w_ih, w_hh, dw_ih, dw_hh, db_ih, db_hh, dh_n, need_dx)

    # time-major, as the product with W_hh and linear.input_backward want them; each step's
    # gate blocks are written into its (B, 3, H) view
    drec = np.empty((T, B, 3 * H), dtype=dtype)  # hidden side: [dr, dz, r * dn]
    drec3 = drec.reshape(T, B, 3, H)
    dn_all = np.empty((T, B, H), dtype=dtype)  # the input side's n block: dn
    dh = np.empty((B, H), dtype=dtype)  # dL/dh_t, all paths
    u = np.empty((B, H), dtype=dtype)
    v = np.empty((B, H), dtype=dtype)
    w = np.empty((B, H), dtype=dtype)

    for t in range(T - 1, -1, -1):
        r, z, n = acts[t]
        d = drec3[t]
        dr, dz, drn = d[:, 0], d[:, 1], d[:, 2]
        dn = dn_all[t]
        h_prev = hbuf[t]

        # dh_t = dhs_t + drec_{t+1} W_hh + dh_{t+1} * z_{t+1}  (or + dh_n at the last step)
        if t == T - 1:
            if dh_n is None:
                dh[...] = dhs[t]
            else:
                np.add(dhs[t], dh_n, out=dh)
        else:
            dh *= acts[t + 1, 1]
            dh += dhs[t]
            np.matmul(drec[t + 1], w_hh, out=u)
            dh += u
        # dz = dh * (h_{t-1} - n) * z * (1 - z)
        np.subtract(1, z, out=w)  # 1 - z, used twice
        np.multiply(w, z, out=v)
        np.subtract(h_prev, n, out=u)
        u *= dh
        np.multiply(u, v, out=dz)
        # dn = dh * (1 - z) * (1 - n^2)
        np.multiply(n, n, out=u)
        np.subtract(1, u, out=u)
        u *= w
        np.multiply(u, dh, out=dn)
        # dr = dn * hn * r * (1 - r)
        np.multiply(dn, hn[t], out=u)
        np.subtract(1, r, out=v)
        v *= r
        np.multiply(u, v, out=dr)
        # the recurrent part of n entered as r * hn
        np.multiply(dn, r, out=drn)

    dh0 = drec[0] @ w_hh
    dh *= acts[0, 1]
    dh0 += dh
    flat = drec.reshape(T * B, 3 * H)
    # sum_t drec_t^T h_{t-1}: one product over the window; hbuf[:T] holds h_0 .. h_{T-1}
    dw_hh += flat.T @ hbuf[:T].reshape(T * B, H)
    db_hh += flat.sum(axis=0)
    # the input side's gradients differ only in the n block: dn instead of r * dn
    drec3[:, :, 2] = dn_all
    dx = input_backward(drec, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh0,)


# --------------------------------------------------------------------------------------------
# the compiled path (numba, gru_kernels.py): the same computation, each step's elementwise work in one
# call, and for small B * H the whole window in one call

def use_jit(x: np.ndarray, w_ih: np.ndarray) -> bool:
    return _jit.cell_kernels_apply(x, w_ih)


_compiled = None


def _kernels():
    """This cell's compiled kernels (gru_kernels.py), imported on first use (that imports numba)."""
    global _compiled
    if _compiled is None:
        from . import gru_kernels

        _compiled = gru_kernels
    return _compiled


def _forward_jit(x, w_ih, w_hh, b_ih, b_hh, state0, need_cache):
    dtype = w_hh.dtype
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    kernels = _kernels()
    bias = b_ih.copy()
    bias[: 2 * H] += b_hh[: 2 * H]
    b_hn = np.ascontiguousarray(b_hh[2 * H :])
    inp, rows, acts = _jit.window_inputs(x, w_ih, bias, GATES, B, H)
    hbuf = np.empty((T + 1, B, H), dtype=dtype)
    hbuf[0] = state0[0]
    hn = np.empty((T if need_cache else 1, B, H), dtype=dtype)
    if B * H <= tuning.JIT_WINDOW_MAX_WORK:
        w_t = np.ascontiguousarray(w_hh.T)
        kernels.forward_window(inp, rows, b_hn, w_t, acts, hbuf, hn)
    else:
        w3 = np.ascontiguousarray(w_hh.reshape(3, H, H).transpose(0, 2, 1))
        pre = np.empty((3, B, H), dtype=dtype)
        kernel = kernels.forward_step
        for t in range(T):
            np.matmul(hbuf[t], w3, out=pre)
            kernel(t, pre, inp, rows, b_hn, acts, hbuf, hn)
    state_n = (hbuf[T].copy(),)
    cache = _Cache(x, acts, hbuf, hn) if need_cache else None
    return hbuf[1:], state_n, cache


def _backward_jit(dhs, cache, w_ih, w_hh, dw_ih, dw_hh, db_ih, db_hh, dh_n, need_dx):
    dtype = w_hh.dtype
    x, acts, hbuf, hn = cache.x, cache.acts, cache.hbuf, cache.hn
    T, B, H = hn.shape
    kernels = _kernels()
    ids = is_ids(x)
    # [dr, dz, r * dn] and dn, only read here: given back at the end. dn for the input side is
    # kept for the window's product with dense x; for ids the kernels add it into dW_ih^T's rows
    # (dwt) as they go, and one step's worth is enough.
    drec = _jit.scratch.take((T, B, 3 * H), dtype)
    dn_out = _jit.scratch.take((1 if ids else T, B, H), dtype)
    # dh: at the last step the gradient arriving at h_T, to which the kernel adds dhs_T
    dh = np.zeros((B, H), dtype=dtype) if dh_n is None else np.array(dh_n, dtype=dtype)
    xi = np.ascontiguousarray(x, dtype=np.intp) if ids else np.zeros((1, 1), dtype=np.intp)
    dwt = np.zeros((w_ih.shape[1] if ids else 1, 3 * H), dtype=dtype)
    db_in = np.zeros(3 * H, dtype=dtype)
    db_rec = np.zeros(3 * H, dtype=dtype)
    if B * H <= tuning.JIT_WINDOW_MAX_WORK:
        dh0 = np.empty((B, H), dtype=dtype)
        w = np.ascontiguousarray(w_hh)
        kernels.backward_window(dh, dhs, acts, hbuf, hn, drec, dn_out, w, xi, dwt, db_in, db_rec, ids, dh0)
    else:
        mm = np.empty((B, H), dtype=dtype)
        kernel = kernels.backward_step
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                np.matmul(drec[t + 1], w_hh, out=mm)
            kernel(t, dh, mm, dhs, acts, hbuf, hn, drec, dn_out, xi, dwt, db_in, db_rec, ids)
        dh0 = drec[0] @ w_hh
        dh *= acts[0, 1]
        dh0 += dh
    flat = drec.reshape(T * B, 3 * H)
    dw_hh += flat.T @ hbuf[:T].reshape(T * B, H)
    db_hh += db_rec
    db_ih += db_in
    dx = None
    if ids:
        dw_ih += dwt.T
    else:
        # the input side's gradients differ only in the n block: dn instead of r * dn
        drec.reshape(T, B, 3, H)[:, :, 2] = dn_out
        dw_ih += flat.T @ x.reshape(T * B, -1)
        dx = (flat @ w_ih).reshape(T, B, -1) if need_dx else None
    _jit.scratch.give(drec, dn_out)
    return dx, (dh0,)


def step(x: np.ndarray, params: Params, state: State) -> State:
    """One step for generation: x (B,) ids or (B, I) floats, state (h,) -> (h_new,)."""
    # Column form, (3H, B): the products then use the weights as stored. The row form's
    # h @ w_hh.T multiplies by a transposed view, which OpenBLAS runs slower for B > 1
    # (BENCHMARKS.md, "The gated cells' layout"); at B=1 both are the same matrix-vector product.
    w_ih, w_hh, b_ih, b_hh = params
    (h,) = state
    H = w_hh.shape[1]
    x = as_layer_input(x, w_hh.dtype)
    rec = w_hh @ h.T  # (3H, B), fresh
    rec += b_hh[:, None]
    a = w_ih[:, x] if is_ids(x) else w_ih @ x.T  # a gathered column of W_ih for each id
    a += b_ih[:, None]
    rz = a[: 2 * H]
    rz += rec[: 2 * H]
    sigmoid(rz, out=rz)
    rec_n = rec[2 * H :]
    rec_n *= a[:H]  # r * (W_hn h + b_hn)
    n = a[2 * H :]
    n += rec_n
    np.tanh(n, out=n)
    h_new = h.T - n
    h_new *= a[H : 2 * H]
    h_new += n
    return (h_new.T,)  # a (B, H) view of the column-form result


def gate_activations(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, 3, H): r, z, n after their nonlinearities for N independent steps, written plainly."""
    w_ih, w_hh, b_ih, b_hh = params
    x = as_layer_input(x, w_hh.dtype)
    H = w_hh.shape[1]
    xw = input_forward(x[None], w_ih, b_ih)[0]  # (N, 3H)
    hw = state[0] @ w_hh.T + b_hh
    r = sigmoid(xw[:, :H] + hw[:, :H])
    z = sigmoid(xw[:, H : 2 * H] + hw[:, H : 2 * H])
    n = np.tanh(xw[:, 2 * H :] + r * hw[:, 2 * H :])
    return np.stack([r, z, n], axis=1)


# --------------------------------------------------------------------------------------------
# the references: PyTorch's equations as written, one per line, fresh arrays, row form


def forward_reference(x: np.ndarray, params: Params, state0: State,
                      need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """`forward` written plainly: the equations at the top of this module, step by step."""
    w_ih, w_hh, b_ih, b_hh = params
    x = as_layer_input(x, w_hh.dtype)
    H = w_hh.shape[1]
    h = np.asarray(state0[0], dtype=w_hh.dtype)
    xw = input_forward(x, w_ih, b_ih)  # W_ih x_t + b_ih for every step, (T, B, 3H)
    hs = []
    steps = []
    for t in range(x.shape[0]):
        hw = h @ w_hh.T + b_hh  # W_hh h_{t-1} + b_hh, (B, 3H)
        r = sigmoid(xw[t][:, 0 * H : 1 * H] + hw[:, 0 * H : 1 * H])
        z = sigmoid(xw[t][:, 1 * H : 2 * H] + hw[:, 1 * H : 2 * H])
        hn = hw[:, 2 * H : 3 * H]
        n = np.tanh(xw[t][:, 2 * H : 3 * H] + r * hn)
        h_prev = h
        h = (1 - z) * n + z * h_prev
        hs.append(h)
        steps.append((h_prev, r, z, n, hn))
    cache = (x, steps) if need_cache else None
    return np.stack(hs), (h,), cache


def backward_reference(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
                       need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """`backward` written plainly: backpropagation through time of `forward_reference`."""
    w_ih, w_hh = params[0], params[1]
    dw_ih, dw_hh, db_ih, db_hh = grads
    x, steps = cache
    dhs = np.asarray(dhs, dtype=w_hh.dtype)
    T, B, H = dhs.shape
    dh_next = np.zeros((B, H), dtype=w_hh.dtype)
    if dstate_n is not None and dstate_n[0] is not None:
        dh_next = np.asarray(dstate_n[0], dtype=w_hh.dtype)
    dxw = np.zeros((T, B, 3 * H), dtype=w_hh.dtype)
    for t in range(T - 1, -1, -1):
        h_prev, r, z, n, hn = steps[t]
        dh = dhs[t] + dh_next
        dn = dh * (1 - z) * (1 - n**2)
        dz = dh * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dxw[t] = np.concatenate([dr, dz, dn], axis=1)
        drec = np.concatenate([dr, dz, r * dn], axis=1)
        dw_hh += drec.T @ h_prev
        db_hh += drec.sum(axis=0)
        dh_next = drec @ w_hh + dh * z
    dx = input_backward_reference(dxw, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh_next,)
