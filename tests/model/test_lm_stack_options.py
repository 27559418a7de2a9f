"""The layer stack's options (--residual, --layer-norm) for every registered cell: finite
differences, a plain PyTorch implementation of the same stack under autograd, the tuned path
against the reference, worker shards against one worker, generation against the window."""

import numpy as np
import pytest

from charrnn import CharRNN, threads
from charrnn.core import cell_names, tuning
from charrnn.core.dropout import dropout_mask
from charrnn.errors import ConfigError
from charrnn.gradcheck import TOLERANCE, gradcheck, random_problem
from charrnn.model import count_parameters, parameter_shapes, reference_loss_and_grads
from charrnn.model.params import norm_names
from conftest import parts, torch_twin_class
from test_model_cells import assert_agrees_with, rel  # the cells' proofs' helpers

CELLS = cell_names()  # every registered cell
OPTIONS = [dict(residual=True), dict(layer_norm=True), dict(residual=True, layer_norm=True)]
OPTION_IDS = ["residual", "layer_norm", "both"]


def random_configs(n, seed):
    """(V, H, L, B, T): L = 1..3 and T = 1, B = 1 among them, then random ones."""
    rng = np.random.default_rng(seed)
    fixed = [(3, 4, 3, 2, 1), (2, 3, 2, 1, 4), (4, 2, 1, 2, 3)]
    return fixed + [(int(rng.integers(2, 8)), int(rng.integers(2, 7)), int(rng.integers(1, 4)),
                     int(rng.integers(1, 4)), int(rng.integers(1, 6))) for _ in range(n - len(fixed))]


def rewound(model):
    """A generator at the model's dropout generator's state: the masks its next window draws."""
    bg = np.random.PCG64()
    bg.state = model.dropout_rng.bit_generator.state
    return np.random.Generator(bg)


def torch_stack_loss(model, x, y, h0, masks, torch):
    """The stack of model/stack.py written plainly in PyTorch, float64: one torch module per layer,
    F.layer_norm, the residual sum, charrnn's dropout masks. Returns (loss, grads, final state, dstate0)."""
    F = torch.nn.functional
    V, H, L = model.vocab_size, model.hidden_size, model.num_layers
    p = {n: torch.from_numpy(a.copy()).requires_grad_() for n, a in model.params.items()}
    state = [torch.from_numpy(np.array(s)).requires_grad_() for s in parts(h0)]
    x_k = F.one_hot(torch.from_numpy(x.T.copy()), V).double()  # (T, B, V)
    finals = []
    for k in range(L):
        layer = torch_twin_class(model.cell)(V if k == 0 else H, H, 1).double()
        names = [n for n, _ in layer.named_parameters()]
        weights = {n: p[f"rnn.{n[:-1]}{k}"] for n in names}
        u = x_k
        if model.layer_norm and k > 0:
            w, b = norm_names(k)
            u = F.layer_norm(x_k, (H,), p[w], p[b], eps=1e-5)
        s0 = tuple(s[k : k + 1] for s in state)
        h, s_n = torch.func.functional_call(layer, weights, (u, s0 if len(s0) > 1 else s0[0]))
        finals.append(s_n if isinstance(s_n, tuple) else (s_n,))
        if masks is not None:
            h = h * torch.from_numpy(masks[k])
        x_k = x_k + h if model.residual and k > 0 else h
    top = x_k
    if model.layer_norm:
        w, b = norm_names("out")
        top = F.layer_norm(top, (H,), p[w], p[b], eps=1e-5)
    logits = top @ p["head.weight"].T + p["head.bias"]
    loss = F.cross_entropy(logits.reshape(-1, V), torch.from_numpy(y.T.copy()).reshape(-1))
    loss.backward()
    grads = {n: t.grad.numpy() for n, t in p.items()}
    h_n = tuple(torch.cat([f[i] for f in finals]).detach().numpy() for i in range(len(state)))
    return loss.item(), grads, h_n, tuple(s.grad.numpy() for s in state)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", random_configs(5, seed=21))
def test_matches_plain_pytorch_with_dropout(config, cell, options, torch):
    V, H, L, B, T = config
    p = 0.3
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=400 + sum(config), cell=cell, dropout=p, **options)
    rng = rewound(model)
    masks = [dropout_mask(rng, (T, B, H), p, np.float64) for _ in range(L)]
    assert_agrees_with(model, x, y, h0, torch_stack_loss(model, x, y, h0, masks, torch))


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("L", [1, 2, 3])
def test_finite_differences_with_dropout(L, cell, options):
    model, x, y, h0 = random_problem(3, 3, L, 2, 3, seed=7 + L, cell=cell, dropout=0.3, **options)
    # a layer norm over 3 units curves sharply where their variance is small: the default step of
    # 1e-3 leaves a truncation error of ~1e-6 there, 1e-4 one of ~1e-9
    # 1e-4 one of ~1e-9; its rounding error (~1e-16 / 1e-4) then bounds the absolute error, which
    # decides for gradients too small (~1e-6) for the relative one to mean anything
    results = gradcheck(model, x, y, h0, step=1e-4)
    assert {r.name for r in results} == set(model.params) | {f"{p}0" for p in model.state_parts}
    for r in results:
        assert r.checked == r.size and (r.max_rel_error <= TOLERANCE or r.max_abs_error <= 1e-10), r


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("cell", CELLS)
def test_tuned_matches_the_reference(cell, options):
    for config in random_configs(4, seed=22):
        V, H, L, B, T = config
        model, x, y, h0 = random_problem(V, H, L, B, T, seed=500 + sum(config), cell=cell, dropout=0.25, **options)
        rng = rewound(model)
        loss, grads, h_last = model.loss_and_grads(x, y, h0)
        want_loss, want_grads, want_h, _ = reference_loss_and_grads(model, x, y, h0, dropout_rng=rng)
        assert abs(loss - want_loss) <= 1e-12 * abs(want_loss)
        assert all(rel(a, b) <= 1e-12 for a, b in zip(parts(h_last), parts(want_h)))
        for name in grads:
            assert rel(grads[name], want_grads[name]) <= 1e-12, (config, name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-11), ("float32", 2e-5)])
def test_two_worker_shards_equal_one_worker(cell, dtype, rtol, monkeypatch):
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK", 1)
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK_COMPILED", 1)
    V, H, L, B, T = 9, 5, 3, 6, 4
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    out = {}
    for n in (1, 2):
        monkeypatch.setattr(threads, "workers", lambda: n)
        model = CharRNN(V, H, L, dtype, seed=3, cell=cell, dropout=0.3, residual=True, layer_norm=True)
        assert model.workers_for(B) == n
        loss, grads, h_last = model.loss_and_grads(x, y)
        ev, _ = model.loss(x, y)
        out[n] = loss, grads, parts(h_last), ev, model.dropout_rng.random()
    (loss1, g1, h1, ev1, after1), (loss2, g2, h2, ev2, after2) = out[1], out[2]
    assert loss2 == pytest.approx(loss1, rel=rtol) and ev2 == pytest.approx(ev1, rel=rtol)
    for name in g1:
        np.testing.assert_allclose(g2[name], g1[name], rtol=rtol, atol=rtol * np.abs(g1[name]).max(), err_msg=name)
    for a, b in zip(h2, h1):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert after1 == after2  # the same masks drawn


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("cell", CELLS)
def test_generation_equals_the_window(cell, options):
    model, x, _, h0 = random_problem(6, 5, 3, 3, 7, seed=4, cell=cell, **options)
    logits, h_last = model.logits(x, h0)
    stepper = model.stepper(3, h0)
    for t in range(x.shape[1]):
        np.testing.assert_allclose(stepper(x[:, t]), logits[:, t], rtol=1e-12, atol=1e-12)
    for a, b in zip(parts(stepper.h), parts(h_last)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    one, _ = model.step(x[:, 0], h0)
    np.testing.assert_allclose(one, logits[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_options_change_the_model_and_default_off(cell):
    """Each option changes what the stack computes (from layer 1 up); off, the model is the one
    without them, parameter for parameter."""
    V, H, L = 5, 4, 2
    plain = CharRNN(V, H, L, "float64", seed=2, cell=cell)
    assert (plain.residual, plain.layer_norm) == (False, False)
    assert list(plain.params) == list(parameter_shapes(V, H, L, cell))
    x = np.random.default_rng(0).integers(0, V, (2, 6))
    base, _ = plain.logits(x)
    for options in OPTIONS:
        m = CharRNN(V, H, L, "float64", seed=2, cell=cell, **options)
        shapes = parameter_shapes(V, H, L, cell, layer_norm=m.layer_norm)
        assert list(m.params) == list(shapes) and m.num_parameters == count_parameters(V, H, L, cell,
                                                                                     layer_norm=m.layer_norm)
        for name in plain.params:  # the same draws for the layers and the head
            assert np.array_equal(m.params[name], plain.params[name]), name
        extra = set(m.params) - set(plain.params)
        assert extra == ({*norm_names(1), *norm_names("out")} if m.layer_norm else set())
        for name in extra:  # nn.LayerNorm's initialisation
            assert np.all(m.params[name] == (1.0 if name.endswith("weight") else 0.0))
        assert not np.allclose(m.logits(x)[0], base)
        assert m.config["residual"] == m.residual and m.config["layer_norm"] == m.layer_norm


def test_one_layer_residual_is_the_plain_model():
    """Layer 0 reads the characters: a residual has nothing to add to in a one-layer stack."""
    x = np.random.default_rng(0).integers(0, 5, (2, 6))
    a = CharRNN(5, 4, 1, "float64", seed=2, cell="lstm")
    b = CharRNN(5, 4, 1, "float64", seed=2, cell="lstm", residual=True)
    assert np.array_equal(a.logits(x)[0], b.logits(x)[0])


def test_bad_options_are_refused():
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="residual must be (true|True) or (false|False)"):
            CharRNN(4, 3, residual=bad)
        with pytest.raises(ConfigError, match="layer_norm must be (true|True) or (false|False)"):
            CharRNN(4, 3, layer_norm=bad)


def test_files_keep_the_options_and_old_files_load(tmp_path):
    from conftest import rewrite_metadata

    m = CharRNN(6, 4, 2, "float64", seed=1, cell="gru", residual=True, layer_norm=True)
    m.save(tmp_path / "m.safetensors")
    back = CharRNN.load(tmp_path / "m.safetensors")
    assert (back.residual, back.layer_norm) == (True, True) and back.params.keys() == m.params.keys()
    x = np.random.default_rng(0).integers(0, 6, (2, 5))
    assert np.array_equal(back.logits(x)[0], m.logits(x)[0])
    # a file of before the options: no keys, no norms; loads as the plain stack it is
    old = CharRNN(6, 4, 2, "float64", seed=1, cell="gru")
    old.save(tmp_path / "old.safetensors")

    def strip(meta):
        del meta["model"]["residual"], meta["model"]["layer_norm"]

    rewrite_metadata(tmp_path / "old.safetensors", strip)
    loaded = CharRNN.load(tmp_path / "old.safetensors")
    assert (loaded.residual, loaded.layer_norm) == (False, False)
    assert np.array_equal(loaded.logits(x)[0], old.logits(x)[0])
