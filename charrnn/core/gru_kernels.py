"""The GRU's compiled kernels (numba), beside its NumPy code in gru.py.

As lstm_kernels.py for the LSTM: one call for each step's elementwise work after its BLAS product
(`forward_step`, `backward_step`), the biases' and (for ids) dW_ih's sums taken as the backward
goes, and whole windows in one call for small B * H (`*_window`). The operations and their order
are those of the NumPy code in gru.py; tests/core/test_kernels.py holds every path to the
references.

Imported by gru.py only once a window is to run compiled (this imports numba).
"""

from __future__ import annotations

import numpy as np

from . import _jit

_jit.build()
# the primitives the kernels call, module globals (see _jit: numba's disk cache)
from ._jit import matvec_t, scalar_tanh  # noqa: E402


# Shared arguments, as in lstm_kernels.py: inp (R, 3H) and rows (T, B), the input projection
# W_ih x + b_ih + [b_hr, b_hz, 0] of stream b at step t is inp[rows[t, b]]; acts (T, 3, B, H) =
# r, z, n; hbuf (T+1, B, H); hn (T or 1, B, H) = W_hn h_{t-1} + b_hn: gru.py's cache.


@_jit.kernel
def forward_step(t, pre, inp, rows, b_hn, acts, hbuf, hn):
    """Step t after its product: pre (3, B, H) holds W_hh h_{t-1}, one block per gate.

    First, for every stream, hn = pre[2] + b_hn, r's and z's projections added to pre[0:2], and
    the candidate's moved into pre[2]: all read before acts[t], which for dense input is the
    memory of step t's projection (see gru.forward), is written."""
    _, B, H = pre.shape
    q = hn[t % hn.shape[0]]
    for b in range(B):
        r = rows[t, b]
        for j in range(H):
            q[b, j] = pre[2, b, j] + b_hn[j]
        for j in range(H):
            pre[0, b, j] += inp[r, j]
        for j in range(H):
            pre[1, b, j] += inp[r, H + j]
        for j in range(H):
            pre[2, b, j] = inp[r, 2 * H + j]
    N = B * H
    one = pre.dtype.type(1)
    half = pre.dtype.type(0.5)
    p = pre.reshape(3, N)
    a = acts[t].reshape(3, N)
    qn = q.reshape(N)
    h_prev = hbuf[t].reshape(N)
    h = hbuf[t + 1].reshape(N)
    for n in range(N):
        a[0, n] = half * (one + scalar_tanh(p[0, n] * half))
    for n in range(N):
        a[1, n] = half * (one + scalar_tanh(p[1, n] * half))
    # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    for n in range(N):
        a[2, n] = scalar_tanh(a[0, n] * qn[n] + p[2, n])
    # h = (1 - z) * n + z * h_prev, written n + z * (h_prev - n)
    for n in range(N):
        h[n] = (h_prev[n] - a[2, n]) * a[1, n] + a[2, n]

@_jit.kernel
def forward_window(inp, rows, b_hn, w_t, acts, hbuf, hn):
    """Every step of the window, the products included; w_t (H, 3H) = W_hh^T, contiguous."""
    T, _, B, H = acts.shape
    pre = np.empty((3, B, H), dtype=acts.dtype)
    acc = np.empty(3 * H, dtype=acts.dtype)
    for t in range(T):
        for b in range(B):
            matvec_t(pre, b, hbuf, t, b, w_t, acc)
        forward_step(t, pre, inp, rows, b_hn, acts, hbuf, hn)

# Backward. drec (T, B, 3H): [dr, dz, r dn], the hidden side's gradients; dn_out (T or 1,
# B, H): dn; db_rec (3H,) += sum of drec; db_in (3H,) += sum of [dr, dz, dn], and for ids
# dwt (V, 3H) row x[t, b] += [dr, dz, dn] of stream b at step t.

@_jit.kernel
def backward_step(t, dh, mm, dhs, acts, hbuf, hn, drec, dn_out, x, dwt, db_in, db_rec, use_ids):
    """Step t: dh (B, H) is the carried dL/dh_{t+1} (at the last step the gradient arriving at
    h_T, or zeros); it becomes dh_t = dh_{t+1} z_{t+1} + dhs_t + mm with mm (B, H) =
    drec_{t+1} W_hh (unused at the last step)."""
    T = acts.shape[0]
    B, H = dh.shape
    one = dh.dtype.type(1)
    th, td = t % hn.shape[0], t % dn_out.shape[0]
    for b in range(B):
        if t < T - 1:
            for j in range(H):
                dh[b, j] = (dh[b, j] * acts[t + 1, 1, b, j] + dhs[t, b, j]) + mm[b, j]
        else:
            for j in range(H):
                dh[b, j] += dhs[t, b, j]
        # dz = dh * (h_{t-1} - n) * z * (1 - z)
        for j in range(H):
            z = acts[t, 1, b, j]
            drec[t, b, H + j] = ((hbuf[t, b, j] - acts[t, 2, b, j]) * dh[b, j]) * ((one - z) * z)
        # dn = dh * (1 - z) * (1 - n^2)
        for j in range(H):
            n = acts[t, 2, b, j]
            dn_out[td, b, j] = ((one - n * n) * (one - acts[t, 1, b, j])) * dh[b, j]
        # dr = dn * hn * r * (1 - r)
        for j in range(H):
            r = acts[t, 0, b, j]
            drec[t, b, j] = (dn_out[td, b, j] * hn[th, b, j]) * ((one - r) * r)
        # the recurrent part of n entered as r * hn
        for j in range(H):
            drec[t, b, 2 * H + j] = dn_out[td, b, j] * acts[t, 0, b, j]
        for m in range(3 * H):
            db_rec[m] += drec[t, b, m]
        for m in range(2 * H):
            db_in[m] += drec[t, b, m]
        for j in range(H):
            db_in[2 * H + j] += dn_out[td, b, j]
        if use_ids:
            r = x[t, b]
            for m in range(2 * H):
                dwt[r, m] += drec[t, b, m]
            for j in range(H):
                dwt[r, 2 * H + j] += dn_out[td, b, j]

@_jit.kernel
def backward_window(dh, dhs, acts, hbuf, hn, drec, dn_out, w, x, dwt, db_in, db_rec, use_ids, dh0):
    """Every step backwards, the products with w (3H, H) = W_hh included; dh0 (B, H)
    receives dL/dh_0 = drec_0 W_hh + dh_0 z_0."""
    T, _, B, H = acts.shape
    mm = np.empty((B, H), dtype=dh.dtype)
    mm3 = mm.reshape(1, B, H)
    acc = np.empty(H, dtype=dh.dtype)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            for b in range(B):
                matvec_t(mm3, b, drec, t + 1, b, w, acc)
        backward_step(t, dh, mm, dhs, acts, hbuf, hn, drec, dn_out, x, dwt, db_in, db_rec, use_ids)
    dh03 = dh0.reshape(1, B, H)
    for b in range(B):
        matvec_t(dh03, b, drec, 0, b, w, acc)
        for j in range(H):
            dh0[b, j] += dh[b, j] * acts[0, 1, b, j]
