"""Optional compiled loops (numba) for the recurrence when there are few streams.

With one stream (B=1, the seed's setting, and generation) every step of the recurrence is a
matrix-vector product of a few microseconds, and driving it from Python costs more than the
arithmetic: three NumPy calls per step, a microsecond or two each. These kernels run a whole
window's sequential loop in one call. They compute exactly what the NumPy loops in core/rnn.py compute
(tests/test_fast.py holds them to it), and are used only where they were measured to win
(`rnn.JIT_MAX_WORK`); for larger B * H the BLAS products of the NumPy loops are faster.

numba is optional (`pip install 'charrnn[fast]'`). Without it, or with CHARRNN_JIT=0 in the
environment, `available()` is False and core/rnn.py uses its NumPy loops.
"""

from __future__ import annotations

import os

import numpy as np

numba = None  # the module, once `available()` has imported it
_kernels = None
_looked = False


def available() -> bool:
    """True when numba is importable and not switched off with CHARRNN_JIT=0.

    numba is imported here, on the first small-batch product, not when charrnn is imported:
    it takes a third of a second, which every command would otherwise pay at start-up."""
    global numba, _looked
    if os.environ.get("CHARRNN_JIT", "1").strip() == "0":
        return False
    if not _looked:
        _looked = True
        try:  # pragma: no cover - which branch runs depends on the environment
            import numba as _numba

            numba = _numba
        except ImportError:  # pragma: no cover
            numba = None
    return numba is not None


def kernels():
    """The compiled functions, built on first use (numba compiles each dtype on its first call)."""
    global _kernels
    if _kernels is None:
        _kernels = _build()
    return _kernels


def _build():
    # cache=True keeps the machine code in __pycache__, so only the first run pays the compile
    jit = numba.njit(cache=True, nogil=True)

    @jit
    def rnn_forward_loop(X, wcat_t):
        """h_t = tanh(wcat_t^T X[t]) into X[t+1, :H], as rnn.rnn_forward.

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

    return {"rnn_forward_loop": rnn_forward_loop, "bptt_loop": bptt_loop}
