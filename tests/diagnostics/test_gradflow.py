"""Gradient flow through time: exact against PyTorch autograd, and the textbook decay r^k."""

import numpy as np
import pytest

from charrnn.diagnostics import gradflow
from charrnn.diagnostics.impulse import matrix_impulse, scalar_impulse
from charrnn.errors import ConfigError
from charrnn.model import CharRNN, layer_names, orthogonal
from charrnn.model.params import HEAD_BIAS, HEAD_WEIGHT, norm_names
from conftest import optional

torch = optional("torch")
pytestmark = pytest.mark.torch


def torch_state_gradients(model, ids, max_lag):
    """dL_t/dh^l_s by autograd: every layer's h_s gets a zero probe added, and each target's loss
    is differentiated with respect to all probes. Returns vectors[l] (T-K, K+1, H)."""
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in model.params.items()}
    V, H, L, T = model.vocab_size, model.hidden_size, model.num_layers, len(ids) - 1
    cells = []
    for l in range(L):
        cls = getattr(torch.nn, model.cell_module.TORCH_MODULE + "Cell")  # nn.RNNCell, nn.LSTMCell, nn.GRUCell
        c = cls(V if l == 0 else H, H).double()
        c.load_state_dict({n.split(".")[1].rsplit("_l", 1)[0]: p[n] for n in layer_names(model.cell, l)})
        cells.append(c)
    probes = [[torch.zeros(1, H, dtype=torch.float64, requires_grad=True) for _ in range(T)] for _ in range(L)]
    state = [(torch.zeros(1, H, dtype=torch.float64),) * len(model.state_parts) for _ in range(L)]
    losses = []
    for s in range(T):
        x = torch.nn.functional.one_hot(torch.tensor([int(ids[s])]), V).double()
        for l in range(L):
            u = x
            if model.layer_norm and l > 0:  # the stack's options (model/stack.py)
                u = torch.nn.functional.layer_norm(x, (H,), *(p[n] for n in norm_names(l)))
            out = cells[l](u, state[l] if model.cell == "lstm" else state[l][0])
            h, rest = (out[0], out[1:]) if model.cell == "lstm" else (out, ())
            h = h + probes[l][s]
            state[l] = (h, *rest)
            x = x + h if model.residual and l > 0 else h
        if model.layer_norm:
            x = torch.nn.functional.layer_norm(x, (H,), *(p[n] for n in norm_names("out")))
        logits = x @ p[HEAD_WEIGHT].T + p[HEAD_BIAS]
        losses.append(torch.nn.functional.cross_entropy(logits, torch.tensor([int(ids[s + 1])])))
    K = max_lag
    out = [np.zeros((T - K, K + 1, H)) for _ in range(L)]
    for j, t in enumerate(range(K, T)):
        flat = [probes[l][t - k] for l in range(L) for k in range(K + 1)]
        grads = torch.autograd.grad(losses[t], flat, allow_unused=True, retain_graph=True)
        for i, g in enumerate(grads):
            l, k = divmod(i, K + 1)
            if g is not None:
                out[l][j, k] = g.numpy()[0]
    return out


@pytest.mark.parametrize("options", [{}, dict(residual=True, layer_norm=True), dict(residual=True),
                                     dict(layer_norm=True)], ids=["plain", "both", "residual", "layer_norm"])
@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("rnn", 2), ("lstm", 2), ("gru", 2), ("lstm", 1), ("gru", 3)])
def test_state_gradients_match_autograd(cell, layers, options):
    rng = np.random.default_rng(5)
    model = CharRNN(7, 6, layers, dtype="float64", seed=3, cell=cell, **options)
    for name, a in model.params.items():  # norms away from their identity start
        if name.startswith("norm_"):
            a[...] = rng.uniform(0.5, 1.5, a.shape) if name.endswith("weight") else rng.uniform(-0.5, 0.5, a.shape)
    ids = rng.integers(0, 7, size=13)
    traj = gradflow.run_trajectory(model, ids)
    K = 5
    norms, vectors = gradflow.state_gradients(model, traj, K, keep=True)
    expected = torch_state_gradients(model, ids, K)
    for l in range(layers):
        np.testing.assert_allclose(vectors[l], expected[l], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(norms[l], np.linalg.norm(expected[l], axis=2), rtol=1e-10, atol=1e-13)
        assert np.all(norms[l][:, 0] > 0)


def test_orthogonal_linear_regime_decays_by_r_per_lag():
    """tanh RNN with W = r Q, tiny inputs and biases: dh_{s-1} = W^T diag(1 - h^2) dh_s ~ r Q^T dh_s."""
    H, V, r = 32, 5, 0.8
    model = CharRNN(V, H, 1, dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    w_ih, w_hh, b_ih, b_hh = layer_names("rnn", 0)
    model.params[w_hh][...] = r * orthogonal(H, rng)
    model.params[w_ih][...] = 1e-5 * rng.standard_normal((H, V))
    model.params[b_ih][...] = 0.0
    model.params[b_hh][...] = 0.0
    ids = rng.integers(0, V, size=61)
    diag = gradflow.diagnose(model, ids, max_lag=30)
    g = np.array(diag.layers[0].grad_norm_by_lag)
    np.testing.assert_allclose(g[1:] / g[:-1], r, rtol=1e-8)
    assert diag.layers[0].decay_per_step == pytest.approx(r, rel=1e-8)
    assert diag.layers[0].spectral_radius == pytest.approx(r, rel=1e-9)
    assert diag.layers[0].singular_values == pytest.approx([r, r], rel=1e-9)
    # the Jacobian diag(1 - h^2) W has norm r to within the tiny h^2
    assert diag.layers[0].jacobian_norm["max"] == pytest.approx(r, rel=1e-8)
    # 0.8^k < 0.01 first at k = 21
    assert diag.layers[0].effective_memory == 21
    assert diag.layers[0].verdict == "vanishing"
    assert diag.layers[0].saturation["all"] == 0.0


def test_exploding_and_healthy_verdicts():
    H, V = 16, 4
    rng = np.random.default_rng(2)
    for r, verdict in ((1.1, "exploding"), (0.995, "healthy")):
        model = CharRNN(V, H, 1, dtype="float64", seed=0)
        w_ih, w_hh, b_ih, b_hh = layer_names("rnn", 0)
        model.params[w_hh][...] = r * orthogonal(H, rng)
        model.params[w_ih][...] *= 1e-6
        model.params[b_ih][...] = 0.0
        model.params[b_hh][...] = 0.0
        diag = gradflow.diagnose(model, rng.integers(0, V, size=40), max_lag=20)
        assert diag.layers[0].verdict == verdict
        assert verdict in diag.reading()[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_jacobian_is_the_derivative_of_step(cell):
    """The Jacobian from the cell's backward against central differences of the cell's step."""
    model = CharRNN(5, 4, 2, dtype="float64", seed=1, cell=cell)
    ids = np.random.default_rng(0).integers(0, 5, size=6)
    traj = gradflow.run_trajectory(model, ids)
    for l in range(2):
        J = gradflow.state_jacobian(model, traj, l, 3)
        state = traj.states[l][3]
        flat = np.concatenate([p[0] for p in state])
        H = model.hidden_size
        num = np.zeros_like(J)
        eps = 1e-6
        for i in range(flat.size):
            outs = []
            for sign in (1, -1):
                f = flat.copy()
                f[i] += sign * eps
                st = tuple(f[k * H : (k + 1) * H][None] for k in range(len(state)))
                new = model.cell_module.step(traj.inputs[l][3], gradflow.layer_params(model.cell_module, model.params, l), st)
                outs.append(np.concatenate([np.asarray(p)[0] for p in new]))
            num[:, i] = (outs[0] - outs[1]) / (2 * eps)
        np.testing.assert_allclose(J, num, atol=1e-8)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gate_activations_reproduce_the_cell(cell):
    model = CharRNN(6, 5, 2, dtype="float64", seed=2, cell=cell)
    ids = np.random.default_rng(1).integers(0, 6, size=9)
    traj = gradflow.run_trajectory(model, ids)
    for l in range(2):
        a = gradflow.gate_activations(model, traj, l)
        h = np.concatenate([traj.states[l][s + 1][0] for s in range(8)])
        hp = np.concatenate([traj.states[l][s][0] for s in range(8)])
        if cell == "lstm":
            cp = np.concatenate([traj.states[l][s][1] for s in range(8)])
            c = a[:, 1] * cp + a[:, 0] * a[:, 2]
            np.testing.assert_allclose(h, a[:, 3] * np.tanh(c), rtol=1e-12)
        else:
            np.testing.assert_allclose(h, (1 - a[:, 1]) * a[:, 2] + a[:, 1] * hp, rtol=1e-12)


def test_lag_longer_than_text_is_refused():
    model = CharRNN(4, 3, 1, dtype="float64")
    traj = gradflow.run_trajectory(model, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ConfigError, match="a lag of 4 needs a text of at least 6 characters; this one has 5"):
        gradflow.state_gradients(model, traj, 4)


def test_float32_model_matches_float64():
    model = CharRNN(6, 8, 1, dtype="float32", seed=4, cell="gru")
    m64 = CharRNN(6, 8, 1, dtype="float64", seed=4, cell="gru",
                  params={k: v.astype(np.float64) for k, v in model.params.items()})
    ids = np.random.default_rng(3).integers(0, 6, size=30)
    a = gradflow.diagnose(model, ids, 10).layers[0].grad_norm_by_lag
    b = gradflow.diagnose(m64, ids, 10).layers[0].grad_norm_by_lag
    np.testing.assert_allclose(a, b, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# the impulse response


@pytest.mark.parametrize("w", [0.5, -0.5, 2.0, -0.25, 1.0, 0.0])
def test_impulse_is_w_to_the_t_exactly(w):
    imp = scalar_impulse(w, 40)
    assert imp.values.tolist() == [w**t for t in range(41)]
    assert imp.envelope.tolist() == [abs(w) ** t for t in range(41)]


def test_impulse_of_the_seed():
    imp = scalar_impulse(-0.9, 60)
    assert imp.values[:4].tolist() == [1.0, -0.9, 0.81, pytest.approx(-0.729, abs=3e-16)]
    # repeated multiplication and pow round differently: equal to within a few ulp
    np.testing.assert_allclose(imp.values, (-0.9) ** np.arange(61), rtol=1e-14)


def test_matrix_impulse_orthogonal_follows_r_to_the_t():
    imp = matrix_impulse(64, 0.95, 50, gaussian=False, seed=3)
    np.testing.assert_allclose(imp.values, 0.95 ** np.arange(51), rtol=1e-12)
    np.testing.assert_allclose(imp.random, 0.95 ** np.arange(51), rtol=1e-12)


def test_matrix_impulse_gaussian_has_the_radius_and_transient_growth():
    imp = matrix_impulse(32, 0.95, 300, gaussian=True, seed=0)
    assert imp.values[1:10].max() > 1.5  # transient growth: |W^t| above 1 although R < 1
    rate = (imp.values[300] / imp.values[200]) ** (1 / 100)
    assert rate == pytest.approx(0.95, rel=0.02)  # and in the end the rate R
    assert np.all(imp.random <= imp.values * (1 + 1e-12))
