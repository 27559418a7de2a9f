"""The element-wise first-order linear recurrence of the parallel-in-time cells (mingru.py,
minlstm.py), forward and backward, over one window:

    h_t = a_t * h_{t-1} + b_t          a_t, b_t, h_t: (B, H); t = 1..T

a_t and b_t depend on the input alone, so everything else of such a cell is computed for all
T * B rows at once and only this scan is sequential: two element-wise operations per step.
Backward, with dhs_t the gradient arriving at h_t from above:

    g_t = dhs_t + a_{t+1} * g_{t+1}    (g_T = dhs_T + the gradient at the final state)
    dL/da_t = g_t * h_{t-1}            dL/db_t = g_t        dL/dh_0 = a_1 * g_1
"""

from __future__ import annotations

import numpy as np


def scan_forward(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """hbuf (T+1, B, H): h_0 (B, H), then h_t = a_t * h_{t-1} + b_t for a, b (T, B, H)."""
    hbuf = np.empty((a.shape[0] + 1, *a.shape[1:]), dtype=a.dtype)
    hbuf[0] = h0
    for t in range(a.shape[0]):
        h = hbuf[t + 1]
        np.multiply(a[t], hbuf[t], out=h)
        h += b[t]
    return hbuf


def scan_backward(g: np.ndarray, a: np.ndarray, dh_n: np.ndarray | None) -> np.ndarray:
    """Mirror of `scan_forward`: turns g (T, B, H), holding dhs on entry, into the whole
    gradient reaching each h_t, in place, adding dh_n (the final state's gradient, or None) at
    the last step. Returns dL/dh_0 (B, H)."""
    T = g.shape[0]
    if dh_n is not None:
        g[T - 1] += dh_n
    carried = np.empty(g.shape[1:], dtype=g.dtype)
    for t in range(T - 2, -1, -1):
        np.multiply(a[t + 1], g[t + 1], out=carried)
        g[t] += carried
    return a[0] * g[0]
