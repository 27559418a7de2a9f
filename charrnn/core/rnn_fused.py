"""The tanh cell's whole training step in one compiled call, for a one-layer model on a few streams.

With one stream (the seed's setting: H=100, B=1, T=25) a window is about a million multiply-adds,
a few tens of microseconds of arithmetic, and the NumPy path spends ten times that in Python: a
few hundred NumPy calls for the forward and backward passes, the clipping and the optimizer,
each a microsecond or two. `rnn_train_step` does all of it in one call of compiled code: the
forward pass with the softmax and the loss, backpropagation through time, the gradient's norm,
clipping by value and by norm, and the Adagrad, Adam or SGD update of every parameter. The
equations are those of core/rnn.py, core/loss.py and optim.py (the reference path, which
tests/train/test_fused_step.py holds it to); the sums run in another order, so the two agree to rounding.

Layout: the products are written as sums of contiguous rows (acc[:] += row * scalar), which the
compiler vectorises without reordering any sum; for that the kernel keeps W_hh^T and the
head's weight transposed, copied once per call. Everything is in the parameters' dtype except
the loss and the gradient norm, summed in float64 as the reference sums them.

`status` of the result: 0 the update was applied; 1 the loss or the gradient was not finite and
nothing was changed; 2 the update was applied and a parameter is no longer finite (the caller
restores its last good state, as the training loop does for the NumPy path).
"""

from __future__ import annotations

import math

import numpy as np

from . import _jit
from ._jit import scalar_tanh

SGD, ADAGRAD, ADAM = _jit.SGD, _jit.ADAGRAD, _jit.ADAM  # the `opt` argument of the kernel

_kernel = None


def kernel():
    """The compiled step (numba, cached on disk), built on first use."""
    global _kernel
    if _kernel is None:
        _jit.build()  # the compiled tanh the kernel calls (and numba's import)
        _define_helpers()
        _kernel = _build()
    return _kernel


def _build():
    numba = _jit.numba
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @jit
    def rnn_train_step(x, y, h0, h_out, w_ih, w_hh, b_ih, b_hh, hw, hb,
                       s_ih, s_hh, sb_ih, sb_hh, s_hw, s_hb,
                       m_ih, m_hh, mb_ih, mb_hh, m_hw, m_hb,
                       opt, hyper, clip_value, clip_norm, single_bias):
        """x, y (B, T) ids; h0 (B, H) in, h_out (B, H) the carried state out. w_*, b_*, hw, hb:
        the parameters, updated in place; s_*, m_*: the optimizer's slots (Adagrad: s = sum;
        Adam: m = exp_avg, s = exp_avg_sq; SGD: unused). hyper: (lr, eps, eps_inside_sqrt,
        beta1, beta2, step_size, bias_correction2_sqrt). Returns (loss, grad_norm, status).

        Every array the loops write, the gradients included, is the kernel's own: the compiler
        then knows that no store aliases a load, and vectorises the loops without checks."""
        B, T = x.shape
        H = w_hh.shape[0]
        V = hw.shape[0]
        dt = w_hh.dtype.type
        hs = np.empty((T + 1, B, H), dtype=w_hh.dtype)
        ps = np.empty((T, B, V), dtype=w_hh.dtype)
        g_hh = np.zeros((H, H), dtype=w_hh.dtype)
        gb_ih = np.zeros(H, dtype=w_hh.dtype)
        gb_hh = np.empty(H, dtype=w_hh.dtype)
        g_hw = np.zeros((V, H), dtype=w_hh.dtype)
        g_hb = np.zeros(V, dtype=w_hh.dtype)
        hcur = np.empty(H, dtype=w_hh.dtype)
        hprev = np.empty(H, dtype=w_hh.dtype)
        one = dt(1.0)
        # transposed copies: every product below reads contiguous rows
        whh_t = _transpose(w_hh)  # (H, H)
        wih_t = _transpose(w_ih)  # (V, H): row v is the column of U a one-hot v selects
        hw_t = _transpose(hw)  # (H, V)
        bias = np.empty(H, dtype=w_hh.dtype)
        for i in range(H):
            bias[i] = b_ih[i] + b_hh[i]
        acc = np.empty(H, dtype=w_hh.dtype)
        o = np.empty(V, dtype=w_hh.dtype)
        loss = 0.0
        for b in range(B):
            for i in range(H):
                hs[0, b, i] = h0[b, i]
        # ---- forward: h_t = tanh(W h_{t-1} + U x_t + b), p_t = softmax(V h_t + c)
        for t in range(T):
            for b in range(B):
                row = wih_t[x[b, t]]
                for i in range(H):
                    acc[i] = row[i] + bias[i]
                for j in range(H):
                    hj = hs[t, b, j]
                    for i in range(H):
                        acc[i] += whh_t[j, i] * hj
                for i in range(H):
                    hs[t + 1, b, i] = scalar_tanh(acc[i])
                for v in range(V):
                    o[v] = hb[v]
                for i in range(H):
                    hi = hs[t + 1, b, i]
                    for v in range(V):
                        o[v] += hw_t[i, v] * hi
                m = o[0]
                for v in range(1, V):
                    m = max(m, o[v])
                total = dt(0.0)
                for v in range(V):
                    e = math.exp(o[v] - m)
                    ps[t, b, v] = e
                    total += e
                loss += math.log(np.float64(total)) - np.float64(o[y[b, t]] - m)
                r = one / total
                for v in range(V):
                    ps[t, b, v] *= r
        n = B * T
        loss /= n
        for b in range(B):
            for i in range(H):
                h_out[b, i] = hs[T, b, i]
        # ---- backward (gradients of the mean over the n positions)
        gih_t = np.zeros((V, H), dtype=w_hh.dtype)  # dU^T: row v gathers the steps that read v
        scale = one / dt(n)
        dh = np.empty(H, dtype=w_hh.dtype)
        da = np.empty(H, dtype=w_hh.dtype)
        dnext = np.zeros((B, H), dtype=w_hh.dtype)  # W^T da_{t+1}, per stream
        dy = np.empty(V, dtype=w_hh.dtype)
        for t in range(T - 1, -1, -1):
            for b in range(B):
                for v in range(V):
                    dy[v] = ps[t, b, v]
                dy[y[b, t]] -= one
                for v in range(V):
                    dy[v] *= scale
                    g_hb[v] += dy[v]
                for i in range(H):
                    hcur[i] = hs[t + 1, b, i]
                    hprev[i] = hs[t, b, i]
                # dV += dy h_t^T; dh = V^T dy + what step t+1 sends back
                for i in range(H):
                    dh[i] = dnext[b, i]
                for v in range(V):
                    dv = dy[v]
                    for i in range(H):
                        g_hw[v, i] += dv * hcur[i]
                    for i in range(H):
                        dh[i] += hw[v, i] * dv
                for i in range(H):
                    da[i] = dh[i] * (one - hcur[i] * hcur[i])
                for i in range(H):
                    gb_ih[i] += da[i]
                grow = gih_t[x[b, t]]
                for i in range(H):
                    grow[i] += da[i]
                # dW += da h_{t-1}^T; W^T da for step t-1
                for i in range(H):
                    dh[i] = 0
                for j in range(H):
                    dj = da[j]
                    for i in range(H):
                        g_hh[j, i] += dj * hprev[i]
                    for i in range(H):
                        dh[i] += w_hh[j, i] * dj
                for i in range(H):
                    dnext[b, i] = dh[i]
        g_ih = _transpose(gih_t)
        for i in range(H):
            gb_hh[i] = gb_ih[i]  # both biases get the same gradient: only their sum enters
        # ---- the norm before clipping, in float64; nothing changes unless all is finite
        sq = _sumsq(g_ih) + _sumsq(g_hh) + _sumsq(gb_ih) + _sumsq(gb_hh) + _sumsq(g_hw) + _sumsq(g_hb)
        norm = math.sqrt(sq)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return loss, norm, 1
        if single_bias:  # the seeds' one trained bias: bias_hh keeps its value
            gb_hh[:] = 0
        if clip_value > 0:
            c = dt(clip_value)
            _clamp(g_ih, c)
            _clamp(g_hh, c)
            _clamp(gb_ih, c)
            _clamp(gb_hh, c)
            _clamp(g_hw, c)
            _clamp(g_hb, c)
        if clip_norm > 0:
            if clip_value > 0 or single_bias:  # the norm of what clipping by value (or the bias) left
                sq = _sumsq(g_ih) + _sumsq(g_hh) + _sumsq(gb_ih) + _sumsq(gb_hh) + _sumsq(g_hw) + _sumsq(g_hb)
            coef = clip_norm / (math.sqrt(sq) + 1e-6)
            if coef < 1.0:
                c = dt(coef)
                _scale(g_ih, c)
                _scale(g_hh, c)
                _scale(gb_ih, c)
                _scale(gb_hh, c)
                _scale(g_hw, c)
                _scale(g_hb, c)
        ok = _update(w_ih, g_ih, s_ih, m_ih, opt, hyper)
        ok &= _update(w_hh, g_hh, s_hh, m_hh, opt, hyper)
        ok &= _update(b_ih, gb_ih, sb_ih, mb_ih, opt, hyper)
        ok &= _update(b_hh, gb_hh, sb_hh, mb_hh, opt, hyper)
        ok &= _update(hw, g_hw, s_hw, m_hw, opt, hyper)
        ok &= _update(hb, g_hb, s_hb, m_hb, opt, hyper)
        return loss, norm, 0 if ok else 2

    return rnn_train_step


def _define_helpers():
    """The kernel's helpers, module globals (numba's disk cache keys on a kernel's globals)."""
    global _sumsq, _clamp, _scale, _update, _transpose
    numba = _jit.numba
    helper = numba.njit(cache=True, nogil=True, error_model="numpy")

    @helper
    def _sumsq(a):
        """Sum of squares in float64, in eight interleaved partial sums: a single running sum
        would make every addition wait for the one before it."""
        f = a.reshape(-1)
        n = f.shape[0]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        k = 0
        while k + 8 <= n:
            v0, v1, v2, v3 = np.float64(f[k]), np.float64(f[k + 1]), np.float64(f[k + 2]), np.float64(f[k + 3])
            v4, v5, v6, v7 = np.float64(f[k + 4]), np.float64(f[k + 5]), np.float64(f[k + 6]), np.float64(f[k + 7])
            s0 += v0 * v0
            s1 += v1 * v1
            s2 += v2 * v2
            s3 += v3 * v3
            s4 += v4 * v4
            s5 += v5 * v5
            s6 += v6 * v6
            s7 += v7 * v7
            k += 8
        while k < n:
            v = np.float64(f[k])
            s0 += v * v
            k += 1
        return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))

    @helper
    def _transpose(a):
        """a.T as a new C-contiguous array."""
        return np.ascontiguousarray(a.T)

    @helper
    def _clamp(a, c):
        f = a.reshape(-1)
        for k in range(f.shape[0]):
            f[k] = min(max(f[k], -c), c)

    @helper
    def _scale(a, c):
        f = a.reshape(-1)
        for k in range(f.shape[0]):
            f[k] *= c

    @helper
    def _update(p, g, s, m, opt, hyper):
        """One parameter's update, as optim.py's SGD / Adagrad / Adam compute it elementwise.
        Returns whether every updated element is finite."""
        pf, gf, sf, mf = p.reshape(-1), g.reshape(-1), s.reshape(-1), m.reshape(-1)
        dt = pf.dtype.type
        lr, eps = hyper[0], hyper[1]
        if opt == 0:  # SGD: p -= lr * g
            a = dt(-lr)
            for k in range(pf.shape[0]):
                pf[k] += gf[k] * a
        elif opt == 1:  # Adagrad: sum += g^2; p += (-lr g) / (sqrt(sum) + eps) or / sqrt(sum + eps)
            a, e = dt(-lr), dt(eps)
            if hyper[2] != 0:
                for k in range(pf.shape[0]):
                    gk = gf[k]
                    sf[k] += gk * gk
                    pf[k] += (gk * a) / np.sqrt(sf[k] + e)
            else:
                for k in range(pf.shape[0]):
                    gk = gf[k]
                    sf[k] += gk * gk
                    pf[k] += (gk * a) / (np.sqrt(sf[k]) + e)
        else:  # Adam: m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2; p += (-step_size m) / (sqrt(v) / bc2 + eps)
            b1w, b2 = dt(1.0 - hyper[3]), dt(hyper[4])
            b2w = dt(1.0 - hyper[4])
            a, bc2, e = dt(-hyper[5]), dt(hyper[6]), dt(eps)
            for k in range(pf.shape[0]):
                gk = gf[k]
                mf[k] += b1w * (gk - mf[k])
                sf[k] = sf[k] * b2 + (gk * b2w) * gk
                pf[k] += (mf[k] * a) / (np.sqrt(sf[k]) / bc2 + e)
        # finite: |p| <= the largest float (false for inf and nan); an integer count vectorises
        big = np.finfo(pf.dtype).max
        bad = 0
        for k in range(pf.shape[0]):
            bad += not (abs(pf[k]) <= big)
        return bad == 0


_sumsq = _clamp = _scale = _update = _transpose = None
