"""The LSTM and GRU cells (charrnn.core.lstm, charrnn.core.gru) against three oracles.

* central finite differences of a scalar loss, in float64, for every gradient the cells return;
* PyTorch's nn.LSTM / nn.GRU with the same parameters, through autograd;
* the plain references (forward_reference / backward_reference), which the tuned functions must
  match to rounding, in float64, and approximate in float32 without leaving float32.

The loss throughout is L = sum(dhs * hs) + sum_k sum(dstate_n[k] * state_n[k]) for random dhs
and dstate_n, so that dL/dhs = dhs and dL/dstate_n = dstate_n are exactly what backward receives.
"""

import numpy as np
import pytest

from charrnn.core import gru, lstm
from conftest import optional

CELLS = {"lstm": lstm, "gru": gru}
PARAMS = ("w_ih", "w_hh", "b_ih", "b_hh")
TIGHT = 1e-12  # tuned against reference, float64
ORACLE = 1e-10  # against PyTorch, float64
FD = 1e-6  # against central finite differences


def rel(a, b):
    """Largest difference relative to the largest magnitude of `b`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def assert_close(got, want, tol):
    """Every array of `want` (a dict) matched by `got` to `tol`, or an AssertionError naming them."""
    assert got.keys() == want.keys()
    bad = {}
    for k in want:
        if want[k] is None or got[k] is None:
            if not (want[k] is None and got[k] is None):
                bad[k] = "None against an array"
            continue
        assert got[k].shape == want[k].shape, k
        err = rel(got[k], want[k])
        if not err <= tol:
            bad[k] = f"{err:.2e}"
    assert not bad, f"above {tol:g}: {bad}"


def problem(cell, T, B, H, I, ids, seed, dtype=np.float64, scale=0.7):
    """Random parameters, input, initial state and upstream gradients for one window."""
    rng = np.random.default_rng(seed)
    G = cell.GATES
    f = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    p = {"w_ih": f(G * H, I) * scale, "w_hh": f(G * H, H) * scale, "b_ih": f(G * H) * 0.5, "b_hh": f(G * H) * 0.5}
    x = rng.integers(0, I, (T, B)) if ids else f(T, B, I)
    state0 = tuple(f(B, H) for _ in cell.STATE)
    dhs = f(T, B, H)
    dstate_n = tuple(f(B, H) for _ in cell.STATE)
    return p, x, state0, dhs, dstate_n


def weights_of(p):
    """The layer's parameters as the cells take them: a tuple in their table's order."""
    return tuple(p[k] for k in PARAMS)


def run(cell, p, x, state0, dhs, dstate_n, reference=False, need_dx=True):
    """Forward and backward of one window: every output and gradient by name."""
    fw, bw = (cell.forward_reference, cell.backward_reference) if reference else (cell.forward, cell.backward)
    hs, state_n, cache = fw(x, weights_of(p), state0)
    out = {"hs": hs.copy()}
    out.update({f"{k}_n": s for k, s in zip(cell.STATE, state_n)})
    grads = {k: np.zeros_like(p[k]) for k in PARAMS}
    dx, dstate0 = bw(dhs.copy(), cache, weights_of(p), tuple(grads[k] for k in PARAMS),
                     dstate_n=dstate_n, need_dx=need_dx)
    out.update({"d" + k: grads[k] for k in PARAMS})
    out.update({f"d{k}0": d for k, d in zip(cell.STATE, dstate0)})
    out["dx"] = dx
    return out


def loss(cell, p, x, state0, dhs, dstate_n):
    weights = weights_of(p)
    hs, state_n, _ = cell.forward_reference(x, weights, state0, need_cache=False)
    return np.sum(dhs * hs) + sum(np.sum(d * s) for d, s in zip(dstate_n, state_n))


def numeric_grads(cell, p, x, state0, dhs, dstate_n, eps=1e-6):
    """Central differences of `loss` for every parameter, state0 part and (dense) x entry."""
    def fd(a, f):
        g = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            keep = a[j]
            a[j] = keep + eps
            up = f()
            a[j] = keep - eps
            down = f()
            a[j] = keep
            g[j] = (up - down) / (2 * eps)
        return g

    p = {k: v.copy() for k, v in p.items()}
    state0 = tuple(s.copy() for s in state0)
    x = x.copy()
    f = lambda: loss(cell, p, x, state0, dhs, dstate_n)  # noqa: E731
    out = {"d" + k: fd(p[k], f) for k in PARAMS}
    out.update({f"d{k}0": fd(s, f) for k, s in zip(cell.STATE, state0)})
    out["dx"] = None if x.dtype.kind in "iu" else fd(x, f)
    return out


def gradients_of(out):
    return {k: v for k, v in out.items() if k.startswith("d")}


# (T, B, H, I, ids): the edge cases T=1, B=1, H=1, I=2 first
FD_CONFIGS = [(1, 1, 1, 2, True), (1, 1, 2, 2, False), (3, 1, 2, 2, True), (2, 3, 3, 2, False),
              (4, 2, 2, 3, True), (3, 2, 3, 3, False)]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", FD_CONFIGS)
@pytest.mark.parametrize("reference", [False, True], ids=["tuned", "reference"])
def test_gradients_match_finite_differences(name, config, reference):
    cell = CELLS[name]
    args = problem(cell, *config, seed=sum(config))
    analytic = gradients_of(run(cell, *args, reference=reference))
    assert_close(analytic, numeric_grads(cell, *args), FD)


@pytest.mark.parametrize("name", CELLS)
def test_finite_differences_catch_a_broken_gradient(name):
    cell = CELLS[name]
    args = problem(cell, 3, 2, 2, 3, False, seed=11)
    analytic = gradients_of(run(cell, *args))
    numeric = numeric_grads(cell, *args)
    assert_close(analytic, numeric, FD)
    analytic["dw_hh"][1, 0] += 1e-4 * np.abs(analytic["dw_hh"]).max()
    with pytest.raises(AssertionError, match="dw_hh"):
        assert_close(analytic, numeric, FD)


def torch_run(cell_name, p, x, state0, dhs, dstate_n):
    """The same window through PyTorch autograd, float64, one layer, time-major."""
    torch = optional("torch")
    H, I = p["w_hh"].shape[1], p["w_ih"].shape[1]
    module = (torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU)(I, H, num_layers=1).double()
    with torch.no_grad():
        for k, torch_name in zip(PARAMS, ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")):
            getattr(module, torch_name).copy_(torch.from_numpy(p[k]))
    ids = x.dtype.kind in "iu"
    tx = torch.nn.functional.one_hot(torch.from_numpy(x), I).double() if ids else torch.from_numpy(x.copy())
    tx.requires_grad_(not ids)
    ts0 = [torch.from_numpy(s[None].copy()).requires_grad_() for s in state0]
    out, tsn = module(tx, tuple(ts0) if cell_name == "lstm" else ts0[0])
    tsn = tsn if cell_name == "lstm" else (tsn,)
    total = (out * torch.from_numpy(dhs)).sum()
    total = total + sum((s[0] * torch.from_numpy(d)).sum() for s, d in zip(tsn, dstate_n))
    total.backward()
    params = (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0)
    res = {"hs": out.detach().numpy()}
    res.update({f"{k}_n": s[0].detach().numpy() for k, s in zip(CELLS[cell_name].STATE, tsn)})
    res.update({"d" + k: t.grad.numpy() for k, t in zip(PARAMS, params)})
    res.update({f"d{k}0": s.grad.numpy()[0] for k, s in zip(CELLS[cell_name].STATE, ts0)})
    res["dx"] = None if ids else tx.grad.numpy()
    return res


def random_configs(n, seed):
    """(T, B, H, I, ids), T in 1..12, B in 1..5, H in 1..9, I in 2..7; ids and dense alternate."""
    rng = np.random.default_rng(seed)
    size = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    return [(size(1, 12), size(1, 5), size(1, 9), size(2, 7), k % 2 == 0) for k in range(n)]


@pytest.mark.parametrize("name", CELLS)
def test_matches_pytorch_autograd(name):
    cell = CELLS[name]
    configs = [(1, 1, 1, 2, True), (1, 1, 1, 2, False)] + random_configs(22, seed=len(name))
    for k, config in enumerate(configs):
        args = problem(cell, *config, seed=100 + k)
        want = torch_run(name, *args)
        for reference in (False, True):
            try:
                assert_close(run(cell, *args, reference=reference), want, ORACLE)
            except AssertionError as e:
                raise AssertionError(f"{name} {config} reference={reference}: {e}") from None


@pytest.mark.parametrize("name", CELLS)
def test_pytorch_comparison_catches_a_broken_gradient(name):
    cell = CELLS[name]
    args = problem(cell, 5, 3, 4, 3, False, seed=7)
    got, want = run(cell, *args), torch_run(name, *args)
    assert_close(got, want, ORACLE)
    got["dw_hh"][0, 1] *= 1 + 1e-8
    with pytest.raises(AssertionError, match="dw_hh"):
        assert_close(got, want, ORACLE)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", [(1, 1, 1, 2, True), (1, 4, 3, 2, False)] + random_configs(10, seed=3))
def test_tuned_matches_reference(name, config):
    cell = CELLS[name]
    args = problem(cell, *config, seed=sum(config) + 1)
    want = run(cell, *args, reference=True)
    assert_close(run(cell, *args), want, TIGHT)
    # without upstream state gradients, and without dx
    p, x, state0, dhs, _ = args
    want = run(cell, p, x, state0, dhs, None, reference=True, need_dx=False)
    got = run(cell, p, x, state0, dhs, None, need_dx=False)
    assert got["dx"] is None
    assert_close(got, want, TIGHT)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_backward_adds_and_leaves_the_cache_as_it_was(name, ids):
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 4, 3, 5, 4, ids, seed=9)
    hs, _, cache = cell.forward(x, weights_of(p), state0)
    grads = tuple(np.zeros_like(p[k]) for k in PARAMS)
    first = cell.backward(dhs.copy(), cache, weights_of(p), grads, dstate_n=dstate_n)
    once = [g.copy() for g in grads]
    second = cell.backward(dhs.copy(), cache, weights_of(p), grads, dstate_n=dstate_n)
    for g, g1 in zip(grads, once):
        assert rel(g, 2 * g1) <= TIGHT
    for a, b in zip(first[1], second[1]):
        assert rel(a, b) <= TIGHT
    assert (first[0] is None) == ids


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_float32_stays_float32(name, ids):
    cell = CELLS[name]
    args64 = problem(cell, 6, 3, 8, 5, ids, seed=4)
    p, x, state0, dhs, dstate_n = args64
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    args32 = ({k: f32(v) for k, v in p.items()}, x if ids else f32(x), tuple(map(f32, state0)), f32(dhs),
              tuple(map(f32, dstate_n)))
    want = run(cell, *args64, reference=True)
    for reference in (False, True):
        got = run(cell, *args32, reference=reference)
        for k, v in got.items():
            if v is not None:
                assert v.dtype == np.float32, (k, reference)
        assert_close(got, want, 1e-4)


@pytest.mark.parametrize("name", CELLS)
def test_dense_input_is_taken_in_the_parameters_dtype(name):
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 3, 2, 4, 3, False, seed=6)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    for reference in (False, True):
        got = run(cell, p32, x, state0, dhs, dstate_n, reference=reference)  # x, state, dhs in float64
        assert all(v.dtype == np.float32 for v in got.values()), reference


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", [(1, 1, 1, 2, True), (7, 1, 6, 5, True), (5, 3, 4, 3, False)])
def test_step_repeated_equals_forward(name, config):
    cell = CELLS[name]
    p, x, state0, _, _ = problem(cell, *config, seed=sum(config))
    weights = weights_of(p)
    hs, state_n, _ = cell.forward(x, weights, state0, need_cache=False)
    state = state0
    for t in range(x.shape[0]):
        state = cell.step(x[t], weights, state)
        assert rel(state[0], hs[t]) <= TIGHT
    for a, b in zip(state, state_n):
        assert rel(a, b) <= TIGHT
    assert all(s.dtype == np.float64 for s in state)


@pytest.mark.parametrize("name", CELLS)
def test_returned_state_is_not_a_view_of_hs(name):
    cell = CELLS[name]
    p, x, state0, _, _ = problem(cell, 3, 2, 4, 3, True, seed=5)
    hs, state_n, _ = cell.forward(x, weights_of(p), state0)
    last = hs[-1].copy()
    for s in state_n:
        s[...] = 0  # a caller resetting its streams
    assert np.array_equal(hs[-1], last)


def test_cells_follow_the_contract():
    for name, cell in CELLS.items():
        assert (cell.GATES, cell.STATE) == {"lstm": (4, ("h", "c")), "gru": (3, ("h",))}[name]
        for fn in ("forward", "backward", "step", "forward_reference", "backward_reference"):
            assert callable(getattr(cell, fn))
