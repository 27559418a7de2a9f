"""The LSTM's compiled kernels (numba), beside its NumPy code in lstm.py.

Between two steps' matrix products the NumPy code makes about 12 (forward) and 25 (backward)
elementwise passes over (B, H) blocks. `forward_step` and `backward_step` do all of one step's
elementwise work in one call, each block brought from memory once; the backward one also adds the
step's gate gradients into the bias gradient and, for one-hot input, into the rows of dW_ih^T
that the step's symbols select (a scatter-add that NumPy does slowly, and that here replaces a
product with the one-hot matrix). The per-step product stays a NumPy (BLAS) call. The `*_window`
kernels run a whole window, recurrent products included (as loops of fused multiply-adds, as
BLAS computes them), for small B * H (tuning.JIT_WINDOW_MAX_WORK), where Python's per-call cost
would dominate. The operations and their order are those of the NumPy code in lstm.py; x * 0.5
then 0.5 * (1 + tanh) is `linear.sigmoid`. tests/core/test_kernels.py holds every path to the
references.

Imported by lstm.py only once a window is to run compiled (this imports numba).
"""

from __future__ import annotations

import numpy as np

from . import _jit

_jit.build()
# the primitives the kernels call, module globals (see _jit: numba's disk cache)
from ._jit import matvec_t, scalar_tanh  # noqa: E402


# Shared arguments: inp (R, 4H) and rows (T, B): the input projection of stream b at step t
# (W_ih x + b_ih + b_hh) is inp[rows[t, b]]: for ids a table of W_ih^T + b (rows = the ids),
# for dense input the projected window (rows = t * B + b). acts (T, 4, B, H), hbuf (T+1, B, H),
# cbuf (T+1 or 2, B, H), tanh_c (T or 1, B, H): lstm.py's cache (steps taken modulo the first
# size when there is no cache).


@_jit.kernel
def forward_step(t, pre, inp, rows, acts, hbuf, cbuf, tanh_c):
    """Step t after its product: pre (4, B, H) holds W_hh h_{t-1}, one block per gate.

    The projection is added to all of pre before any activation is written: for dense input
    acts[t] is the memory of step t's projection (see lstm.forward)."""
    _, B, H = pre.shape
    for b in range(B):
        r = rows[t, b]
        for k in range(4):
            for j in range(H):
                pre[k, b, j] += inp[r, k * H + j]
    # the gate blocks are contiguous (B, H): one loop over all B * H numbers each
    N = B * H
    one = pre.dtype.type(1)
    half = pre.dtype.type(0.5)
    p = pre.reshape(4, N)
    a = acts[t].reshape(4, N)
    c_prev = cbuf[t % cbuf.shape[0]].reshape(N)
    c = cbuf[(t + 1) % cbuf.shape[0]].reshape(N)
    tc = tanh_c[t % tanh_c.shape[0]].reshape(N)
    h = hbuf[t + 1].reshape(N)
    for n in range(N):
        a[0, n] = half * (one + scalar_tanh(p[0, n] * half))
    for n in range(N):
        a[1, n] = half * (one + scalar_tanh(p[1, n] * half))
    for n in range(N):
        a[2, n] = scalar_tanh(p[2, n])
    for n in range(N):
        a[3, n] = half * (one + scalar_tanh(p[3, n] * half))
    for n in range(N):
        c[n] = a[1, n] * c_prev[n] + a[0, n] * a[2, n]
    for n in range(N):
        tc[n] = scalar_tanh(c[n])
    for n in range(N):
        h[n] = a[3, n] * tc[n]

@_jit.kernel
def forward_window(inp, rows, w_t, acts, hbuf, cbuf, tanh_c):
    """Every step of the window, the products included; w_t (H, 4H) = W_hh^T, contiguous."""
    T, _, B, H = acts.shape
    pre = np.empty((4, B, H), dtype=acts.dtype)
    acc = np.empty(4 * H, dtype=acts.dtype)
    for t in range(T):
        for b in range(B):
            matvec_t(pre, b, hbuf, t, b, w_t, acc)  # W_hh h_{t-1}
        forward_step(t, pre, inp, rows, acts, hbuf, cbuf, tanh_c)

# Backward. dgates (T, B, 4H): the gate gradients, row form; db (4H,) += their sum; for ids
# (use_ids) dwt (V, 4H) row x[t, b] += the gradients of stream b at step t, so dW_ih = dwt^T.

@_jit.kernel
def backward_step(t, dh, dhs, acts, tanh_c, cbuf, dc, dgates, x, dwt, db, use_ids):
    """Step t: dh (B, H) holds dgates_{t+1} W_hh (at the last step the gradient arriving at
    h_T, or zeros) and receives dhs_t; dc (B, H) is the carry, updated."""
    B, H = dh.shape
    one = dh.dtype.type(1)
    for b in range(B):
        for j in range(H):
            dh[b, j] += dhs[t, b, j]
        # dc_t += dh_t * o * (1 - tanh(c_t)^2)
        for j in range(H):
            tc = tanh_c[t, b, j]
            dc[b, j] += ((one - tc * tc) * acts[t, 3, b, j]) * dh[b, j]
        # do = dh_t * tanh(c_t) * o * (1 - o)
        for j in range(H):
            o = acts[t, 3, b, j]
            dgates[t, b, 3 * H + j] = (dh[b, j] * tanh_c[t, b, j]) * ((one - o) * o)
        # di = dc_t * g * i * (1 - i)
        for j in range(H):
            i = acts[t, 0, b, j]
            dgates[t, b, j] = (dc[b, j] * acts[t, 2, b, j]) * ((one - i) * i)
        # dg = dc_t * i * (1 - g^2)
        for j in range(H):
            g = acts[t, 2, b, j]
            dgates[t, b, 2 * H + j] = ((one - g * g) * acts[t, 0, b, j]) * dc[b, j]
        # df = dc_t * c_{t-1} * f * (1 - f)
        for j in range(H):
            f = acts[t, 1, b, j]
            dgates[t, b, H + j] = (dc[b, j] * cbuf[t, b, j]) * ((one - f) * f)
        # dc_{t-1} = dc_t * f
        for j in range(H):
            dc[b, j] *= acts[t, 1, b, j]
        for m in range(4 * H):
            db[m] += dgates[t, b, m]
        if use_ids:
            r = x[t, b]
            for m in range(4 * H):
                dwt[r, m] += dgates[t, b, m]

@_jit.kernel
def backward_window(dh, dhs, acts, tanh_c, cbuf, dc, dgates, w, x, dwt, db, use_ids, dh0):
    """Every step backwards, the products with w (4H, H) = W_hh included; dh enters as in
    backward_step at the last step; dh0 (B, H) receives dgates_0 W_hh."""
    T, _, B, H = acts.shape
    acc = np.empty(H, dtype=dh.dtype)
    dh3 = dh.reshape(1, B, H)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            for b in range(B):
                matvec_t(dh3, b, dgates, t + 1, b, w, acc)
        backward_step(t, dh, dhs, acts, tanh_c, cbuf, dc, dgates, x, dwt, db, use_ids)
    dh03 = dh0.reshape(1, B, H)
    for b in range(B):
        matvec_t(dh03, b, dgates, 0, b, w, acc)
