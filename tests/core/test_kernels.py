"""The compiled paths of the LSTM and GRU cells (lstm_kernels.py, gru_kernels.py) against their NumPy code and
the plain references.

Every test that takes the `path` fixture runs three times: with the NumPy code only
(CHARRNN_JIT=0), with the per-step kernels (a BLAS product and one compiled call per step) and
with the whole-window kernels (the products written as loops), whatever the batch size. In
float64 all three must match the references to rounding; in float32 they must stay in float32
and match the NumPy code closely. The kernels' own tanh is held to NumPy's and to the exact
value; caches made by one path must serve the other's backward.
"""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.core import _jit, gru, lstm, tuning

from test_cells import assert_close, problem, rel, run, weights_of

CELLS = {"lstm": lstm, "gru": gru}
PARAMS = ("w_ih", "w_hh", "b_ih", "b_hh")
TIGHT = 1e-12  # float64, relative to the largest magnitude of the compared array
F32 = 2e-5  # compiled against NumPy code, both in float32 (their tanh differ by a few ulp)

needs_numba = pytest.mark.skipif(not _jit.available(), reason="numba is not installed")




def set_path(monkeypatch, path):
    """Force one path: "numpy", "step" (per-step kernels) or "window" (whole-window kernels)."""
    if path == "numpy":
        monkeypatch.setenv("CHARRNN_JIT", "0")
        return
    monkeypatch.delenv("CHARRNN_JIT", raising=False)
    if not _jit.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(tuning, "JIT_WINDOW_MAX_WORK", 10**9 if path == "window" else 0)


@pytest.fixture(params=["numpy", "step", "window"])
def path(request, monkeypatch):
    set_path(monkeypatch, request.param)
    return request.param


def configs(n, seed):
    """(T, B, H, I, ids): T=1, B=1, H=1, H not a multiple of the vector width, I=V=65, then random."""
    rng = np.random.default_rng(seed)
    fixed = [(1, 1, 1, 2, True), (1, 1, 3, 2, False), (6, 1, 7, 5, True), (1, 5, 4, 3, False),
             (5, 3, 17, 6, True), (4, 2, 33, 4, False), (3, 4, 16, 65, True), (2, 7, 9, 9, False)]
    return fixed + [
        (int(rng.integers(1, 9)), int(rng.integers(1, 6)), int(rng.integers(1, 40)), int(rng.integers(2, 10)),
         k % 2 == 0)
        for k in range(n - len(fixed))
    ]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", configs(16, seed=21))
def test_every_path_matches_the_reference(name, config, path):
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, *config, seed=sum(config) + 3)
    want = run(cell, p, x, state0, dhs, dstate_n, reference=True)
    assert_close(run(cell, p, x, state0, dhs, dstate_n), want, TIGHT)
    # no gradient at the final state, no dx
    want = run(cell, p, x, state0, dhs, None, reference=True, need_dx=False)
    got = run(cell, p, x, state0, dhs, None, need_dx=False)
    assert got["dx"] is None
    assert_close(got, want, TIGHT)


@pytest.mark.parametrize("name", CELLS)
def test_only_one_part_of_the_final_state_gradient(name, path):
    """dstate_n with None parts (the LSTM's h or c) is a zero gradient there."""
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 4, 3, 5, 4, True, seed=8)
    for k in range(len(cell.STATE)):
        parts = tuple(d if j == k else None for j, d in enumerate(dstate_n))
        zeros = tuple(d if j == k else np.zeros_like(d) for j, d in enumerate(dstate_n))
        assert_close(run(cell, p, x, state0, dhs, parts), run(cell, p, x, state0, dhs, zeros, reference=True), TIGHT)


@needs_numba
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("kernels", ["step", "window"])
@pytest.mark.parametrize("config", configs(10, seed=5))
def test_float32_stays_float32_and_matches_the_numpy_code(name, kernels, config, monkeypatch):
    cell = CELLS[name]
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    p, x, state0, dhs, dstate_n = problem(cell, *config, seed=sum(config) + 5)
    args = ({k: f32(v) for k, v in p.items()}, x if x.dtype.kind in "iu" else f32(x), tuple(map(f32, state0)),
            f32(dhs), tuple(map(f32, dstate_n)))
    set_path(monkeypatch, "numpy")
    want = run(cell, *args)
    set_path(monkeypatch, kernels)
    got = run(cell, *args)
    for k, v in got.items():
        assert v is None or v.dtype == np.float32, k
    assert_close(got, want, F32)
    # and both near the float64 reference
    assert_close(got, run(cell, p, x, state0, dhs, dstate_n, reference=True), 1e-4)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_backward_adds_and_leaves_the_cache_and_dhs_as_they_were(name, ids, path):
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 5, 3, 6, 4, ids, seed=9)
    hs, _, cache = cell.forward(x, weights_of(p), state0)
    kept = {k: np.copy(getattr(cache, k)) for k in cache.__slots__}
    dhs_kept = dhs.copy()
    grads = tuple(np.zeros_like(p[k]) for k in PARAMS)
    first = cell.backward(dhs, cache, weights_of(p), grads, dstate_n=dstate_n)
    once = [g.copy() for g in grads]
    second = cell.backward(dhs, cache, weights_of(p), grads, dstate_n=dstate_n)
    assert np.array_equal(dhs, dhs_kept)
    for k, v in kept.items():
        assert np.array_equal(getattr(cache, k), v), k
    for g, g1 in zip(grads, once):
        assert rel(g, 2 * g1) <= TIGHT
    for a, b in zip(first[1], second[1]):
        assert np.array_equal(a, b)
    assert (first[0] is None) == ids


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_forward_without_cache_gives_the_same_states(name, path, ids):
    cell = CELLS[name]
    p, x, state0, _, _ = problem(cell, 6, 2, 5, 4, ids, seed=2)
    weights = weights_of(p)
    hs, state_n, cache = cell.forward(x, weights, state0)
    hs2, state_n2, cache2 = cell.forward(x, weights, state0, need_cache=False)
    assert cache is not None and cache2 is None
    assert np.array_equal(hs, hs2)
    for a, b in zip(state_n, state_n2):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_gradients_from_a_feature_major_view(name, path):
    """The model hands the top layer dL/dhs as a transposed view of an (H, T, B) array."""
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 5, 3, 7, 4, True, seed=12)
    view = np.ascontiguousarray(dhs.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert not view.flags.c_contiguous
    assert_close(run(cell, p, x, state0, view, dstate_n), run(cell, p, x, state0, dhs, dstate_n, reference=True), TIGHT)


@needs_numba
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
@pytest.mark.parametrize("kernels", ["step", "window"])
def test_caches_serve_either_backward(name, ids, kernels, monkeypatch):
    """The compiled forward's cache is the NumPy forward's, layout and all: either backward may
    consume either (CHARRNN_JIT may change between the two calls)."""
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 4, 3, 6, 5, ids, seed=4)
    weights = weights_of(p)
    want = run(cell, p, x, state0, dhs, dstate_n, reference=True)
    for fw_path, bw_path in ((kernels, "numpy"), ("numpy", kernels)):
        set_path(monkeypatch, fw_path)
        hs, state_n, cache = cell.forward(x, weights, state0)
        set_path(monkeypatch, bw_path)
        grads = {k: np.zeros_like(p[k]) for k in PARAMS}
        dx, dstate0 = cell.backward(dhs.copy(), cache, weights_of(p), tuple(grads.values()), dstate_n=dstate_n)
        got = {"hs": np.array(hs), **{f"{k}_n": s for k, s in zip(cell.STATE, state_n)},
               **{"d" + k: grads[k] for k in PARAMS}, **{f"d{k}0": d for k, d in zip(cell.STATE, dstate0)}, "dx": dx}
        assert_close(got, want, TIGHT)


@pytest.mark.parametrize("name", CELLS)
def test_out_of_range_ids_behave_as_in_the_numpy_code(name, monkeypatch):
    """The kernels index without bounds checks, so ids outside [0, V) never reach them: an id of
    V raises IndexError and negative ids wrap around, as NumPy's indexing does."""
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 3, 2, 4, 5, True, seed=1)
    weights = weights_of(p)
    big = x.copy()
    big[1, 1] = 5
    with pytest.raises(IndexError):
        cell.forward(big, weights, state0)
    negative = x - 5  # -5 .. -1: the same symbols, counted from the end
    assert_close(run(cell, p, negative, state0, dhs, dstate_n), run(cell, p, x, state0, dhs, dstate_n, reference=True),
                 TIGHT)


@pytest.mark.parametrize("name", CELLS)
def test_large_preactivations_saturate_without_overflow(name, path):
    """sigmoid = 0.5 (1 + tanh(x / 2)) and tanh stay finite for any |x|: gates of exactly 0 and 1."""
    cell = CELLS[name]
    for dtype in (np.float32, np.float64):
        p, x, state0, dhs, dstate_n = problem(cell, 4, 2, 6, 3, False, seed=3, dtype=dtype, scale=1e4)
        with np.errstate(all="raise"):
            got = run(cell, p, x, state0, dhs, dstate_n)
        assert all(np.isfinite(v).all() for v in got.values() if v is not None)
        # h is o tanh(c) for the LSTM, a blend of candidates in [-1, 1] and h_0 for the GRU
        assert np.abs(got["hs"]).max() <= max(1, np.abs(state0[0]).max())


@pytest.mark.parametrize("name", CELLS)
def test_nan_in_the_state_propagates(name, path):
    cell = CELLS[name]
    p, x, state0, _, _ = problem(cell, 3, 2, 5, 4, True, seed=6)
    state0[0][1, 2] = np.nan
    hs, _, _ = cell.forward(x, weights_of(p), state0)
    want, _, _ = cell.forward_reference(x, weights_of(p), state0)
    assert np.array_equal(np.isnan(hs), np.isnan(want)) and np.isnan(hs[:, 1]).all()
    assert not np.isnan(hs[:, 0]).any()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_tanh_is_within_three_ulp(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200_000) * s for s in (1e-6, 1e-2, 0.3, 1, 3, 10)])
    x = np.concatenate([x, np.linspace(-25, 25, 100_001)]).astype(dtype)
    got = np.empty_like(x)
    _jit.build()
    _jit.tanh_array(x, got)
    exact = np.tanh(x.astype(np.longdouble))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
    assert (np.abs(got - exact) / ulp).max() <= 3
    assert (np.abs(np.tanh(x) - exact) / ulp).max() <= 3  # NumPy's tanh, for comparison


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_tanh_of_special_values(dtype):
    tiny = np.finfo(dtype).tiny
    x = np.array([0.0, -0.0, tiny, -tiny / 4, 1e-30, 9.0, -9.2, 19.2, 20.0, 1e30, -1e30,
                  np.finfo(dtype).max, np.inf, -np.inf, np.nan], dtype=dtype)
    got = np.empty_like(x)
    _jit.build()
    _jit.tanh_array(x, got)
    want = np.tanh(x)
    close = np.abs(got - want) <= np.spacing(np.abs(want))
    assert (close | (np.isnan(got) & np.isnan(want))).all()
    assert np.array_equal(np.signbit(got), np.signbit(want))  # tanh(-0) = -0
    assert np.isnan(got[-1]) and got[-3] == 1 and got[-2] == -1


def test_switched_off_the_kernels_are_never_built(monkeypatch):
    monkeypatch.setenv("CHARRNN_JIT", "0")

    def refuse():
        raise AssertionError("kernels requested with CHARRNN_JIT=0")

    monkeypatch.setattr(_jit, "build", refuse)
    for cell in CELLS.values():
        monkeypatch.setattr(cell, "_kernels", refuse)
        args = problem(cell, 3, 2, 4, 3, True, seed=0)
        run(cell, *args)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("config", [(5, 4, 2, 1, 6), (7, 20, 2, 3, 4), (4, 3, 1, 2, 1)])
def test_the_model_gives_the_same_loss_and_gradients_on_every_path(cell, config, path):
    from charrnn.gradcheck import random_problem
    from charrnn.model import reference_loss_and_grads

    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=sum(config), cell=cell)
    want_loss, want_grads, _, want_dh0 = reference_loss_and_grads(model, x, y, h0)
    loss, cache = model.forward(x, y, h0)
    grads, dh0 = model.backward(cache)
    assert abs(loss - want_loss) <= TIGHT * abs(want_loss)
    parts = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
    for a, b in zip(parts(dh0), parts(want_dh0)):
        assert rel(a, b) <= TIGHT
    for k in want_grads:
        assert rel(grads[k], want_grads[k]) <= TIGHT, k


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_training_steps_agree_across_paths(cell, monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 30, (3, 20)), rng.integers(0, 30, (3, 20))
    results = {}
    for p in ("numpy", "step", "window"):
        set_path(monkeypatch, p)
        results[p] = CharRNN(30, 24, 2, cell=cell, seed=1).loss_and_grads(x, y)
    loss0, grads0, _ = results["numpy"]
    for p in ("step", "window"):
        loss, grads, _ = results[p]
        assert abs(loss - loss0) <= 1e-5 * loss0
        assert all(grads[k].dtype == np.float32 and rel(grads[k], grads0[k]) <= 1e-4 for k in grads0)


def test_scratch_hands_an_array_to_one_taker_at_a_time():
    store = _jit.Scratch(max_shapes=2)
    a = store.take((3, 4), np.float32)
    b = store.take((3, 4), np.float32)
    assert a is not b and a.shape == (3, 4) and a.dtype == np.float32
    store.give(a)
    assert store.take((3, 4), np.float32) is a
    assert store.take((3, 4), np.float32) is not a  # taken: not handed out twice
    store.give(a)
    assert store.take((3, 4), np.float64) is not a  # the dtype is part of the key
    store.give(a, np.empty(5), np.empty(6))  # three shapes: the oldest goes
    assert store.take((3, 4), np.float32) is not a


@needs_numba
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("kernels", ["step", "window"])
def test_reused_scratch_never_shows_in_results(name, kernels, monkeypatch):
    """Backward passes of several shapes, interleaved and repeated, give what fresh ones give, and
    a later pass leaves the arrays an earlier one returned alone."""
    set_path(monkeypatch, kernels)
    cell = CELLS[name]
    problems = [problem(cell, *c, seed=k) for k, c in enumerate(
        [(4, 3, 5, 4, True), (4, 3, 5, 4, False), (2, 3, 5, 4, True), (4, 3, 5, 4, True), (4, 3, 5, 4, False)])]
    _jit.scratch.clear()
    fresh = []
    for args in problems:
        fresh.append(run(cell, *args))
        _jit.scratch.clear()
    kept = [{k: None if v is None else v.copy() for k, v in out.items()} for out in fresh]
    for _ in range(2):
        for args, want in zip(problems, kept):
            got = run(cell, *args)
            assert all((got[k] is None and want[k] is None) or np.array_equal(got[k], want[k]) for k in want)
    for out, want in zip(fresh, kept):
        assert all(out[k] is None or np.array_equal(out[k], want[k]) for k in want)


@needs_numba
@pytest.mark.parametrize("name", CELLS)
def test_backward_passes_in_threads_do_not_share_scratch(name):
    """The kernels release the GIL: two threads' backward passes of one shape run at once."""
    import threading

    cell = CELLS[name]
    problems = [problem(cell, 6, 16, 32, 5, ids, seed=k) for k, ids in enumerate([True, True, False, False])]
    want = [run(cell, *args) for args in problems]
    errors = []

    def work(k):
        try:
            for _ in range(20):
                got = run(cell, *problems[k])
                assert all(got[n] is None or np.array_equal(got[n], want[k][n]) for n in want[k])
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
