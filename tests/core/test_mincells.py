"""The parallel-in-time cells (charrnn.core.mingru, charrnn.core.minlstm) against their oracles.

* central finite differences of a scalar loss, in float64, on random shapes (T=1, B=1, H=1 among them);
* a plain PyTorch implementation of the same equations, written here step by step, through
  autograd, on at least 20 random configurations each, to 1e-10 relative;
* the plain references (forward_reference / backward_reference), which the tuned functions (the
  whole-window products and the element-wise scan of core/scan.py) must match to rounding;
* `step`, one character at a time in constant memory, equal to the parallel form;
* `decay`, the filter's coefficient, measured from the forward pass itself.

The loss is L = sum(dhs * hs) + sum(dh_n * h_n) for random dhs and dh_n, so that backward receives
exactly dL/dhs and dL/dh_n.
"""

import numpy as np
import pytest

from charrnn.core import mingru, minlstm

from conftest import optional
from test_cells import assert_close, random_configs, rel  # the LSTM and GRU proofs' helpers

CELLS = {"mingru": mingru, "minlstm": minlstm}
PARAMS = ("w_ih", "b_ih")
TIGHT = 1e-12  # tuned against reference, float64
ORACLE = 1e-10  # against PyTorch autograd, float64
FD = 1e-6  # against central finite differences


def problem(cell, T, B, H, I, ids, seed, dtype=np.float64):
    """Random parameters, input, initial state and upstream gradients for one window."""
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    p = {"w_ih": f(cell.GATES * H, I) * 0.8, "b_ih": f(cell.GATES * H) * 0.5}
    x = rng.integers(0, I, (T, B)) if ids else f(T, B, I)
    return p, x, (f(B, H),), f(T, B, H), (f(B, H),)


def weights_of(p):
    return tuple(p[k] for k in PARAMS)


def run(cell, p, x, state0, dhs, dstate_n, reference=False, need_dx=True):
    """Forward and backward of one window: every output and gradient by name."""
    fw, bw = (cell.forward_reference, cell.backward_reference) if reference else (cell.forward, cell.backward)
    hs, state_n, cache = fw(x, weights_of(p), state0)
    out = {"hs": hs.copy(), "h_n": state_n[0]}
    grads = {k: np.zeros_like(p[k]) for k in PARAMS}
    dx, dstate0 = bw(dhs.copy(), cache, weights_of(p), tuple(grads[k] for k in PARAMS), dstate_n=dstate_n,
                     need_dx=need_dx)
    out.update({"d" + k: grads[k] for k in PARAMS})
    out["dh0"], out["dx"] = dstate0[0], dx
    return out


def loss(cell, p, x, state0, dhs, dstate_n):
    hs, state_n, _ = cell.forward_reference(x, weights_of(p), state0, need_cache=False)
    return np.sum(dhs * hs) + np.sum(dstate_n[0] * state_n[0])


def numeric_grads(cell, p, x, state0, dhs, dstate_n, eps=1e-6):
    """Central differences of `loss` for every parameter, h_0 and (dense) x entry."""
    def fd(a):
        g = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            keep = a[j]
            a[j] = keep + eps
            up = loss(cell, p, x, state0, dhs, dstate_n)
            a[j] = keep - eps
            g[j] = (up - loss(cell, p, x, state0, dhs, dstate_n)) / (2 * eps)
            a[j] = keep
        return g

    p, state0, x = {k: v.copy() for k, v in p.items()}, (state0[0].copy(),), x.copy()
    out = {"d" + k: fd(p[k]) for k in PARAMS}
    out["dh0"] = fd(state0[0])
    out["dx"] = None if x.dtype.kind in "iu" else fd(x)
    return out


def gradients_of(out):
    return {k: v for k, v in out.items() if k.startswith("d")}


FD_CONFIGS = [(1, 1, 1, 2, True), (1, 1, 2, 2, False), (3, 1, 2, 2, True), (2, 3, 3, 2, False)] + random_configs(4, 5)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", FD_CONFIGS)
@pytest.mark.parametrize("reference", [False, True], ids=["tuned", "reference"])
def test_gradients_match_finite_differences(name, config, reference):
    cell = CELLS[name]
    args = problem(cell, *config, seed=sum(config))
    assert_close(gradients_of(run(cell, *args, reference=reference)), numeric_grads(cell, *args), FD)


@pytest.mark.parametrize("name", CELLS)
def test_finite_differences_catch_a_broken_gradient(name):
    cell = CELLS[name]
    args = problem(cell, 3, 2, 2, 3, False, seed=11)
    analytic, numeric = gradients_of(run(cell, *args)), numeric_grads(cell, *args)
    assert_close(analytic, numeric, FD)
    analytic["dw_ih"][1, 0] += 1e-4 * np.abs(analytic["dw_ih"]).max()
    with pytest.raises(AssertionError, match="dw_ih"):
        assert_close(analytic, numeric, FD)


# ---- the plain PyTorch implementation of the paper's equations, one step at a time


def torch_equations(name, torch, w, b, x, h):
    """The layer over x (T, B, I) from h (B, H), written from the equations: (hs, h_T)."""
    H = h.shape[1]
    hs = []
    for t in range(x.shape[0]):
        pre = x[t] @ w.T + b
        if name == "mingru":
            z = torch.sigmoid(pre[:, :H])
            h_cand = pre[:, H:]
            h = (1 - z) * h + z * h_cand
        else:
            f = torch.sigmoid(pre[:, :H])
            i = torch.sigmoid(pre[:, H : 2 * H])
            h_cand = pre[:, 2 * H :]
            h = f / (f + i) * h + i / (f + i) * h_cand
        hs.append(h)
    return torch.stack(hs), h


def torch_run(name, p, x, state0, dhs, dstate_n):
    """The same window through PyTorch autograd, float64."""
    torch = optional("torch")

    ids = x.dtype.kind in "iu"
    I = p["w_ih"].shape[1]
    w, b = (torch.from_numpy(p[k].copy()).requires_grad_() for k in PARAMS)
    tx = torch.nn.functional.one_hot(torch.from_numpy(x), I).double() if ids else torch.from_numpy(x.copy())
    tx.requires_grad_(not ids)
    h0 = torch.from_numpy(state0[0].copy()).requires_grad_()
    hs, h_n = torch_equations(name, torch, w, b, tx, h0)
    ((hs * torch.from_numpy(dhs)).sum() + (h_n * torch.from_numpy(dstate_n[0])).sum()).backward()
    return {"hs": hs.detach().numpy(), "h_n": h_n.detach().numpy(), "dw_ih": w.grad.numpy(), "db_ih": b.grad.numpy(),
            "dh0": h0.grad.numpy(), "dx": None if ids else tx.grad.numpy()}


@pytest.mark.torch
@pytest.mark.parametrize("name", CELLS)
def test_matches_a_plain_pytorch_implementation_through_autograd(name):
    cell = CELLS[name]
    configs = [(1, 1, 1, 2, True), (1, 1, 1, 2, False)] + random_configs(22, seed=len(name) + 40)
    for k, config in enumerate(configs):
        args = problem(cell, *config, seed=200 + k)
        want = torch_run(name, *args)
        for reference in (False, True):
            try:
                assert_close(run(cell, *args, reference=reference), want, ORACLE)
            except AssertionError as e:
                raise AssertionError(f"{name} {config} reference={reference}: {e}") from None


@pytest.mark.torch
@pytest.mark.parametrize("name", CELLS)
def test_pytorch_comparison_catches_a_broken_gradient(name):
    cell = CELLS[name]
    args = problem(cell, 5, 3, 4, 3, False, seed=7)
    got, want = run(cell, *args), torch_run(name, *args)
    assert_close(got, want, ORACLE)
    got["db_ih"][1] *= 1 + 1e-8
    with pytest.raises(AssertionError, match="db_ih"):
        assert_close(got, want, ORACLE)


# ---- the tuned path against its reference, dtypes, step and decay


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", [(1, 1, 1, 2, True), (1, 4, 3, 2, False), (64, 3, 5, 4, True)]
                         + random_configs(6, seed=3))
def test_tuned_matches_reference(name, config):
    cell = CELLS[name]
    args = problem(cell, *config, seed=sum(config) + 1)
    assert_close(run(cell, *args), run(cell, *args, reference=True), TIGHT)
    p, x, state0, dhs, _ = args  # without a gradient at the final state, and without dx
    got = run(cell, p, x, state0, dhs, None, need_dx=False)
    assert got["dx"] is None
    assert_close(got, run(cell, p, x, state0, dhs, None, reference=True, need_dx=False), TIGHT)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_backward_adds_and_leaves_its_inputs_as_they_were(name, ids):
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = problem(cell, 4, 3, 5, 4, ids, seed=9)
    _, _, cache = cell.forward(x, weights_of(p), state0)
    keep = dhs.copy()
    grads = tuple(np.zeros_like(p[k]) for k in PARAMS)
    first = cell.backward(dhs, cache, weights_of(p), grads, dstate_n=dstate_n)
    once = [g.copy() for g in grads]
    second = cell.backward(dhs, cache, weights_of(p), grads, dstate_n=dstate_n)
    assert np.array_equal(dhs, keep)
    for g, g1 in zip(grads, once):
        assert rel(g, 2 * g1) <= TIGHT
    assert rel(first[1][0], second[1][0]) <= TIGHT and (first[0] is None) == ids


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_float32_stays_float32(name, ids):
    cell = CELLS[name]
    p, x, state0, dhs, dstate_n = args64 = problem(cell, 6, 3, 8, 5, ids, seed=4)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    args32 = ({k: f32(v) for k, v in p.items()}, x if ids else f32(x), (f32(state0[0]),), f32(dhs), (f32(dstate_n[0]),))
    want = run(cell, *args64, reference=True)
    for reference in (False, True):
        got = run(cell, *args32, reference=reference)
        assert all(v.dtype == np.float32 for v in got.values() if v is not None), reference
        assert_close(got, want, 1e-4)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("config", [(1, 1, 1, 2, True), (9, 1, 6, 5, True), (5, 3, 4, 3, False)])
def test_step_repeated_equals_the_parallel_form(name, config):
    cell = CELLS[name]
    p, x, state0, _, _ = problem(cell, *config, seed=21)
    hs, state_n, _ = cell.forward(x, weights_of(p), state0, need_cache=False)
    state = state0
    for t in range(x.shape[0]):
        state = cell.step(x[t], weights_of(p), state)
        assert len(state) == 1 and state[0].shape == state0[0].shape  # one (B, H) state, whatever the length
        assert rel(state[0], hs[t]) <= TIGHT
    assert rel(state[0], state_n[0]) <= TIGHT


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [True, False])
def test_decay_is_the_factor_the_previous_state_is_multiplied_by(name, ids):
    """h_1 is affine in h_0 with slope `decay`: measured from two forward passes, not from the
    cell's own formula; and the gates the diagnostics read are the ones the equations use."""
    cell = CELLS[name]
    p, x, state0, _, _ = problem(cell, 1, 6, 5, 4, ids, seed=8)
    zero = np.zeros_like(state0[0])
    h1, h1_zero = (cell.forward(x, weights_of(p), s, need_cache=False)[0][0] for s in (state0, (zero,)))
    a = cell.decay(x[0], weights_of(p), state0)
    assert a.shape == state0[0].shape and np.all((a > 0) & (a < 1))
    assert rel(h1 - h1_zero, a * state0[0]) <= TIGHT
    acts = cell.gate_activations(x[0], weights_of(p), state0)
    assert acts.shape == (6, cell.GATES, 5)
    assert np.all((acts[:, :len(cell.SIGMOID_GATES)] > 0) & (acts[:, :len(cell.SIGMOID_GATES)] < 1))
