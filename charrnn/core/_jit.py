"""What the compiled kernels (numba) of every cell share; each cell's own kernels sit beside its
NumPy code (rnn_kernels.py, lstm_kernels.py, gru_kernels.py).

Here: whether the kernels run at all (`available`: numba installed and CHARRNN_JIT not 0), when
the gated cells' kernels apply to a layer's input (`cell_kernels_apply`), their inputs
(`window_inputs`), the store of the backward passes' scratch (`Scratch`), and, built on first use
(`build`), the primitives the kernels call: `fma`, `float_from_bits`, the vectorisable
`scalar_tanh` and the matrix-vector product `matvec_t`. Every kernel performs its NumPy code's
elementwise operations in the NumPy code's order (tests/core/test_kernels.py holds each path to
the references); the first use compiles them (a few seconds per cell and dtype), and cache=True
keeps the machine code for later processes.

tanh. numba compiles np.tanh to a call of the C library's scalar tanh, which LLVM cannot
vectorise (BENCHMARKS.md, "The kernels' tanh"). `scalar_tanh` is written out instead, as
arithmetic the loops vectorise: tanh|x| = -m / (2 + m) with m = expm1(-2|x|), the exponential
reduced to 2^k expm1(r), |r| <= ln2/2, with a Taylor polynomial for expm1(r). It is within 2.5
ulp of the exact tanh in float32 and in float64, as fast as NumPy's vectorised one in float32
and faster in float64. The sigmoid is 0.5 * (1 + tanh(x / 2)), the formula of
`linear.sigmoid`, safe for any |x|.

The kernels are compiled without fastmath, so LLVM keeps every operation and its order. The tanh
uses two LLVM primitives numba does not expose: fma (a * b + c rounded once: exact, not a
fastmath contraction, and with it the polynomials take half the operations) and a bit cast that
builds 2^k from its exponent bits. error_model="numpy" makes a division by zero give inf or nan
as in NumPy, instead of raising, whose check kept LLVM from vectorising any loop that divides.

numba is a dependency (where it has wheels). Without it, or with CHARRNN_JIT=0 in the
environment, `available()` is False and the cells use their NumPy code. A cell's kernels module
imports numba and calls `build()` when it is itself imported, which its cell does only once a
window is to run compiled.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from . import tuning

numba: Any = None  # the module, once `available()` has imported it
_looked = False
_built = False
# The primitives, set by `build`. They are module globals, not closure variables: numba keys its
# on-disk cache of a function on the pickled values of its closure variables, and a compiled
# function pickles differently in every process, so a kernel calling a closure variable would be
# compiled again by every process.
fma: Any = None
float_from_bits: Any = None
matvec_t: Any = None
tanh_array: Any = None  # out = tanh(x) over 1-D arrays with the kernels' tanh: for the tests

# The optimizer a whole-training-step kernel (a cell's FUSED_STEP, rnn_fused.py) applies.
SGD, ADAGRAD, ADAM = 0, 1, 2


def switched_off() -> bool:
    """CHARRNN_JIT=0: the NumPy path chosen on purpose."""
    return os.environ.get("CHARRNN_JIT", "1").strip() == "0"


def available() -> bool:
    """True when numba is importable and not switched off with CHARRNN_JIT=0.

    numba is imported here, on the first small-batch product, not when charrnn is imported:
    it takes a third of a second, which every command would otherwise pay at start-up."""
    global numba, _looked
    if switched_off():
        return False
    if not _looked:
        _looked = True
        try:  # pragma: no cover - which branch runs depends on the environment
            import numba as _numba

            numba = _numba
        except ImportError:  # pragma: no cover
            numba = None
    return numba is not None


def missing_notice() -> str | None:
    """The one line a training run says when numba, a default dependency, does not import here
    (a platform without its wheels): everything still runs, in NumPy. None when the kernels run
    or were switched off on purpose with CHARRNN_JIT=0."""
    if switched_off() or numba is not None:
        return None
    # looked for without importing it (a third of a second) where nothing has imported it yet
    if not _looked and importlib.util.find_spec("numba") is not None:
        return None
    return ("charrnn: numba is not installed here, so the NumPy path trains (the same numbers, slower for "
            "the gated cells and small batches): pip install numba")


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
    back in, zero-filled, page by page (BENCHMARKS.md, "The backward passes' scratch").
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


def scalar_tanh(x):
    """tanh of one float32 or float64 number, as the kernels compute it (module docstring); it
    exists inside compiled code only, once `build` has run."""
    raise TypeError("scalar_tanh runs inside compiled kernels only")


def kernel(fn: Callable) -> Any:
    """The decorator of the cells' elementwise kernels: numba.njit with the on-disk cache, no GIL
    held, and NumPy's division semantics (module docstring). Needs `build()` to have run."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)


def build() -> None:
    """Define the primitives the kernels call (once; numba compiles each on its first call)."""
    global _built, fma, float_from_bits, matvec_t, tanh_array
    if _built:
        return
    if not available():
        raise ImportError("the compiled kernels need numba (and CHARRNN_JIT not set to 0)")
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def fma(typingctx, a, b, c):
        """a * b + c with one rounding (LLVM's llvm.fma), for three floats of one type."""
        if isinstance(a, types.Float) and a == b == c:
            return a(a, b, c), lambda context, builder, sig, args: builder.fma(*args)
        return None

    @intrinsic
    def float_from_bits(typingctx, bits):
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
        r = fma(k, f32(-0.693359375), y)
        r = fma(k, f32(2.12194440e-4), r)
        # expm1(r) = r + r^2 (1/2 + r/6 + ... + r^5/7!): the truncation is below float32's epsilon
        q = fma(f32(1.0 / 5040.0), r, f32(1.0 / 720.0))
        q = fma(q, r, f32(1.0 / 120.0))
        q = fma(q, r, f32(1.0 / 24.0))
        q = fma(q, r, f32(1.0 / 6.0))
        q = fma(q, r, f32(0.5))
        p = fma(r * r, q, r)
        # 2^k from its exponent bits ((k + 127) * 2^23 is exact in float32); expm1(y) = 2^k p + 2^k - 1
        s = float_from_bits(np.int32((k + f32(127.0)) * f32(8388608.0)))
        m = fma(s, p, s - f32(1.0))
        t = math.copysign(-m / (f32(2.0) + m), x)
        return t if a == a else x

    def tanh_f64(x):
        # as tanh_f32, with float64's clamp (tanh rounds to 1 beyond 19.1) and a longer polynomial
        a = abs(x)
        y = -2.0 * (a if a < 19.5 else 19.5)
        k = np.rint(y * 1.4426950408889634)
        r = fma(k, -6.93147180369123816490e-01, y)
        r = fma(k, -1.90821492927058770002e-10, r)
        q = fma(1.0 / 6227020800.0, r, 1.0 / 479001600.0)  # 1/13!, 1/12!
        q = fma(q, r, 1.0 / 39916800.0)
        q = fma(q, r, 1.0 / 3628800.0)
        q = fma(q, r, 1.0 / 362880.0)
        q = fma(q, r, 1.0 / 40320.0)
        q = fma(q, r, 1.0 / 5040.0)
        q = fma(q, r, 1.0 / 720.0)
        q = fma(q, r, 1.0 / 120.0)
        q = fma(q, r, 1.0 / 24.0)
        q = fma(q, r, 1.0 / 6.0)
        q = fma(q, r, 0.5)
        p = fma(r * r, q, r)
        s = float_from_bits(np.int64((k + 1023.0) * 4503599627370496.0))  # 2^k, (k + 1023) * 2^52
        m = fma(s, p, s - 1.0)
        t = math.copysign(-m / (2.0 + m), x)
        return t if a == a else x

    @overload(scalar_tanh)
    def _scalar_tanh_overload(x):
        if x == types.float32:
            return tanh_f32
        if x == types.float64:
            return tanh_f64
        return None

    @kernel
    def tanh_array(x, out):
        """out = tanh(x) elementwise, 1-D arrays: the kernels' tanh, for the tests."""
        for i in range(x.shape[0]):
            out[i] = scalar_tanh(x[i])

    # The kernels index the whole arrays, a[t, k, b, j], rather than take row views: numba counts
    # the references to every view it makes, and per-row views cost more than the arithmetic at
    # H=128. Formulas are split into short loops over the contiguous last axis: a loop touching
    # many arrays would need more run-time overlap checks than LLVM makes before it vectorises,
    # and the rows stay in L1 between loops.

    @kernel
    def matvec_t(out, ob, v, vt, vb, w, acc):
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
                acc[m] = fma(w[k + 3, m], v3, fma(w[k + 2, m], v2, fma(w[k + 1, m], v1, fma(w[k, m], v0, acc[m]))))
            k += 4
        while k < K:
            vk = v[vt, vb, k]
            for m in range(M):
                acc[m] = fma(w[k, m], vk, acc[m])
            k += 1
        for g in range(G):
            for j in range(H):
                out[g, ob, j] = acc[g * H + j]

    _built = True
