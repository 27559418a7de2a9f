"""The LSTM cell: PyTorch's `nn.LSTM` equations and parameter layouts, over one window.

For every step t, with the four gate blocks of the weights' rows in the order i|f|g|o:

    gates_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        (B, 4H) in row form
    i_t = sigmoid(gates_t[i])      input gate
    f_t = sigmoid(gates_t[f])      forget gate
    g_t = tanh(gates_t[g])         candidate cell
    o_t = sigmoid(gates_t[o])      output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

PyTorch's names for one layer: w_ih = weight_ih_l0 (4H, I), w_hh = weight_hh_l0 (4H, H),
b_ih = bias_ih_l0, b_hh = bias_hh_l0 (4H,); the rows [0:H] belong to i, [H:2H] to f, [2H:3H] to
g and [3H:4H] to o, as in PyTorch, so parameters copy across unchanged. The state is (h, c).

Backward, with dh_t the whole gradient reaching h_t (from above and from step t+1):

    dc_t  = dc carried from step t+1 + dh_t * o_t * (1 - tanh(c_t)^2)
    do    = dh_t * tanh(c_t) * o_t * (1 - o_t)           (gradients of the pre-activations)
    di    = dc_t * g_t * i_t * (1 - i_t)
    dg    = dc_t * i_t * (1 - g_t^2)
    df    = dc_t * c_{t-1} * f_t * (1 - f_t)
    carried to step t-1:  dh = dgates_t W_hh,  dc = dc_t * f_t

Layout. Only the recurrence is sequential. The input projection W_ih x_t + b_ih + b_hh of every
step is one call of `linear.input_forward` before the loop; after the loop dW_hh is one product
over the whole window, sum_t dgates_t^T h_{t-1}, and the input side one call of
`linear.input_backward`. Each step does the (B, H) x (H, 4H) product (as four gate blocks), the
gate arithmetic on preallocated (B, H) blocks, and in backward one (B, 4H) x (4H, H) product.

The interface and everything read across steps are time-major row form: h_t goes straight into
a (T+1, B, H) buffer whose tail is the returned hs (h_{t-1} of every step is then its head, for
dW_hh), and backward writes each step's gate gradients into a (T, B, 4H) array that the next
step's product with W_hh, the dW_hh product and `linear.input_backward` all read as it is. Within
a step the gates are gate-major, (4, B, H): W_hh is split into its four (H, H) gate blocks, each
stored transposed and contiguous, and one batched product h_{t-1} W_k^T writes every gate as its
own contiguous (B, H) block. The step's slice of the input projection is added with one strided
add, and the activations are stored gate-major in the memory that slice occupied (it is not read
again), so the cache costs no second window-sized array.

Why (measured: BENCHMARKS.md, "The gated cells' layout"): NumPy's elementwise functions run
much slower on the (B, H) column slices of a (B, 4H) row than on contiguous (B, H) blocks, and a
step of forward + backward is about 40 such calls; the batched per-gate product is faster than
one (B, H) x (H, 4H) product; column form, (4H, B) blocks as in the tanh cell, has the fastest
forward product, but every step would have to add its slice of the time-major input projection
transposed, which costs more than the product gains.

The compiled path. With numba (lstm_kernels.py; not with CHARRNN_JIT=0) `forward` and `backward`
run the same computation with the same cache: each step is the same BLAS product followed by one
compiled call doing all of the step's elementwise work, where the NumPy code makes about 12
(forward) and 25 (backward) passes over (B, H) blocks; the operations and their order are the
NumPy code's, so the two differ only by the kernels' tanh (within 2.5 ulp of the exact one, as
NumPy's is within 1.4), the order of the sums into db and dW_ih, and in the whole-window kernels
the order of the products' sums. For ids no window-sized projection is made: each step reads its
symbols' rows of W_ih^T + b from a (V, 4H) table, and the backward kernel adds each step's gate
gradients into db and into the rows of dW_ih^T its symbols select, instead of a sum and a product
with a one-hot matrix after the loop. Up to B * H = tuning.JIT_WINDOW_MAX_WORK the whole window
is one call, the products written as loops; the step kernels with BLAS products above. The
backward pass's (T, B, 4H) gate gradients live in `_jit.scratch` between calls: nothing outside
the call sees them. Its speed against nn.LSTM, and where its time goes: BENCHMARKS.md, "The
gated cells' compiled path".

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
NAME = "lstm"
GATES = 4
GATE_NAMES = ("i", "f", "g", "o")
SIGMOID_GATES = ("i", "f", "o")
STATE = ("h", "c")
HEATMAP_STATE = "c"  # the memory: where the units that track quotes and line lengths show
PARAMS = (
    Param("weight_ih", ("G*H", "I"), "input"),
    Param("weight_hh", ("G*H", "H"), "recurrent"),
    Param("bias_ih", ("G*H",), "bias"),
    Param("bias_hh", ("G*H",), "bias"),
)
# the best of 22 configurations on prose and on code (BENCHMARKS.md, "Choosing the defaults")
DEFAULT_INIT = "pytorch"
DEFAULT_LR = 5e-3
# under "orthogonal" the forget gate's bias starts at 1, so that the cell remembers by default
# (Jozefowicz, Zaremba and Sutskever 2015)
INIT_BIASES = {"orthogonal": (("bias_ih", "f", 1.0),)}
TORCH_MODULE = "LSTM"
TORCH_OPTIONS: dict = {}
KERAS = KerasLayer("LSTM", (0, 1, 2, 3), both_biases=False, options={})  # Keras's i|f|c|o: the same order
# ONNX's blocks are i|o|f|c: block j is PyTorch's i, o, f, g; no peepholes (P left out)
ONNX = OnnxLayer("LSTM", (0, 3, 1, 2), attributes={})
KERNELS = True
FUSED_STEP = False

def train_flops(input_size: int, hidden_size: int) -> float:
    return gate_layer_train_flops(GATES, input_size, hidden_size)


def compiled(batch_size: int, hidden_size: int) -> bool:
    """Whether a window runs in the compiled kernels now (for float32 / float64 parameters and
    ids in range, at any size)."""
    return _jit.available()


class _Cache:
    """What `backward` reads: the forward's input, gate activations and states."""

    __slots__ = ("x", "acts", "hbuf", "cbuf", "tanh_c")

    def __init__(self, x, acts, hbuf, cbuf, tanh_c):
        self.x = x  # (T, B) ids or (T, B, I) floats in the parameters' dtype
        self.acts = acts  # (T, 4, B, H): i, f, g, o after their nonlinearities, gate-major
        self.hbuf = hbuf  # (T+1, B, H): h_0, h_1 .. h_T (hs is a view of [1:])
        self.cbuf = cbuf  # (T+1, B, H): c_0 .. c_T
        self.tanh_c = tanh_c  # (T, B, H): tanh(c_1) .. tanh(c_T)


def forward(x: np.ndarray, params: Params, state0: State, need_cache: bool = True) -> tuple[np.ndarray, State, _Cache | None]:
    """One window, as the contract in `charrnn.core` says: (hs, (h_T, c_T), cache)."""
    w_ih, w_hh, b_ih, b_hh = params
    dtype = w_hh.dtype
    x = as_layer_input(x, dtype)
    if use_jit(x, w_ih):
        return _forward_jit(x, w_ih, w_hh, b_ih, b_hh, state0, need_cache)
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    h0, c0 = state0

    # For ids the projection gathers rows of W_ih^T: with W_ih in Fortran order they are
    # contiguous rows, gathered faster than the strided columns of a C-ordered W_ih.
    w_in = np.asfortranarray(w_ih) if is_ids(x) else w_ih
    xw = input_forward(x, w_in, b_ih + b_hh)  # (T, B, 4H): W_ih x_t + b_ih + b_hh
    xw4 = xw.reshape(T, B, 4, H)
    # The gate activations of step t are stored gate-major, (4, B, H), in the memory that held
    # step t's input projection (read just before): contiguous blocks for the gate arithmetic,
    # and no second window-sized array.
    acts = xw.reshape(T, 4, B, H)
    # W_k^T for each gate k, contiguous: the step's product then comes out gate-major too
    w4 = np.ascontiguousarray(w_hh.reshape(4, H, H).transpose(0, 2, 1))

    hbuf = np.empty((T + 1, B, H), dtype=dtype)
    hbuf[0] = h0
    # without a cache, two cell buffers in turn and one tanh(c) scratch are enough
    nc = T + 1 if need_cache else 2
    cbuf = np.empty((nc, B, H), dtype=dtype)
    cbuf[0] = c0
    tanh_c = np.empty((T if need_cache else 1, B, H), dtype=dtype)
    pre = np.empty((4, B, H), dtype=dtype)  # the step's pre-activations
    ig = np.empty((B, H), dtype=dtype)

    for t in range(T):
        np.matmul(hbuf[t], w4, out=pre)  # W_hh h_{t-1}, one (B, H) block per gate
        pre += xw4[t].transpose(1, 0, 2)
        a = acts[t]
        sigmoid(pre[:2], out=a[:2])  # i and f are neighbours: one sigmoid for both
        np.tanh(pre[2], out=a[2])
        sigmoid(pre[3], out=a[3])
        i, f, g, o = a
        c = cbuf[(t + 1) % nc]
        np.multiply(f, cbuf[t % nc], out=c)
        np.multiply(i, g, out=ig)
        c += ig
        tc = tanh_c[t % tanh_c.shape[0]]
        np.tanh(c, out=tc)
        np.multiply(o, tc, out=hbuf[t + 1])

    hs = hbuf[1:]
    # copies: the caller may change its state (a stream reset) without touching hs or the cache
    state_n = (hbuf[T].copy(), cbuf[T % nc].copy())
    cache = _Cache(x, acts, hbuf, cbuf, tanh_c) if need_cache else None
    return hs, state_n, cache


def backward(dhs: np.ndarray, cache: _Cache, params: Params, grads: Params, dstate_n: State | None = None,
             need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """Mirror of `forward`: adds into grads; returns (dx, (dh_0, dc_0))."""
    w_ih, w_hh = params[0], params[1]
    dw_ih, dw_hh, db_ih, db_hh = grads
    dtype = w_hh.dtype
    x, acts, hbuf, cbuf, tanh_c = cache.x, cache.acts, cache.hbuf, cache.cbuf, cache.tanh_c
    T, B, H = tanh_c.shape
    dhs = np.asarray(dhs, dtype=dtype)
    dh_n, dc_n = dstate_n if dstate_n is not None else (None, None)
    if use_jit(x, w_ih):
        return _backward_jit(dhs, cache, w_ih, w_hh, dw_ih, dw_hh, db_ih, db_hh, dh_n, dc_n, need_dx)

    # time-major, as the product with W_hh and linear.input_backward want them; each step's
    # gate blocks are written into its (B, 4, H) view
    dgates = np.empty((T, B, 4 * H), dtype=dtype)
    dgates4 = dgates.reshape(T, B, 4, H)
    dh = np.empty((B, H), dtype=dtype)  # dL/dh_t, all paths
    dc = np.zeros((B, H), dtype=dtype) if dc_n is None else np.array(dc_n, dtype=dtype)
    u = np.empty((B, H), dtype=dtype)
    v = np.empty((B, H), dtype=dtype)

    for t in range(T - 1, -1, -1):
        i, f, g, o = acts[t]
        d = dgates4[t]
        di, df, dg, do = d[:, 0], d[:, 1], d[:, 2], d[:, 3]
        tc = tanh_c[t]

        # dh_t = dhs_t + dgates_{t+1} W_hh  (or + dh_n at the last step)
        if t == T - 1:
            if dh_n is None:
                dh[...] = dhs[t]
            else:
                np.add(dhs[t], dh_n, out=dh)
        else:
            np.matmul(dgates[t + 1], w_hh, out=dh)
            dh += dhs[t]
        # dc_t += dh_t * o * (1 - tanh(c_t)^2)
        np.multiply(tc, tc, out=u)
        np.subtract(1, u, out=u)
        u *= o
        u *= dh
        dc += u
        # do = dh_t * tanh(c_t) * o * (1 - o)
        np.multiply(dh, tc, out=u)
        np.subtract(1, o, out=v)
        v *= o
        np.multiply(u, v, out=do)
        # di = dc_t * g * i * (1 - i)
        np.multiply(dc, g, out=u)
        np.subtract(1, i, out=v)
        v *= i
        np.multiply(u, v, out=di)
        # dg = dc_t * i * (1 - g^2)
        np.multiply(g, g, out=v)
        np.subtract(1, v, out=v)
        v *= i
        np.multiply(v, dc, out=dg)
        # df = dc_t * c_{t-1} * f * (1 - f)
        np.multiply(dc, cbuf[t], out=u)
        np.subtract(1, f, out=v)
        v *= f
        np.multiply(u, v, out=df)
        # dc_{t-1} = dc_t * f
        dc *= f

    dh0 = dgates[0] @ w_hh
    flat = dgates.reshape(T * B, 4 * H)
    # sum_t dgates_t^T h_{t-1}: one product over the window; hbuf[:T] holds h_0 .. h_{T-1}
    dw_hh += flat.T @ hbuf[:T].reshape(T * B, H)
    # both biases get sum_t dgates_t; input_backward computes that sum once, into a zeroed array
    db = np.zeros_like(db_ih)
    dx = input_backward(dgates, x, w_ih, dw_ih, db, need_dx=need_dx)
    db_ih += db
    db_hh += db
    return dx, (dh0, dc)


# --------------------------------------------------------------------------------------------
# the compiled path (numba, lstm_kernels.py): the same computation, each step's elementwise work in one
# call, and for small B * H the whole window in one call

def use_jit(x: np.ndarray, w_ih: np.ndarray) -> bool:
    return _jit.cell_kernels_apply(x, w_ih)


_compiled = None


def _kernels():
    """This cell's compiled kernels (lstm_kernels.py), imported on first use (that imports numba)."""
    global _compiled
    if _compiled is None:
        from . import lstm_kernels

        _compiled = lstm_kernels
    return _compiled


def _forward_jit(x, w_ih, w_hh, b_ih, b_hh, state0, need_cache):
    dtype = w_hh.dtype
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    kernels = _kernels()
    inp, rows, acts = _jit.window_inputs(x, w_ih, b_ih + b_hh, GATES, B, H)
    hbuf = np.empty((T + 1, B, H), dtype=dtype)
    hbuf[0] = state0[0]
    nc = T + 1 if need_cache else 2
    cbuf = np.empty((nc, B, H), dtype=dtype)
    cbuf[0] = state0[1]
    tanh_c = np.empty((T if need_cache else 1, B, H), dtype=dtype)
    if B * H <= tuning.JIT_WINDOW_MAX_WORK:
        w_t = np.ascontiguousarray(w_hh.T)
        kernels.forward_window(inp, rows, w_t, acts, hbuf, cbuf, tanh_c)
    else:
        w4 = np.ascontiguousarray(w_hh.reshape(4, H, H).transpose(0, 2, 1))
        pre = np.empty((4, B, H), dtype=dtype)
        kernel = kernels.forward_step
        for t in range(T):
            np.matmul(hbuf[t], w4, out=pre)
            kernel(t, pre, inp, rows, acts, hbuf, cbuf, tanh_c)
    state_n = (hbuf[T].copy(), cbuf[T % nc].copy())
    cache = _Cache(x, acts, hbuf, cbuf, tanh_c) if need_cache else None
    return hbuf[1:], state_n, cache


def _backward_jit(dhs, cache, w_ih, w_hh, dw_ih, dw_hh, db_ih, db_hh, dh_n, dc_n, need_dx):
    dtype = w_hh.dtype
    x, acts, hbuf, cbuf, tanh_c = cache.x, cache.acts, cache.hbuf, cache.cbuf, cache.tanh_c
    T, B, H = tanh_c.shape
    kernels = _kernels()
    dgates = _jit.scratch.take((T, B, 4 * H), dtype)  # only read here: given back at the end
    # dh: at the last step the gradient arriving at h_T, to which the kernel adds dhs_T
    dh = np.zeros((B, H), dtype=dtype) if dh_n is None else np.array(dh_n, dtype=dtype)
    dc = np.zeros((B, H), dtype=dtype) if dc_n is None else np.array(dc_n, dtype=dtype)
    ids = is_ids(x)
    # for ids the kernels add each step's gate gradients into the rows of dW_ih^T its symbols
    # select (dwt), instead of the product with a one-hot matrix after the loop
    xi = np.ascontiguousarray(x, dtype=np.intp) if ids else np.zeros((1, 1), dtype=np.intp)
    dwt = np.zeros((w_ih.shape[1] if ids else 1, 4 * H), dtype=dtype)
    db = np.zeros(4 * H, dtype=dtype)
    if B * H <= tuning.JIT_WINDOW_MAX_WORK:
        dh0 = np.empty((B, H), dtype=dtype)
        w = np.ascontiguousarray(w_hh)
        kernels.backward_window(dh, dhs, acts, tanh_c, cbuf, dc, dgates, w, xi, dwt, db, ids, dh0)
    else:
        kernel = kernels.backward_step
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                np.matmul(dgates[t + 1], w_hh, out=dh)
            kernel(t, dh, dhs, acts, tanh_c, cbuf, dc, dgates, xi, dwt, db, ids)
        dh0 = dgates[0] @ w_hh
    flat = dgates.reshape(T * B, 4 * H)
    dw_hh += flat.T @ hbuf[:T].reshape(T * B, H)
    db_ih += db
    db_hh += db
    dx = None
    if ids:
        dw_ih += dwt.T
    else:
        dw_ih += flat.T @ x.reshape(T * B, -1)
        dx = (flat @ w_ih).reshape(T, B, -1) if need_dx else None
    _jit.scratch.give(dgates)
    return dx, (dh0, dc)


def step(x: np.ndarray, params: Params, state: State) -> State:
    """One step for generation: x (B,) ids or (B, I) floats, state (h, c) -> (h_new, c_new)."""
    # Column form, (4H, B): the products then use the weights as stored. The row form's
    # h @ w_hh.T multiplies by a transposed view, which OpenBLAS runs much slower for B > 1
    # (BENCHMARKS.md, "The gated cells' layout"); at B=1 both are the same matrix-vector product.
    w_ih, w_hh, b_ih, b_hh = params
    h, c = state
    H = w_hh.shape[1]
    x = as_layer_input(x, w_hh.dtype)
    a = w_hh @ h.T  # (4H, B), fresh
    a += w_ih[:, x] if is_ids(x) else w_ih @ x.T  # a gathered column of W_ih for each id
    a += b_ih[:, None]
    a += b_hh[:, None]
    sigmoid(a[: 2 * H], out=a[: 2 * H])
    np.tanh(a[2 * H : 3 * H], out=a[2 * H : 3 * H])
    sigmoid(a[3 * H :], out=a[3 * H :])
    c_new = a[H : 2 * H] * c.T
    c_new += a[:H] * a[2 * H : 3 * H]
    h_new = np.tanh(c_new)
    h_new *= a[3 * H :]
    return h_new.T, c_new.T  # (B, H) views of the column-form results


def gate_activations(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, 4, H): i, f, g, o after their nonlinearities for N independent steps, written plainly."""
    w_ih, w_hh, b_ih, b_hh = params
    x = as_layer_input(x, w_hh.dtype)
    H = w_hh.shape[1]
    pre = (input_forward(x[None], w_ih, b_ih)[0] + (state[0] @ w_hh.T + b_hh)).reshape(-1, 4, H)
    return np.stack([sigmoid(pre[:, 0]), sigmoid(pre[:, 1]), np.tanh(pre[:, 2]), sigmoid(pre[:, 3])], axis=1)


# --------------------------------------------------------------------------------------------
# the references: PyTorch's equations as written, one per line, fresh arrays, row form


def forward_reference(x: np.ndarray, params: Params, state0: State,
                      need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """`forward` written plainly: the equations at the top of this module, step by step."""
    w_ih, w_hh, b_ih, b_hh = params
    x = as_layer_input(x, w_hh.dtype)
    H = w_hh.shape[1]
    h = np.asarray(state0[0], dtype=w_hh.dtype)
    c = np.asarray(state0[1], dtype=w_hh.dtype)
    xw = input_forward(x, w_ih, b_ih)  # W_ih x_t + b_ih for every step, (T, B, 4H)
    hs = []
    steps = []
    for t in range(x.shape[0]):
        gates = xw[t] + h @ w_hh.T + b_hh
        i = sigmoid(gates[:, 0 * H : 1 * H])
        f = sigmoid(gates[:, 1 * H : 2 * H])
        g = np.tanh(gates[:, 2 * H : 3 * H])
        o = sigmoid(gates[:, 3 * H : 4 * H])
        c_prev, h_prev = c, h
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        hs.append(h)
        steps.append((h_prev, c_prev, i, f, g, o, c))
    cache = (x, steps) if need_cache else None
    return np.stack(hs), (h, c), cache


def backward_reference(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
                       need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """`backward` written plainly: backpropagation through time of `forward_reference`."""
    w_ih, w_hh = params[0], params[1]
    dw_ih, dw_hh, db_ih, db_hh = grads
    x, steps = cache
    dhs = np.asarray(dhs, dtype=w_hh.dtype)
    T, B, H = dhs.shape
    dh_next = np.zeros((B, H), dtype=w_hh.dtype)
    dc_next = np.zeros((B, H), dtype=w_hh.dtype)
    if dstate_n is not None:
        dh_next = dh_next if dstate_n[0] is None else np.asarray(dstate_n[0], dtype=w_hh.dtype)
        dc_next = dc_next if dstate_n[1] is None else np.asarray(dstate_n[1], dtype=w_hh.dtype)
    dxw = np.zeros((T, B, 4 * H), dtype=w_hh.dtype)
    for t in range(T - 1, -1, -1):
        h_prev, c_prev, i, f, g, o, c = steps[t]
        dh = dhs[t] + dh_next
        dc = dc_next + dh * o * (1 - np.tanh(c) ** 2)
        do = dh * np.tanh(c) * o * (1 - o)
        di = dc * g * i * (1 - i)
        dg = dc * i * (1 - g**2)
        df = dc * c_prev * f * (1 - f)
        dgates = np.concatenate([di, df, dg, do], axis=1)
        dw_hh += dgates.T @ h_prev
        db_hh += dgates.sum(axis=0)
        dxw[t] = dgates
        dh_next = dgates @ w_hh
        dc_next = dc * f
    dx = input_backward_reference(dxw, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh_next, dc_next)
