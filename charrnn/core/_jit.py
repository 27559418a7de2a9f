"""Optional compiled kernels (numba) for the recurrences.

The tanh cell (core/rnn.py). With one stream (B=1, the seed's setting, and generation) every step
of the recurrence is a matrix-vector product of a few microseconds, and driving it from Python
costs more than the arithmetic: three NumPy calls per step, a microsecond or two each.
`rnn_forward_loop` and `bptt_loop` run a whole window's sequential loop in one call. They compute
exactly what the NumPy loops in core/rnn.py compute (tests/core/test_tuned_vs_reference.py holds them to it), and
are used only where they were measured to win (`rnn.JIT_MAX_WORK`); for larger B * H the BLAS
products of the NumPy loops are faster.

The LSTM and GRU cells (core/lstm.py, core/gru.py). Between two steps' matrix products the NumPy
code makes about 12 (forward) and 25 (backward) elementwise passes over (B, H) blocks. The
`*_step` kernels do all of one step's elementwise work in one call, each block brought from
memory once, and the backward ones also add the step's gate gradients into the bias gradient
and, for one-hot input, into the rows of dW_ih^T that the step's symbols select (a scatter-add
that NumPy does slowly, and that here replaces a product with the one-hot matrix). The per-step
product stays a NumPy (BLAS) call. The `*_window` kernels run a whole window, recurrent products
included (as loops of fused multiply-adds, as BLAS computes them), for small B * H, where
Python's per-call cost would dominate. Every kernel performs the NumPy code's elementwise
operations in the NumPy code's order (tests/core/test_kernels.py holds the paths and the
references together); the other differences are the order of the sums into the bias and input
weight gradients and the tanh below. `Scratch` keeps the backward passes' window-sized gate
gradients between calls. The first use compiles the kernels (a few seconds per cell and dtype);
cache=True keeps the machine code for later processes.

tanh. numba compiles np.tanh to a call of the C library's scalar tanh, about 16 ns a number here,
40 times NumPy's vectorised tanh, and LLVM cannot vectorise the call. `_tanh` is written out
instead, as arithmetic the loops vectorise: tanh|x| = -m / (2 + m) with m = expm1(-2|x|), the
exponential reduced to 2^k expm1(r), |r| <= ln2/2, with a Taylor polynomial for expm1(r). It is
within 2.5 ulp of the exact tanh in float32 and in float64 (NumPy's, from SVML: 1.4 and 1.2), and
takes 0.35 ns a number in float32 and 1.0 ns in float64 (NumPy: 0.36 and 1.7). The sigmoid is
0.5 * (1 + tanh(x / 2)), the formula of `linear.sigmoid`, safe for any |x|.

The kernels are compiled without fastmath, so LLVM keeps every operation and its order. The tanh
uses two LLVM primitives numba does not expose: fma (a * b + c rounded once: exact, not a
fastmath contraction, and with it the polynomials take half the operations) and a bit cast that
builds 2^k from its exponent bits. error_model="numpy" makes a division by zero give inf or nan
as in NumPy, instead of raising, whose check kept LLVM from vectorising any loop that divides.

numba is optional (`pip install 'charrnn[fast]'`). Without it, or with CHARRNN_JIT=0 in the
environment, `available()` is False and the cells use their NumPy code.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict

import numpy as np

from . import tuning

numba = None  # the module, once `available()` has imported it
_kernels = None
_looked = False
# compiled functions that kernels call, set by `_build_cells`
_fma = _float_from_bits = _matvec_t = None
_lstm_forward_step = _lstm_backward_step = _gru_forward_step = _gru_backward_step = None


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


def cell_kernels_apply(x: np.ndarray, w_ih: np.ndarray) -> bool:
    """Whether the LSTM / GRU kernels run for this layer input x and input weight w_ih: for
    float32 and float64, when numba is available, and for ids only when they are all in range
    (out of range, the NumPy path's indexing is what reports or wraps them, as it always did)."""
    if w_ih.dtype not in (np.float32, np.float64) or not available():
        return False
    return x.dtype.kind not in "iu" or x.size == 0 or (x.min() >= 0 and x.max() < w_ih.shape[1])


def window_inputs(x: np.ndarray, w_ih: np.ndarray, bias: np.ndarray, gates: int, B: int, H: int):
    """(inp, rows, acts) for the cell kernels: stream b's input projection at step t is
    inp[rows[t, b]], and acts (T, gates, B, H) receives the gate activations.

    For ids, inp is the (V, gates * H) table W_ih^T + bias, which every step reads from cache
    (no window-sized projection is made), and acts a new array. For dense input, inp is the
    projected window, x W_ih^T + bias, and acts its memory, as in the NumPy code: the kernels read
    a step's projection before they write its activations."""
    T = x.shape[0]
    dtype = w_ih.dtype
    if x.dtype.kind in "iu":
        inp = np.empty((w_ih.shape[1], gates * H), dtype=dtype)
        np.add(w_ih.T, bias, out=inp)
        return inp, np.ascontiguousarray(x, dtype=np.intp), np.empty((T, gates, B, H), dtype=dtype)
    xw = (x.reshape(T * B, -1) @ w_ih.T).reshape(T, B, gates * H)
    xw += bias
    return xw.reshape(T * B, gates * H), np.arange(T * B).reshape(T, B), xw.reshape(T, gates, B, H)


class Scratch:
    """Window-sized arrays that a call uses only internally, kept for the next call of that shape.

    Only arrays that never leave the call that takes them belong here: the backward passes' gate
    gradients, which no result, cache or caller ever refers to; nothing a forward pass returns or
    caches does. `take` removes the array from the store, so two threads never share one, and
    `give` puts it back once the call is done with it (an exception in between merely drops it).
    Every element is written before it is read, so what a previous call left there never shows.

    Why: glibc returns a freed window-sized array to the system and the next window faults it
    back in, zero-filled, page by page. Forward + backward at B=64, T=100, with the store against
    without it: LSTM 35.4 against 39.5 ms at H=128, 479 against 492 ms at H=512; GRU 27.1
    against 29.8 ms at H=128. (Keeping the forward passes' arrays as well gained nothing
    measurable, and they belong to the caches, which callers hold.)
    The store keeps the arrays of the `max_shapes` most recently given shapes, one per shape and
    dtype, that is, what one backward pass of each of those shapes needs.
    """

    def __init__(self, max_shapes: int = tuning.SCRATCH_SHAPES) -> None:
        self.max_shapes = max_shapes
        self._free: OrderedDict = OrderedDict()  # (shape, dtype) -> array
        self._lock = threading.Lock()

    def take(self, shape: tuple, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            array = self._free.pop(key, None)
        return np.empty(shape, dtype=dtype) if array is None else array

    def give(self, *arrays: np.ndarray) -> None:
        with self._lock:
            for array in arrays:
                key = (array.shape, array.dtype)
                self._free[key] = array
                self._free.move_to_end(key)
            while len(self._free) > self.max_shapes:
                self._free.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


scratch = Scratch()


def _tanh(x):
    """tanh of one float32 or float64 number; defined for the compiled kernels only (`_build`)."""
    raise TypeError("_tanh runs inside compiled kernels only")


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

    lstm_gru = _build_cells()
    return {"rnn_forward_loop": rnn_forward_loop, "bptt_loop": bptt_loop, **lstm_gru}


def _build_cells():
    """The tanh and the LSTM / GRU kernels (module docstring)."""
    # The functions other kernels call are module globals, not closure variables: numba keys its
    # on-disk cache of a function on the pickled values of its closure variables, and a compiled
    # function pickles differently in every process, so a kernel calling a closure variable would
    # be compiled again by every process.
    global _fma, _float_from_bits, _matvec_t, _lstm_forward_step, _lstm_backward_step
    global _gru_forward_step, _gru_backward_step
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload

    # error_model="numpy": see the module docstring (vectorised division)
    kernel = numba.njit(cache=True, nogil=True, error_model="numpy")

    @intrinsic
    def _fma(typingctx, a, b, c):
        """a * b + c with one rounding (LLVM's llvm.fma), for three floats of one type."""
        if isinstance(a, types.Float) and a == b == c:
            return a(a, b, c), lambda context, builder, sig, args: builder.fma(*args)
        return None

    @intrinsic
    def _float_from_bits(typingctx, bits):
        """The float whose IEEE 754 bits are `bits`: int32 -> float32, int64 -> float64."""
        if bits == types.int32:
            return types.float32(bits), lambda context, builder, sig, args: builder.bitcast(args[0], ir.FloatType())
        if bits == types.int64:
            return types.float64(bits), lambda context, builder, sig, args: builder.bitcast(args[0], ir.DoubleType())
        return None

    f32 = np.float32

    def tanh_f32(x):
        # tanh|x| = -m / (2 + m), m = expm1(y), y = -2|x| <= 0; no cancellation for small |x|,
        # where m ~ y, and 2 + m in [1, 2]. Beyond |x| = 9.1 the float32 tanh is 1: clamping
        # there keeps 2^k normal. NaN is passed through at the end.
        a = abs(x)
        y = f32(-2.0) * (a if a < f32(9.1) else f32(9.1))
        # y = k ln2 + r, |r| <= ln2 / 2; ln2 in two parts, the first exact in k * ln2_hi
        k = np.rint(y * f32(1.4426950408889634))
        r = _fma(k, f32(-0.693359375), y)
        r = _fma(k, f32(2.12194440e-4), r)
        # expm1(r) = r + r^2 (1/2 + r/6 + ... + r^5/7!): the truncation is below float32's epsilon
        q = _fma(f32(1.0 / 5040.0), r, f32(1.0 / 720.0))
        q = _fma(q, r, f32(1.0 / 120.0))
        q = _fma(q, r, f32(1.0 / 24.0))
        q = _fma(q, r, f32(1.0 / 6.0))
        q = _fma(q, r, f32(0.5))
        p = _fma(r * r, q, r)
        # 2^k from its exponent bits ((k + 127) * 2^23 is exact in float32); expm1(y) = 2^k p + 2^k - 1
        s = _float_from_bits(np.int32((k + f32(127.0)) * f32(8388608.0)))
        m = _fma(s, p, s - f32(1.0))
        t = math.copysign(-m / (f32(2.0) + m), x)
        return t if a == a else x

    def tanh_f64(x):
        # as tanh_f32, with float64's clamp (tanh rounds to 1 beyond 19.1) and a longer polynomial
        a = abs(x)
        y = -2.0 * (a if a < 19.5 else 19.5)
        k = np.rint(y * 1.4426950408889634)
        r = _fma(k, -6.93147180369123816490e-01, y)
        r = _fma(k, -1.90821492927058770002e-10, r)
        q = _fma(1.0 / 6227020800.0, r, 1.0 / 479001600.0)  # 1/13!, 1/12!
        q = _fma(q, r, 1.0 / 39916800.0)
        q = _fma(q, r, 1.0 / 3628800.0)
        q = _fma(q, r, 1.0 / 362880.0)
        q = _fma(q, r, 1.0 / 40320.0)
        q = _fma(q, r, 1.0 / 5040.0)
        q = _fma(q, r, 1.0 / 720.0)
        q = _fma(q, r, 1.0 / 120.0)
        q = _fma(q, r, 1.0 / 24.0)
        q = _fma(q, r, 1.0 / 6.0)
        q = _fma(q, r, 0.5)
        p = _fma(r * r, q, r)
        s = _float_from_bits(np.int64((k + 1023.0) * 4503599627370496.0))  # 2^k, (k + 1023) * 2^52
        m = _fma(s, p, s - 1.0)
        t = math.copysign(-m / (2.0 + m), x)
        return t if a == a else x

    @overload(_tanh)
    def _tanh_overload(x):
        if x == types.float32:
            return tanh_f32
        if x == types.float64:
            return tanh_f64
        return None

    @kernel
    def tanh(x, out):
        """out = tanh(x) elementwise, 1-D arrays: the kernels' tanh, for the tests."""
        for i in range(x.shape[0]):
            out[i] = _tanh(x[i])

    # ---- the kernels ------------------------------------------------------------------------------
    # They index the whole arrays, a[t, k, b, j], rather than take row views: numba counts the
    # references to every view it makes, and per-row views cost more than the arithmetic at H=128.
    # Formulas are split into short loops over the contiguous last axis: a loop touching many
    # arrays would need more run-time overlap checks than LLVM makes before it vectorises, and the
    # rows stay in L1 between loops. The operations and their order are those of the NumPy code in
    # lstm.py and gru.py; x * 0.5 then 0.5 * (1 + tanh) is `linear.sigmoid`.

    @kernel
    def _matvec_t(out, ob, v, vt, vb, w, acc):
        """out[:, ob, :] = v[vt, vb] w, out (G', B, H') gate-major, v (T, B, K), w (K, G' H'),
        acc (G' H',) scratch: a sum of w's rows in the order of k, each added in a contiguous
        (vectorised) pass over acc, four rows a pass (a quarter of the loads and stores of acc),
        with fused multiply-adds as BLAS does."""
        G, _, H = out.shape
        M = G * H
        K = w.shape[0]
        for m in range(M):
            acc[m] = 0
        k = 0
        while k + 4 <= K:
            v0, v1, v2, v3 = v[vt, vb, k], v[vt, vb, k + 1], v[vt, vb, k + 2], v[vt, vb, k + 3]
            for m in range(M):
                acc[m] = _fma(w[k + 3, m], v3, _fma(w[k + 2, m], v2, _fma(w[k + 1, m], v1, _fma(w[k, m], v0, acc[m]))))
            k += 4
        while k < K:
            vk = v[vt, vb, k]
            for m in range(M):
                acc[m] = _fma(w[k, m], vk, acc[m])
            k += 1
        for g in range(G):
            for j in range(H):
                out[g, ob, j] = acc[g * H + j]

    # ---- LSTM ------------------------------------------------------------------------------------
    # Shared arguments: inp (R, 4H) and rows (T, B): the input projection of stream b at step t
    # (W_ih x + b_ih + b_hh) is inp[rows[t, b]]: for ids a table of W_ih^T + b (rows = the ids),
    # for dense input the projected window (rows = t * B + b). acts (T, 4, B, H), hbuf (T+1, B, H),
    # cbuf (T+1 or 2, B, H), tanh_c (T or 1, B, H): lstm.py's cache (steps taken modulo the first
    # size when there is no cache).

    @kernel
    def _lstm_forward_step(t, pre, inp, rows, acts, hbuf, cbuf, tanh_c):
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
            a[0, n] = half * (one + _tanh(p[0, n] * half))
        for n in range(N):
            a[1, n] = half * (one + _tanh(p[1, n] * half))
        for n in range(N):
            a[2, n] = _tanh(p[2, n])
        for n in range(N):
            a[3, n] = half * (one + _tanh(p[3, n] * half))
        for n in range(N):
            c[n] = a[1, n] * c_prev[n] + a[0, n] * a[2, n]
        for n in range(N):
            tc[n] = _tanh(c[n])
        for n in range(N):
            h[n] = a[3, n] * tc[n]

    @kernel
    def lstm_forward_window(inp, rows, w_t, acts, hbuf, cbuf, tanh_c):
        """Every step of the window, the products included; w_t (H, 4H) = W_hh^T, contiguous."""
        T, _, B, H = acts.shape
        pre = np.empty((4, B, H), dtype=acts.dtype)
        acc = np.empty(4 * H, dtype=acts.dtype)
        for t in range(T):
            for b in range(B):
                _matvec_t(pre, b, hbuf, t, b, w_t, acc)  # W_hh h_{t-1}
            _lstm_forward_step(t, pre, inp, rows, acts, hbuf, cbuf, tanh_c)

    # Backward. dgates (T, B, 4H): the gate gradients, row form; db (4H,) += their sum; for ids
    # (use_ids) dwt (V, 4H) row x[t, b] += the gradients of stream b at step t, so dW_ih = dwt^T.

    @kernel
    def _lstm_backward_step(t, dh, dhs, acts, tanh_c, cbuf, dc, dgates, x, dwt, db, use_ids):
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

    @kernel
    def lstm_backward_window(dh, dhs, acts, tanh_c, cbuf, dc, dgates, w, x, dwt, db, use_ids, dh0):
        """Every step backwards, the products with w (4H, H) = W_hh included; dh enters as in
        lstm_backward_step at the last step; dh0 (B, H) receives dgates_0 W_hh."""
        T, _, B, H = acts.shape
        acc = np.empty(H, dtype=dh.dtype)
        dh3 = dh.reshape(1, B, H)
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                for b in range(B):
                    _matvec_t(dh3, b, dgates, t + 1, b, w, acc)
            _lstm_backward_step(t, dh, dhs, acts, tanh_c, cbuf, dc, dgates, x, dwt, db, use_ids)
        dh03 = dh0.reshape(1, B, H)
        for b in range(B):
            _matvec_t(dh03, b, dgates, 0, b, w, acc)

    # ---- GRU ---------------------------------------------------------------------------------------
    # As for the LSTM, with inp (R, 3H) the projection W_ih x + b_ih + [b_hr, b_hz, 0], acts
    # (T, 3, B, H) = r, z, n, and hn (T or 1, B, H) = W_hn h_{t-1} + b_hn.

    @kernel
    def _gru_forward_step(t, pre, inp, rows, b_hn, acts, hbuf, hn):
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
            a[0, n] = half * (one + _tanh(p[0, n] * half))
        for n in range(N):
            a[1, n] = half * (one + _tanh(p[1, n] * half))
        # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        for n in range(N):
            a[2, n] = _tanh(a[0, n] * qn[n] + p[2, n])
        # h = (1 - z) * n + z * h_prev, written n + z * (h_prev - n)
        for n in range(N):
            h[n] = (h_prev[n] - a[2, n]) * a[1, n] + a[2, n]

    @kernel
    def gru_forward_window(inp, rows, b_hn, w_t, acts, hbuf, hn):
        """Every step of the window, the products included; w_t (H, 3H) = W_hh^T, contiguous."""
        T, _, B, H = acts.shape
        pre = np.empty((3, B, H), dtype=acts.dtype)
        acc = np.empty(3 * H, dtype=acts.dtype)
        for t in range(T):
            for b in range(B):
                _matvec_t(pre, b, hbuf, t, b, w_t, acc)
            _gru_forward_step(t, pre, inp, rows, b_hn, acts, hbuf, hn)

    # Backward. drec (T, B, 3H): [dr, dz, r dn], the hidden side's gradients; dn_out (T or 1,
    # B, H): dn; db_rec (3H,) += sum of drec; db_in (3H,) += sum of [dr, dz, dn], and for ids
    # dwt (V, 3H) row x[t, b] += [dr, dz, dn] of stream b at step t.

    @kernel
    def _gru_backward_step(t, dh, mm, dhs, acts, hbuf, hn, drec, dn_out, x, dwt, db_in, db_rec, use_ids):
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

    @kernel
    def gru_backward_window(dh, dhs, acts, hbuf, hn, drec, dn_out, w, x, dwt, db_in, db_rec, use_ids, dh0):
        """Every step backwards, the products with w (3H, H) = W_hh included; dh0 (B, H)
        receives dL/dh_0 = drec_0 W_hh + dh_0 z_0."""
        T, _, B, H = acts.shape
        mm = np.empty((B, H), dtype=dh.dtype)
        mm3 = mm.reshape(1, B, H)
        acc = np.empty(H, dtype=dh.dtype)
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                for b in range(B):
                    _matvec_t(mm3, b, drec, t + 1, b, w, acc)
            _gru_backward_step(t, dh, mm, dhs, acts, hbuf, hn, drec, dn_out, x, dwt, db_in, db_rec, use_ids)
        dh03 = dh0.reshape(1, B, H)
        for b in range(B):
            _matvec_t(dh03, b, drec, 0, b, w, acc)
            for j in range(H):
                dh0[b, j] += dh[b, j] * acts[0, 1, b, j]

    return {
        "tanh": tanh,
        "lstm_forward_step": _lstm_forward_step,
        "lstm_forward_window": lstm_forward_window,
        "lstm_backward_step": _lstm_backward_step,
        "lstm_backward_window": lstm_backward_window,
        "gru_forward_step": _gru_forward_step,
        "gru_forward_window": gru_forward_window,
        "gru_backward_step": _gru_backward_step,
        "gru_backward_window": gru_backward_window,
    }
