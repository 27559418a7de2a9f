"""The engine's proofs: finite differences, PyTorch autograd as an oracle, state carrying."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.core import rnn as rnn_cell
from charrnn.errors import ConfigError
from charrnn.gradcheck import TOLERANCE, gradcheck, random_problem
from charrnn.model import parameter_shapes


def random_configs(n, seed):
    """(V, H, L, B, T) drawn at random, always including the edge cases T=1, B=1, V=2, L=1..3."""
    rng = np.random.default_rng(seed)
    fixed = [(2, 3, 1, 1, 1), (2, 1, 2, 1, 4), (5, 4, 3, 2, 1), (3, 5, 3, 1, 3)]
    drawn = [
        (int(rng.integers(2, 9)), int(rng.integers(1, 8)), int(rng.integers(1, 4)),
         int(rng.integers(1, 5)), int(rng.integers(1, 7)))
        for _ in range(n - len(fixed))
    ]
    return fixed + drawn


@pytest.mark.parametrize("config", random_configs(10, seed=1))
def test_finite_differences_every_parameter_and_h0(config):
    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=sum(config))
    results = gradcheck(model, x, y, h0)
    assert {r.name for r in results} == set(model.params) | {"h0"}
    for r in results:
        assert r.checked == r.size
        assert r.max_rel_error <= TOLERANCE, (r.name, r.max_rel_error)


def test_finite_differences_detect_a_broken_backward(monkeypatch):
    model, x, y, h0 = random_problem(4, 3, 2, 2, 3, seed=3)
    real = rnn_cell.rnn_backward

    def broken(dhs, hs, h0_, w, dw):
        da, dh0 = real(dhs, hs, h0_, w, dw)
        dw *= 1.001  # a 0.1% error in dW_hh
        return da, dh0

    monkeypatch.setattr(rnn_cell, "rnn_backward", broken)
    bad = {r.name for r in gradcheck(model, x, y, h0) if not r.ok}
    assert bad == {"rnn.weight_hh_l0", "rnn.weight_hh_l1"}


def torch_reference(model, x, y, h0):
    import torch

    """The same network in PyTorch: nn.RNN + nn.Linear fed one-hot inputs, float64 autograd."""
    V, H, L = model.vocab_size, model.hidden_size, model.num_layers
    rnn = torch.nn.RNN(V, H, L, batch_first=True).double()
    head = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.copy_(torch.from_numpy(model.params["rnn." + name]))
        for name, p in head.named_parameters():
            p.copy_(torch.from_numpy(model.params["head." + name]))
    onehot = torch.nn.functional.one_hot(torch.from_numpy(x), V).double()
    th0 = torch.from_numpy(h0.copy()).requires_grad_()
    out, h_n = rnn(onehot, th0)
    loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), torch.from_numpy(y).reshape(-1))
    loss.backward()
    grads = {"rnn." + n: p.grad.numpy() for n, p in rnn.named_parameters()}
    grads |= {"head." + n: p.grad.numpy() for n, p in head.named_parameters()}
    return loss.item(), grads, h_n.detach().numpy(), th0.grad.numpy()


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("config", random_configs(24, seed=2))
def test_matches_pytorch_autograd(config, torch):
    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=100 + sum(config))
    want_loss, want_grads, want_h, want_dh0 = torch_reference(model, x, y, h0)
    loss, cache = model.forward(x, y, h0)
    h_last = cache.h_last[0]
    grads, dh0 = model.backward(cache)
    assert abs(loss - want_loss) <= 1e-10 * abs(want_loss)
    assert rel(h_last, want_h) <= 1e-10
    assert rel(dh0, want_dh0) <= 1e-10
    assert set(grads) == set(want_grads)
    for name in grads:
        assert rel(grads[name], want_grads[name]) <= 1e-10, name
    # loss_and_grads is the same computation behind the fixed API
    loss2, grads2, h_last2 = model.loss_and_grads(x, y, h0)
    assert loss2 == loss and np.array_equal(h_last2, h_last)
    assert all(np.array_equal(grads2[n], grads[n]) for n in grads)


def test_parameter_names_and_shapes_are_pytorchs(torch):
    model = CharRNN(vocab_size=11, hidden_size=6, num_layers=3)
    rnn = torch.nn.RNN(11, 6, 3)
    head = torch.nn.Linear(6, 11)
    want = {"rnn." + n: tuple(p.shape) for n, p in rnn.named_parameters()}
    want |= {"head." + n: tuple(p.shape) for n, p in head.named_parameters()}
    assert {n: p.shape for n, p in model.params.items()} == want
    assert parameter_shapes(11, 6, 3) == want


def test_carrying_the_state_equals_one_long_forward():
    rng = np.random.default_rng(7)
    model = CharRNN(9, 8, 2, dtype="float64", seed=3)
    x = rng.integers(0, 9, size=(3, 12))
    y = rng.integers(0, 9, size=(3, 12))
    whole, _, h_whole = model.loss_and_grads(x, y)
    first, _, h_mid = model.loss_and_grads(x[:, :5], y[:, :5])
    second, _, h_end = model.loss_and_grads(x[:, 5:], y[:, 5:], h_mid)
    assert np.isclose((5 * first + 7 * second) / 12, whole, rtol=1e-13)
    assert np.allclose(h_end, h_whole, rtol=0, atol=1e-14)
    # and not carrying it gives a different answer, so the test could fail
    fresh, _, _ = model.loss_and_grads(x[:, 5:], y[:, 5:])
    assert not np.isclose(fresh, second, rtol=1e-6)


def test_logits_and_step_agree_with_the_training_forward():
    rng = np.random.default_rng(8)
    model = CharRNN(6, 5, 2, dtype="float64", seed=1)
    x = rng.integers(0, 6, size=(2, 7))
    logits, h_last = model.logits(x)
    h = None
    for t in range(7):
        step_logits, h = model.step(x[:, t], h)
        assert np.allclose(step_logits, logits[:, t], atol=1e-13)
    assert np.allclose(h, h_last, atol=1e-14)
    # the loss recomputed from the logits is the training loss
    y = rng.integers(0, 6, size=(2, 7))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(lp, y[..., None], -1).mean()
    assert np.isclose(nll, model.forward(x, y)[0], rtol=1e-13)


def test_float32_default_and_float64_on_request():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 7, size=(2, 5))
    m32 = CharRNN(7, 6)
    assert all(p.dtype == np.float32 for p in m32.params.values())
    loss32, g32, h32 = m32.loss_and_grads(x, x)
    assert all(g.dtype == np.float32 for g in g32.values()) and h32.dtype == np.float32
    m64 = CharRNN(7, 6, dtype="float64")
    assert all(p.dtype == np.float64 for p in m64.params.values())
    for name in m32.params:  # the same seed draws the same weights
        assert np.allclose(m32.params[name], m64.params[name], atol=1e-7)
    assert np.isclose(loss32, m64.loss_and_grads(x, x)[0], rtol=1e-5)


def test_inits():
    H = 64
    pt = CharRNN(10, H, init="pytorch", seed=0).params
    assert all(np.abs(p).max() <= 1 / np.sqrt(H) for p in pt.values())
    orth = CharRNN(10, H, 2, init="orthogonal", dtype="float64", seed=0).params
    for k in range(2):
        w = orth[f"rnn.weight_hh_l{k}"]
        assert np.allclose(w @ w.T, np.eye(H), atol=1e-12)
        assert not np.any(orth[f"rnn.bias_ih_l{k}"])
    small = CharRNN(10, H, init="normal", dtype="float64", seed=0).params
    assert 0.008 < small["rnn.weight_hh_l0"].std() < 0.012 and not np.any(small["head.bias"])
    with pytest.raises(ConfigError):
        CharRNN(10, H, init="xavier")
    # seeds are explicit: the same seed gives the same model, another seed another model
    a, b, c = CharRNN(5, 4, seed=1), CharRNN(5, 4, seed=1), CharRNN(5, 4, seed=2)
    assert all(np.array_equal(a.params[n], b.params[n]) for n in a.params)
    assert not np.array_equal(a.params["head.weight"], c.params["head.weight"])


def test_params_are_live():
    model = CharRNN(4, 3, dtype="float64")
    x = np.array([[0, 1, 2]])
    before = model.loss_and_grads(x, x)[0]
    model.params["head.bias"][0] += 1.0
    assert model.loss_and_grads(x, x)[0] != before


@pytest.mark.parametrize(
    "kwargs",
    [dict(vocab_size=1, hidden_size=4), dict(vocab_size=5, hidden_size=0), dict(vocab_size=5, hidden_size=4,
     num_layers=0), dict(vocab_size=5, hidden_size=4, dtype="float16"), dict(vocab_size=5, hidden_size=2.5),
     dict(vocab_size=10**6, hidden_size=10**5)],
)
def test_bad_model_arguments(kwargs):
    with pytest.raises(ConfigError):
        CharRNN(**kwargs)


def test_bad_window_arguments():
    model = CharRNN(5, 4, num_layers=2)
    ok = np.zeros((2, 3), dtype=int)
    for inputs, targets, h0 in [
        (np.zeros((2, 3), dtype=float), ok, None),
        (np.full((2, 3), 5), ok, None),
        (np.full((2, 3), -1), ok, None),
        (np.zeros(3, dtype=int), np.zeros(3, dtype=int), None),
        (ok, np.zeros((2, 4), dtype=int), None),
        (ok, ok, np.zeros((1, 2, 4))),
    ]:
        with pytest.raises(ConfigError):
            model.loss_and_grads(inputs, targets, h0)
