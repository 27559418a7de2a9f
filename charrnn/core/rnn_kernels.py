"""The tanh cell's compiled loops (numba), beside its NumPy code in rnn.py.

With one stream (B=1, the seed's setting, and generation) every step of the recurrence is a
matrix-vector product of a few microseconds, and driving it from Python costs more than the
arithmetic: three NumPy calls per step, a microsecond or two each. `forward_loop` and
`bptt_loop` run a whole window's sequential loop in one call. They compute exactly what the
NumPy loops of rnn.py compute (tests/core/test_tuned_vs_reference.py holds them to it) and run
only below tuning.RNN_JIT_MAX_WORK, where they were measured to win; for larger B * H the BLAS
products of the NumPy loops are faster. The cell's whole training step for one stream, optimizer
included, is rnn_fused.py.

Imported by rnn.py only once a window is to run compiled (this imports numba).
"""

from __future__ import annotations

import numpy as np

from . import _jit

_jit.build()
# the loops use NumPy's tanh (the C library's), as they always have: their results are the NumPy
# loops' to the last bit, and at B * H <= 256 the scalar calls cost little
jit = _jit.numba.njit(cache=True, nogil=True)


@jit
def forward_loop(X, wcat_t):
    """h_t = tanh(wcat_t^T X[t]) into X[t+1, :H], as rnn.rnn_forward computes it.

    X: (T+1, K, B).  wcat_t: (K, H), [W U b] transposed. The product is accumulated one row
    of wcat_t at a time, so the inner loop runs over contiguous memory (and is vectorised:
    the accumulator is local, so the compiler knows nothing else writes to it), and input
    rows that are zero, all but one of a one-hot column, are skipped.
    """
    T1, K, B = X.shape
    H = wcat_t.shape[1]
    acc = np.empty(H, dtype=X.dtype)
    for t in range(T1 - 1):
        for b in range(B):
            acc[:] = 0
            for k in range(K):
                xk = X[t, k, b]
                if xk != 0:
                    row = wcat_t[k]
                    for i in range(H):
                        acc[i] += row[i] * xk
            for i in range(H):
                X[t + 1, i, b] = np.tanh(acc[i])

@jit
def bptt_loop(da, hs, weight_hh):
    """The sequential part of rnn.rnn_backward, in place on da: (H, T, B) feature-major.

    da_t = (dhs_t + W^T da_{t+1}) * (1 - h_t^2), going backwards; hs: (H, T, B) states.
    W^T v is accumulated as sum_j v_j W[j, :], contiguous rows again.
    """
    H, T, B = da.shape
    acc = np.empty(H, dtype=da.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if t < T - 1:
                acc[:] = 0
                for j in range(H):
                    v = da[j, t + 1, b]
                    row = weight_hh[j]
                    for i in range(H):
                        acc[i] += row[i] * v
                for i in range(H):
                    da[i, t, b] += acc[i]
            for i in range(H):
                h = hs[i, t, b]
                da[i, t, b] *= 1 - h * h
