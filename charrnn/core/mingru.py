"""The minGRU cell (Feng et al., "Were RNNs All We Needed?", 2024), in the paper's plain form,
over one window:

    z_t  = sigmoid(W_z x_t + b_z)                 update gate
    h~_t = W_h x_t + b_h                          candidate, linear
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

Neither z_t nor h~_t reads h_{t-1}: the layer is an element-wise first-order linear filter of
its input's projection, h_t = a_t * h_{t-1} + b_t with a_t = 1 - z_t (the learned, input-dependent
decay that `decay` reports) and b_t = z_t * h~_t. The window's one product W x_t + b runs over
all T * B rows at once; only the element-wise scan (core/scan.py) is sequential.

Names, in PyTorch's style: weight_ih = weight_ih_l{k} (2H, I), bias_ih = bias_ih_l{k} (2H,), the
rows [0:H] for z and [H:2H] for h~ (the gate block called "n", as the GRU's candidate). There is
no recurrent weight and one bias. The state is (h,).

Backward, with g_t the whole gradient reaching h_t (scan.py):

    dh~_t = g_t * z_t
    dz_t  = g_t * (h~_t - h_{t-1}),   its pre-activation's: dz_t * z_t * (1 - z_t)
    carried to step t-1: g_t * (1 - z_t)

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
NAME = "mingru"
GATES = 2
GATE_NAMES = ("z", "n")  # n: the candidate h~
SIGMOID_GATES = ("z",)
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
TORCH_MODULE = "charrnn.torch_backend.scan:MinGRU"
TORCH_OPTIONS: dict = {}
KERAS = None
ONNX = None  # no standard ONNX operator computes it: ONNX export refuses it by name
KERNELS = False
FUSED_STEP = False


def train_flops(input_size: int, hidden_size: int) -> float:
    return input_layer_train_flops(GATES, input_size, hidden_size)


def _gates(xw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, h~) from the projection W x + b (..., 2H): z a fresh array, h~ a view of xw."""
    H = xw.shape[-1] // 2
    return sigmoid(xw[..., :H]), xw[..., H:]


def forward(x: np.ndarray, params: Params, state0: State, need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """One window, as the contract in `charrnn.core` says: (hs, (h_T,), cache)."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    T = x.shape[0]
    xw = input_forward(x, w_ih, b_ih)  # (T, B, 2H), every row at once
    z, n = _gates(xw)
    a = 1 - z  # the decay
    b = z * n
    hbuf = scan_forward(a, b, state0[0])  # h_0 .. h_T
    cache = (x, z, n, hbuf) if need_cache else None
    return hbuf[1:], (hbuf[T].copy(),), cache


def backward(dhs: np.ndarray, cache: tuple, params: Params, grads: Params, dstate_n: State | None = None,
             need_dx: bool = True) -> tuple[np.ndarray | None, State]:
    """Mirror of `forward`: adds into grads; returns (dx, (dh_0,))."""
    w_ih = params[0]
    dw_ih, db_ih = grads
    x, z, n, hbuf = cache
    T, B, H = z.shape
    g = np.array(dhs, dtype=w_ih.dtype)  # a copy: becomes the whole gradient at each h_t
    a = 1 - z
    dh0 = scan_backward(g, a, None if dstate_n is None else dstate_n[0])
    dpre = np.empty((T, B, 2 * H), dtype=w_ih.dtype)
    np.multiply(g, z, out=dpre[..., H:])  # dh~
    dz = dpre[..., :H]
    np.subtract(n, hbuf[:T], out=dz)
    dz *= g
    dz *= z
    dz *= a  # through the sigmoid: z (1 - z)
    dx = input_backward(dpre, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh0,)


def step(x: np.ndarray, params: Params, state: State) -> State:
    """One step for generation: x (B,) ids or (B, I) floats, state (h,) -> (h_new,)."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    xw = (w_ih.T[x] if is_ids(x) else x @ w_ih.T) + b_ih  # (B, 2H)
    z, n = _gates(xw)
    return ((1 - z) * state[0] + z * n,)


def gate_activations(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, 2, H): z and h~ for N independent steps (neither reads the state)."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    z, n = _gates(input_forward(x[None], w_ih, b_ih)[0])
    return np.stack([z, n], axis=1)


def decay(x: np.ndarray, params: Params, state: State) -> np.ndarray:
    """(N, H): a_t = 1 - z_t, the factor h_{t-1} is multiplied by, for N independent steps."""
    return 1 - gate_activations(x, params, state)[:, 0]


# --------------------------------------------------------------------------------------------
# the references: the equations as written, one per line, fresh arrays


def forward_reference(x: np.ndarray, params: Params, state0: State,
                      need_cache: bool = True) -> tuple[np.ndarray, State, tuple | None]:
    """`forward` written plainly: the equations at the top of this module, step by step."""
    w_ih, b_ih = params
    x = as_layer_input(x, w_ih.dtype)
    H = w_ih.shape[0] // 2
    h = np.asarray(state0[0], dtype=w_ih.dtype)
    hs, steps = [], []
    for t in range(x.shape[0]):
        xt = w_ih.T[x[t]] if is_ids(x) else x[t] @ w_ih.T
        z = sigmoid(xt[:, :H] + b_ih[:H])
        h_cand = xt[:, H:] + b_ih[H:]
        h_prev = h
        h = (1 - z) * h_prev + z * h_cand
        hs.append(h)
        steps.append((h_prev, z, h_cand))
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
    dxw = np.zeros((T, B, 2 * H), dtype=w_ih.dtype)
    for t in range(T - 1, -1, -1):
        h_prev, z, h_cand = steps[t]
        dh = dhs[t] + dh_next
        dh_cand = dh * z
        dz = dh * (h_cand - h_prev)
        dxw[t] = np.concatenate([dz * z * (1 - z), dh_cand], axis=1)
        dh_next = dh * (1 - z)
    dx = input_backward_reference(dxw, x, w_ih, dw_ih, db_ih, need_dx=need_dx)
    return dx, (dh_next,)
