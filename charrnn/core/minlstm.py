"""The minLSTM cell (Feng et al., "Were RNNs All We Needed?", 2024), in the paper's plain form,
over one window:

    f_t  = sigmoid(W_f x_t + b_f)                 forget gate
    i_t  = sigmoid(W_i x_t + b_i)                 input gate
    h~_t = W_h x_t + b_h                          candidate, linear
    f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t

No gate reads h_{t-1}: the layer is an element-wise first-order linear filter of its input's
projection, h_t = a_t * h_{t-1} + b_t with a_t = f'_t (the learned, input-dependent decay that
`decay` reports) and b_t = i'_t * h~_t. The window's one product W x_t + b runs over all T * B rows
at once; only the element-wise scan (core/scan.py) is sequential.

Names, in PyTorch's style: weight_ih = weight_ih_l{k} (3H, I), bias_ih = bias_ih_l{k} (3H,), the
rows [0:H] for f, [H:2H] for i and [2H:3H] for h~ (the gate block called "g", as the LSTM's
candidate). There is no recurrent weight and one bias. The state is (h,).

Backward, with g_t the whole gradient reaching h_t (scan.py) and s_t = f_t + i_t:

    dh~_t = g_t * i'_t
    q_t   = g_t * (h_{t-1} - h~_t) * f'_t * i'_t
    the pre-activations' gradients: f: q_t * (1 - f_t),  i: -q_t * (1 - i_t)
    carried to step t-1: g_t * f'_t

(from df' = g h_{t-1}, di' = g h~ and the quotient's derivatives: df = (df' - di') i / s^2,
di = (di' - df') f / s^2, then through the sigmoids).

`hs` is a view of the state buffer the cache keeps: do not write into it before backward.
`backward` modifies neither the cache nor `dhs`.
"""

from __future__ import annotations

import numpy as np

from .contract import Param, Params, State
from .linear import (as_layer_input, input_backward, input_backward_reference, input_forward, input_layer_train_flops,
                     is_ids, sigmoid)
from .scan import scan_backward, scan_forward

# ---- the cell's declarations (the contract in core/__init__)
NAME = "minlstm"
GATES = 3
GATE_NAMES = ("f", "i", "g")  # g: the candidate h~
SIGMOID_GATES = ("f", "i")
STATE = ("h",)
HEATMAP_STATE = "h"
PARAMS = (
    Param("weight_ih", ("G*H", "I"), "input"),
    Param("bias_ih", ("G*H",), "bias"),
)
DEFAULT_INIT = "pytorch"
DEFAULT_LR = 3e-3
INIT_BIASES: dict[str, tuple] = {}
# no torch.nn class computes it: a module of the torch backend, a parallel scan in PyTorch
TORCH_MODULE = "charrnn.torch_backend.scan:MinLSTM"
TORCH_OPTIONS: dict = {}
KERAS = None
ONNX = None  # no standard ONNX operator computes it: ONNX export refuses it by name
KERNELS = False
FUSED_STEP = False


def train_flops(input_size: int, hidden_size: int) -> float:
    return input_layer_train_flops(GATES, input_size, hidden_size)


def _gates(xw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(f, i, f', i', h~) from the projection W x + b (..., 3H): fresh arrays but h~, a view of xw."""
    H = xw.shape[-1] // 3
    f = sigmoid(xw[..., :H])
    i = sigmoid(xw[..., H : 2 * H])
    s = f + i
    return f, i, f / s, i / s, xw[..., 2 * H :]


def forward(x: np.ndarray, params: Params, state0: State, need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """One window, as the contract in `charrnn.core` says: (hs, (h_T,), cache)."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    T = x.shape[0]
    xw = input_forward(x, w_ih, b_ih)  # (T, B, 3H), every row at once
    f, i, fn, i_n, h_cand = _gates(xw)  # fn = f', the decay; i_n = i'
    b = i_n * h_cand
    hbuf = scan_forward(fn, b, state0[0])  # h_0 .. h_T
    cache = (x, f, i, fn, i_n, h_cand, hbuf) if need_cache else None
    return hbuf[1:], (hbuf[T].copy(),), cache


def backward(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
             need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """Mirror of `forward`: adds into grads; returns (dx, (dh_0,))."""
    w_ih = params[0]
    dw_ih, db_ih = grads
    x, f, i, fn, i_n, h_cand, hbuf = cache
    T, B, H = fn.shape
    g = np.array(dhs, dtype=w_ih.dtype)  # a copy: becomes the whole gradient at each h_t
    dh0 = scan_backward(g, fn, None if dstate_n is None else dstate_n[0])
    dpre = np.empty((T, B, 3 * H), dtype=w_ih.dtype)
    np.multiply(g, i_n, out=dpre[..., 2 * H :])  # dh~
    q = np.subtract(hbuf[:T], h_cand)
    q *= g
    q *= fn
    q *= i_n
    np.subtract(1, f, out=dpre[..., :H])
    dpre[..., :H] *= q
    np.subtract(i, 1, out=dpre[..., H : 2 * H])  # -(1 - i)
    dpre[..., H : 2 * H] *= q
    dx = input_backward(dpre, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh0,)


def step(x: np.ndarray, params: Params, state: State) -> State:
    """One step for generation: x (B,) ids or (B, I) floats, state (h,) -> (h_new,)."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    xw = (w_ih.T[x] if is_ids(x) else x @ w_ih.T) + b_ih  # (B, 3H)
    _, _, fn, i_n, h_cand = _gates(xw)
    return (fn * state[0] + i_n * h_cand,)


def gate_activations(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, 3, H): f, i and h~ for N independent steps (none reads the state)."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    f, i, _, _, h_cand = _gates(input_forward(x[None], w_ih, b_ih)[0])
    return np.stack([f, i, h_cand], axis=1)


def decay(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, H): a_t = f'_t = f_t / (f_t + i_t), the factor h_{t-1} is multiplied by, for N
    independent steps."""
    acts = gate_activations(x, params, state)
    return acts[:, 0] / (acts[:, 0] + acts[:, 1])


# --------------------------------------------------------------------------------------------
# the references: the equations as written, one per line, fresh arrays


def forward_reference(x: np.ndarray, params: Params, state0: State,
                      need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """`forward` written plainly: the equations at the top of this module, step by step."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    H = w_ih.shape[0] // 3
    h = np.asarray(state0[0], dtype=w_ih.dtype)
    hs, steps = [], []
    for t in range(x.shape[0]):
        xt = w_ih.T[x[t]] if is_ids(x) else x[t] @ w_ih.T
        f = sigmoid(xt[:, :H] + b_ih[:H])
        i = sigmoid(xt[:, H : 2 * H] + b_ih[H : 2 * H])
        h_cand = xt[:, 2 * H :] + b_ih[2 * H :]
        f_n = f / (f + i)
        i_n = i / (f + i)
        h_prev = h
        h = f_n * h_prev + i_n * h_cand
        hs.append(h)
        steps.append((h_prev, f, i, h_cand))
    cache = (x, steps) if need_cache else None
    return np.stack(hs), (h,), cache


def backward_reference(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
                       need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """`backward` written plainly: backpropagation through time of `forward_reference`."""
    w_ih = params[0]
    dw_ih, db_ih = grads
    x, steps = cache
    dhs = np.asarray(dhs, dtype=w_ih.dtype)
    T, B, H = dhs.shape
    dh_next = np.zeros((B, H), dtype=w_ih.dtype)
    if dstate_n is not None and dstate_n[0] is not None:
        dh_next = np.asarray(dstate_n[0], dtype=w_ih.dtype)
    dxw = np.zeros((T, B, 3 * H), dtype=w_ih.dtype)
    for t in range(T - 1, -1, -1):
        h_prev, f, i, h_cand = steps[t]
        s = f + i
        dh = dhs[t] + dh_next
        df_n = dh * h_prev  # dL/df'
        di_n = dh * h_cand  # dL/di'
        dh_cand = dh * i / s
        df = (df_n - di_n) * i / s**2
        di = (di_n - df_n) * f / s**2
        dxw[t] = np.concatenate([df * f * (1 - f), di * i * (1 - i), dh_cand], axis=1)
        dh_next = dh * f / s
    dx = input_backward_reference(dxw, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh_next,)
