"""Every registered cell through the whole model: finite differences, PyTorch autograd as
an oracle, tuned against reference, dropout against PyTorch with the same masks, generation,
files. tests/test_engine.py holds the tanh RNN's own, older proofs."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.core import cell_names
from charrnn.core.dropout import dropout_mask
from charrnn.errors import ConfigError
from charrnn.gradcheck import TOLERANCE, gradcheck, random_problem
from charrnn.model import parameter_shapes, reference_loss_and_grads, reference_step
from conftest import parts, torch_twin_class

CELLS = cell_names()  # the built-in cells, as registered when the tests are collected



def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def random_configs(n, seed):
    """(V, H, L, B, T): the edge cases T=1, B=1, V=2 and L=1..3 first, then random ones."""
    rng = np.random.default_rng(seed)
    fixed = [(2, 3, 1, 1, 1), (2, 1, 2, 1, 4), (5, 4, 3, 2, 1), (3, 5, 3, 1, 3)]
    return fixed + [
        (int(rng.integers(2, 9)), int(rng.integers(1, 8)), int(rng.integers(1, 4)),
         int(rng.integers(1, 5)), int(rng.integers(1, 7)))
        for _ in range(n - len(fixed))
    ]


def torch_twin(model):
    import torch

    """nn.RNN / nn.LSTM / nn.GRU + nn.Linear in float64 holding the model's parameters."""
    V, H, L = model.vocab_size, model.hidden_size, model.num_layers
    rnn = torch_twin_class(model.cell)(V, H, L, batch_first=True).double()
    head = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        for prefix, module in (("rnn.", rnn), ("head.", head)):
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(model.params[prefix + name]))
    return rnn, head


def torch_loss_and_grads(model, x, y, h0):
    import torch

    rnn, head = torch_twin(model)
    V = model.vocab_size
    onehot = torch.nn.functional.one_hot(torch.from_numpy(x), V).double()
    state = [torch.from_numpy(np.array(p)).requires_grad_() for p in parts(h0)]
    out, h_n = rnn(onehot, tuple(state) if model.cell == "lstm" else state[0])
    loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), torch.from_numpy(y).reshape(-1))
    loss.backward()
    grads = {"rnn." + n: p.grad.numpy() for n, p in rnn.named_parameters()}
    grads |= {"head." + n: p.grad.numpy() for n, p in head.named_parameters()}
    h_n = tuple(t.detach().numpy() for t in parts(h_n))
    return loss.item(), grads, h_n, tuple(s.grad.numpy() for s in state)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", random_configs(20, seed=12))
def test_matches_pytorch_autograd(cell, config, torch):
    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=200 + sum(config), cell=cell)
    assert_agrees_with(model, x, y, h0, torch_loss_and_grads(model, x, y, h0))


def assert_agrees_with(model, x, y, h0, want):
    """One training window's loss, final state, dL/dstate0 and gradients, each within 1e-10
    relative of `want` (loss, grads, final state parts, dstate0 parts), computed elsewhere."""
    want_loss, want_grads, want_h, want_dh0 = want
    loss, cache = model.forward(x, y, h0)
    grads, dh0 = model.backward(cache)
    assert abs(loss - want_loss) <= 1e-10 * abs(want_loss)
    assert all(rel(a, b) <= 1e-10 for a, b in zip(cache.h_last, want_h))
    assert all(rel(a, b) <= 1e-10 for a, b in zip(parts(dh0), want_dh0))
    assert set(grads) == set(want_grads)
    for name in grads:
        assert rel(grads[name], want_grads[name]) <= 1e-10, name


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", random_configs(6, seed=13))
def test_finite_differences_every_parameter_and_state(cell, config):
    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=sum(config), cell=cell)
    results = gradcheck(model, x, y, h0)
    assert {r.name for r in results} == set(model.params) | {f"{p}0" for p in model.state_parts}
    assert all(r.checked == r.size and r.max_rel_error <= TOLERANCE for r in results), results


@pytest.mark.parametrize("cell", CELLS)
def test_finite_differences_with_dropout(cell):
    model, x, y, h0 = random_problem(4, 3, 2, 2, 3, seed=5, cell=cell, dropout=0.4)
    assert all(r.ok for r in gradcheck(model, x, y, h0))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", random_configs(8, seed=14))
def test_tuned_matches_the_reference(cell, config):
    V, H, L, B, T = config
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=300 + sum(config), cell=cell, dropout=0.25)
    masks_from = model.dropout_rng.bit_generator.state
    loss, grads, h_last = model.loss_and_grads(x, y, h0)
    want_loss, want_grads, want_h, _ = reference_loss_and_grads(
        model, x, y, h0, dropout_rng=np.random.Generator(_rewound(masks_from)))
    assert abs(loss - want_loss) <= 1e-12 * abs(want_loss)
    assert all(rel(a, b) <= 1e-12 for a, b in zip(parts(h_last), parts(want_h)))
    for name in grads:
        assert grads[name].dtype == np.float64 and rel(grads[name], want_grads[name]) <= 1e-12, name


def _rewound(state):
    bg = np.random.PCG64()
    bg.state = state
    return bg


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_matches_pytorch_with_the_same_masks(cell, torch):
    """PyTorch's layers written one at a time, each output multiplied by the mask charrnn drew."""
    V, H, L, B, T, p = 6, 5, 3, 2, 7, 0.3
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=9, cell=cell, dropout=p)
    rng = np.random.Generator(_rewound(model.dropout_rng.bit_generator.state))
    masks = [dropout_mask(rng, (T, B, H), p, np.float64) for _ in range(L)]
    loss, grads, h_last = model.loss_and_grads(x, y, h0)
    layers = []
    for k in range(L):
        layer = torch_twin_class(cell)(V if k == 0 else H, H, 1).double()
        with torch.no_grad():
            for name, param in layer.named_parameters():
                param.copy_(torch.from_numpy(model.params[f"rnn.{name[:-1]}{k}"]))
        layers.append(layer)
    head = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(model.params["head.weight"]))
        head.bias.copy_(torch.from_numpy(model.params["head.bias"]))
    inp = torch.nn.functional.one_hot(torch.from_numpy(x.T.copy()), V).double()  # (T, B, V)
    state = [tuple(torch.from_numpy(np.array(s[k:k + 1])) for s in parts(h0)) for k in range(L)]
    for k, layer in enumerate(layers):
        out, _ = layer(inp, state[k] if cell == "lstm" else state[k][0])
        inp = out * torch.from_numpy(masks[k])
    want = torch.nn.functional.cross_entropy(head(inp).reshape(-1, V), torch.from_numpy(y.T.copy()).reshape(-1))
    want.backward()
    assert abs(loss - want.item()) <= 1e-10 * want.item()
    for k, layer in enumerate(layers):
        for name, param in layer.named_parameters():
            assert rel(grads[f"rnn.{name[:-1]}{k}"], param.grad.numpy()) <= 1e-10
    assert rel(grads["head.weight"], head.weight.grad.numpy()) <= 1e-10
    # evaluation leaves dropout off: the same loss as the model without it
    plain = CharRNN(V, H, L, dtype="float64", cell=cell, params={n: a.copy() for n, a in model.params.items()})
    assert model.loss(x, y, h0)[0] == plain.loss(x, y, h0)[0]
    assert loss != plain.loss_and_grads(x, y, h0)[0]


@pytest.mark.parametrize("cell", CELLS)
def test_step_and_stepper_follow_the_window_forward(cell):
    model, x, _, h0 = random_problem(6, 5, 2, 3, 8, seed=3, cell=cell)
    logits, h_last = model.logits(x, h0)
    stepper = model.stepper(3, h0)
    h, h_ref = h0, h0
    for t in range(x.shape[1]):
        from_step, h = model.step(x[:, t], h)
        from_ref, h_ref = reference_step(model, x[:, t], h_ref)
        assert rel(from_step, logits[:, t]) <= 1e-12 and rel(from_ref, logits[:, t]) <= 1e-12
        assert rel(stepper(x[:, t]), logits[:, t]) <= 1e-12
    for a, b, c in zip(parts(h), parts(h_last), parts(stepper.h)):
        assert rel(a, b) <= 1e-12 and rel(c, b) <= 1e-12
    one = model.stepper(1)
    assert one(2).shape == (1, 6) and len(parts(one.h)) == len(model.state_parts)


@pytest.mark.parametrize("cell", CELLS)
def test_names_shapes_float32_and_files(cell, tmp_path, torch):
    model = CharRNN(11, 6, 3, cell=cell, dropout=0.1, seed=4)
    rnn, head = torch_twin_class(cell)(11, 6, 3), torch.nn.Linear(6, 11)
    want = {"rnn." + n: tuple(p.shape) for n, p in rnn.named_parameters()}
    want |= {"head." + n: tuple(p.shape) for n, p in head.named_parameters()}
    assert {n: p.shape for n, p in model.params.items()} == want == parameter_shapes(11, 6, 3, cell)
    assert model.num_parameters == sum(p.numel() for m in (rnn, head) for p in m.parameters())
    x = np.random.default_rng(0).integers(0, 11, (2, 4))
    loss, grads, h = model.loss_and_grads(x, x)
    assert all(g.dtype == np.float32 for g in grads.values()) and all(a.dtype == np.float32 for a in parts(h))
    model.save(tmp_path / "m.safetensors")
    back = CharRNN.load(tmp_path / "m.safetensors")
    assert (back.cell, back.dropout) == (cell, 0.1)
    assert all(np.array_equal(back.params[n], model.params[n]) for n in model.params)
    assert np.array_equal(back.logits(x)[0], model.logits(x)[0])


@pytest.mark.parametrize("cell", CELLS)
def test_bad_states_are_refused(cell):
    model = CharRNN(5, 4, 2, cell=cell)
    x = np.zeros((3, 2), dtype=int)
    with pytest.raises(ConfigError):
        model.loss_and_grads(x, x, np.zeros((2, 3, 5)))
    if cell == "lstm":
        with pytest.raises(ConfigError, match="tuple"):
            model.loss_and_grads(x, x, np.zeros((2, 3, 4)))


def test_bad_cells_and_dropouts_are_refused():
    for bad in ("lstm2", "", None, "RNN"):
        with pytest.raises(ConfigError, match="cell"):
            CharRNN(5, 4, cell=bad)
    for bad in (-0.1, 1.0, float("nan"), "0.5", True):
        with pytest.raises(ConfigError, match="dropout"):
            CharRNN(5, 4, dropout=bad)
