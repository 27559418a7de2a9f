"""The tuned paths against their plain references: same losses, gradients, states and samples.

Every optimisation in core/ and model/ keeps a reference beside it (`*_reference`,
`model.reference_loss_and_grads`, `model.reference_step`); these tests hold the two together in
float64, over random shapes with T=1, B=1 and several layers, with and without the compiled
loops of rnn_kernels.py (numba), and check the reuse of buffers between calls.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn import CharRNN, threads
from charrnn.core import _jit, linear, loss as loss_ops, tuning
from charrnn.core import rnn as ops
from charrnn.errors import ConfigError
from charrnn.gradcheck import random_problem
from charrnn.model import reference_loss_and_grads, reference_step

TIGHT = 1e-12  # float64, relative to the largest magnitude of the compared array


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300)


def configs(n, seed):
    """(V, H, L, B, T): the edge cases first, then random ones, some past tuning.RNN_JIT_MAX_WORK."""
    rng = np.random.default_rng(seed)
    fixed = [(2, 3, 1, 1, 1), (5, 4, 3, 1, 6), (4, 6, 2, 7, 1), (65, 16, 1, 1, 25), (9, 8, 2, 9, 5)]
    return fixed + [
        (int(rng.integers(2, 12)), int(rng.integers(1, 10)), int(rng.integers(1, 4)),
         int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        for _ in range(n - len(fixed))
    ]


@pytest.fixture(params=["numpy", "jit"])
def loops(request, monkeypatch):
    """Run a test with the NumPy loops only, then with the compiled loops for every batch size."""
    if request.param == "jit":
        if not _jit.available():
            pytest.skip("numba is not installed")
        monkeypatch.setattr(tuning, "RNN_JIT_MAX_WORK", 10**9)
    else:
        monkeypatch.setattr(tuning, "RNN_JIT_MAX_WORK", 0)
    return request.param


@pytest.mark.parametrize("config", configs(14, seed=5))
def test_tuned_window_matches_the_reference(config, loops):
    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=sum(config))
    want_loss, want_grads, want_h, want_dh0 = reference_loss_and_grads(model, x, y, h0)
    loss, cache = model.forward(x, y, h0)
    h_last = cache.h_last[0]
    grads, dh0 = model.backward(cache)
    assert abs(loss - want_loss) <= TIGHT * abs(want_loss)
    assert rel(h_last, want_h) <= TIGHT
    assert rel(dh0, want_dh0) <= TIGHT
    for name in want_grads:
        assert grads[name].dtype == model.dtype and grads[name].flags.c_contiguous
        assert rel(grads[name], want_grads[name]) <= TIGHT, name


def test_small_dtanh_chunks_give_the_same_gradients(monkeypatch):
    """The backward pass computes tanh' a few steps at a time; chunk edges must not matter."""
    model, x, y, h0 = random_problem(6, 5, 2, 3, 11, seed=4)
    monkeypatch.setattr(tuning, "RNN_JIT_MAX_WORK", 0)
    _, want, _, _ = reference_loss_and_grads(model, x, y, h0)
    for elements in (1, 15, 16, 40, 10**6):  # one step, B*H, a partial chunk, several, all
        monkeypatch.setattr(tuning, "DTANH_CHUNK_ELEMENTS", elements)
        grads = model.loss_and_grads(x, y, h0)[1]
        assert all(rel(grads[n], want[n]) <= TIGHT for n in want)


def test_rnn_ops_match_their_references(loops):
    rng = np.random.default_rng(3)
    for V, H, B, T in [(5, 4, 1, 1), (7, 6, 3, 5), (3, 9, 8, 4)]:
        W = rng.uniform(-0.8, 0.8, (H, H))
        U = rng.uniform(-0.8, 0.8, (H, V))
        b_ih, b_hh = rng.uniform(-0.5, 0.5, (2, H))
        h0 = rng.uniform(-0.9, 0.9, (B, H))
        tokens = rng.integers(0, V, (T, B))
        # reference: time-major, input projection separate
        xa = linear.input_forward(tokens, U, b_ih) + b_hh
        want_hs = ops.rnn_forward_reference(xa, W, h0)
        # tuned: stacked [h; x; 1] columns, step-major
        X = np.zeros((T + 1, H + V + 1, B))
        X[0, :H] = h0.T
        X[:T, -1] = 1
        for t in range(T):
            X[t, H + tokens[t], np.arange(B)] = 1
        ops.rnn_forward(X, ops.stack_weights(W, U, b_ih, b_hh))
        assert rel(X[1:, :H].transpose(0, 2, 1), want_hs) <= TIGHT
        # backward of the recurrence, from the same upstream gradient
        dhs = rng.standard_normal((T, B, H))
        dW_ref, dW = np.zeros((H, H)), np.zeros((H, H))
        want_da, want_dh0 = ops.rnn_backward_reference(dhs.copy(), want_hs, h0, W, dW_ref)
        XT = np.ascontiguousarray(X.transpose(1, 0, 2))
        dhs_fm = dhs.transpose(2, 0, 1).copy()  # (H, T, B), consumed below
        da, dh0 = ops.rnn_backward(dhs_fm, XT[:H, 1:], XT[:H, 0], W, dW)
        assert da is dhs_fm
        assert rel(da.transpose(1, 2, 0), want_da) <= TIGHT
        assert rel(dh0.T, want_dh0) <= TIGHT
        assert rel(dW, dW_ref) <= TIGHT
        # states passed as separate arrays (not one buffer): the two-product path, same numbers
        dW2 = np.zeros((H, H))
        dhs_fm2 = dhs.transpose(2, 0, 1).copy()
        da2, _ = ops.rnn_backward(dhs_fm2, XT[:H, 1:].copy(), XT[:H, 0].copy(), W, dW2)
        assert ops._states_before(XT[:H, 1:].copy(), XT[:H, 0].copy()) is None
        assert rel(da2, da) <= TIGHT and rel(dW2, dW_ref) <= TIGHT
        # the input side: dU and db from one product over the stacked inputs
        dU, db_ih, db_hh = np.zeros((H, V)), np.zeros(H), np.zeros(H)
        ops.rnn_input_backward(da, XT, U, dU, db_ih, db_hh)
        dU_ref = np.zeros((H, V))
        linear.input_backward_reference(want_da, tokens, U, dU_ref, np.zeros(H))
        assert rel(dU, dU_ref) <= TIGHT
        assert rel(db_ih, want_da.sum(axis=(0, 1))) <= TIGHT and np.array_equal(db_ih, db_hh)


def test_softmax_cross_entropy_matches_the_reference():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((13, 7)) * 5
    targets = rng.integers(0, 7, 13)
    want_loss, want_d = loss_ops.softmax_cross_entropy_reference(logits, targets)
    loss, probs = loss_ops.softmax_cross_entropy_forward(logits.copy(), targets)
    assert abs(loss - want_loss) <= TIGHT * want_loss
    assert rel(loss_ops.softmax_cross_entropy_backward(probs, targets), want_d) <= TIGHT


@pytest.mark.parametrize("V,H,L,B", [(5, 4, 1, 1), (9, 7, 3, 1), (6, 5, 2, 4)])
def test_step_matches_the_reference_and_samples_the_same(V, H, L, B):
    model, _, _, _ = random_problem(V, H, L, B, 1, seed=V + H)
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    h_a = h_b = model.initial_state(B)
    tok_a = tok_b = np.arange(B) % V
    stepper = model.stepper(B)
    for _ in range(30):
        from_stepper = stepper(tok_a).copy()
        logits_a, h_a = model.step(tok_a, h_a)
        logits_b, h_b = reference_step(model, tok_b, h_b)
        assert rel(logits_a, logits_b) <= TIGHT and rel(h_a, h_b) <= TIGHT
        assert rel(from_stepper, logits_b) <= TIGHT and rel(stepper.h, h_b) <= TIGHT
        # sampling by inverting the CDF with shared uniforms: the same characters come out
        u_a, u_b = rng_a.random(B), rng_b.random(B)
        tok_a = np.array([np.searchsorted(np.cumsum(_softmax(l)), u) for l, u in zip(logits_a, u_a)])
        tok_b = np.array([np.searchsorted(np.cumsum(_softmax(l)), u) for l, u in zip(logits_b, u_b)])
        assert np.array_equal(tok_a, tok_b)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_stepper_follows_parameter_updates_and_resets():
    model = CharRNN(6, 5, 2, dtype="float64", seed=2)
    h = np.random.default_rng(1).uniform(-1, 1, (2, 1, 5))
    stepper = model.stepper(1, h)
    first = stepper(np.array([2])).copy()
    model.params["head.bias"] += 1.0  # as an optimizer would: in place
    stepper.reset(h)
    assert np.allclose(stepper(2), first + 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError):
        stepper(np.array([1, 2]))
    for bad in (np.array([6]), 6, -1, True, 2.0):
        with pytest.raises(ConfigError):
            stepper(bad)


def test_step_accepts_what_it_did_and_checks_cheaply():
    model = CharRNN(5, 4, 2, dtype="float64")
    logits, h = model.step(3)  # a bare id, state None
    assert logits.shape == (1, 5) and h.shape == (2, 1, 4)
    logits2, _ = model.step(np.array([[3]]), model.initial_state(1).tolist())
    assert np.array_equal(logits, logits2)
    for bad in (np.array([5]), np.array([-1]), np.array([1.0]), np.array([True]), np.array([], dtype=int)):
        with pytest.raises(ConfigError):
            model.step(bad)
    with pytest.raises(ConfigError):
        model.step(np.array([1]), np.zeros((1, 1, 4)))


def test_workspaces_are_reused_without_mixing_results():
    model = CharRNN(8, 6, 2, dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    windows = [(rng.integers(0, 8, (b, t)), rng.integers(0, 8, (b, t))) for b, t in [(2, 5), (3, 4), (2, 5), (1, 1)]]
    fresh = [CharRNN(8, 6, 2, dtype="float64", seed=1).loss_and_grads(x, y) for x, y in windows]
    for _ in range(2):  # the second round runs on buffers left by the first
        for (x, y), (want_loss, want_grads, want_h) in zip(windows, fresh):
            loss, grads, h = model.loss_and_grads(x, y)
            assert loss == want_loss and np.array_equal(h, want_h)
            assert all(np.array_equal(grads[n], want_grads[n]) for n in grads)
    # the one-hot entries of a previous window are cleared: a window of all-zero ids still matches
    zeros = np.zeros((2, 5), dtype=int)
    assert model.loss_and_grads(zeros, zeros)[0] == CharRNN(8, 6, 2, dtype="float64", seed=1).loss_and_grads(zeros, zeros)[0]


def test_a_cache_stays_valid_across_later_calls_and_is_consumed_once():
    model = CharRNN(5, 4, dtype="float64")
    x = np.arange(6).reshape(2, 3) % 5
    _, cache = model.forward(x, x)
    want, _ = model.backward(model.forward(x, x)[1])
    model.forward(x[:, ::-1].copy(), x)  # a later window of the same shape
    model.logits(x)
    grads, _ = model.backward(cache)
    assert all(np.array_equal(grads[n], want[n]) for n in want)
    with pytest.raises(RuntimeError, match="already been used"):
        model.backward(cache)  # consumed


def test_logits_are_fresh_arrays():
    model = CharRNN(5, 4, dtype="float64")
    x = np.array([[1, 2, 3]])
    first, _ = model.logits(x)
    keep = first.copy()
    model.logits(np.array([[4, 0, 1]]))
    assert np.array_equal(first, keep)


@pytest.mark.skipif(not _jit.available(), reason="numba is not installed")
def test_compiled_loops_match_the_numpy_loops_in_float32(monkeypatch):
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 65, (1, 25)), rng.integers(0, 65, (1, 25))
    results = []
    for limit in (0, 10**9):
        monkeypatch.setattr(tuning, "RNN_JIT_MAX_WORK", limit)
        results.append(CharRNN(65, 100, 2, seed=3).loss_and_grads(x, y))
    (l0, g0, h0), (l1, g1, h1) = results
    assert abs(l0 - l1) <= 1e-5 * l0 and rel(h1, h0) <= 1e-5
    assert all(g1[n].dtype == np.float32 and rel(g1[n], g0[n]) <= 1e-4 for n in g0)


def test_threads_setting_and_report(monkeypatch):
    before = threads.thread_info()
    try:
        assert threads.set_threads(1) == 1
        info = threads.thread_info()
        assert info["threads"] == 1 and info["source"] == "set_threads"
        assert all(lib["threads"] == 1 for lib in info["blas"])
        for bad in (0, -2, "two", True):
            with pytest.raises(ConfigError):
                threads.set_threads(bad)
        monkeypatch.setenv(threads.ENV_VAR, "2")
        assert threads.requested_threads() == (2, threads.ENV_VAR)
        monkeypatch.setenv(threads.ENV_VAR, "x")
        with pytest.raises(ConfigError):
            threads.requested_threads()
        monkeypatch.delenv(threads.ENV_VAR)
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
        assert threads.requested_threads() == (None, "OPENBLAS_NUM_THREADS")
    finally:
        if before["blas"]:
            threads.set_threads(before["blas"][0]["threads"])


def test_env_var_is_applied_on_first_use():
    code = (
        "import numpy as np; from charrnn import CharRNN, threads; "
        "CharRNN(5, 4).step(np.array([1])); i = threads.thread_info(); "
        "print(i['threads'], i['source'], i['blas'][0]['threads'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in threads.BLAS_ENV_VARS}
    env[threads.ENV_VAR] = "1"  # a count any machine can honour
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "CHARRNN_THREADS", "1"]


def test_loss_is_the_forward_pass_loss():
    model, x, y, h0 = random_problem(7, 5, 2, 3, 4, seed=11)
    loss, h_last = model.loss(x, y, h0)
    want, cache = model.forward(x, y, h0)
    assert loss == want
    assert np.array_equal(h_last, cache.h_last[0])
    with pytest.raises(ConfigError):
        model.loss(x, y[:, :2])


def test_compiled_loops_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("CHARRNN_JIT", "0")
    assert not _jit.available()
    assert not ops.use_jit(1, 1)
