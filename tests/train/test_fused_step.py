"""The fused training step (train/fused.py, core/rnn_fused.py) against the reference path: the same
losses, gradient norms, states, parameters and optimizer slots, step after step."""

import numpy as np
import pytest

from conftest import optional

optional("numba")
pytestmark = pytest.mark.numba

from charrnn import CharRNN  # noqa: E402
from charrnn.core import _jit  # noqa: E402
from charrnn.optim import clip_grad_norm_, clip_grad_value_, global_grad_norm, make_optimizer  # noqa: E402
from charrnn.train.fused import FusedStep, supports  # noqa: E402

OPTIMIZERS = {
    "adagrad": dict(lr=0.1, eps=1e-8 / 625, eps_inside_sqrt=True),  # the seed's, as the preset sets it
    "adagrad-torch": dict(lr=0.1, lr_decay=0.01),
    "adam": dict(lr=0.01),
    "sgd": dict(lr=0.5),
}


def reference_step(model, opt, x, y, h, lr, clip_value, clip_norm, single_bias):
    loss, grads, h_last = model.loss_and_grads(x, y, h)
    norm = global_grad_norm(grads)
    if single_bias:
        grads["rnn.bias_hh_l0"].fill(0.0)
    if clip_value:
        clip_grad_value_(grads, clip_value)
    if clip_norm:
        clip_grad_norm_(grads, clip_norm)
    opt.lr = lr
    opt.step(grads)
    return loss, norm, h_last


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 2e-4)])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_steps_follow_the_reference(name, dtype, rtol):
    V, H, T = 13, 20, 7
    kind = name.split("-")[0]
    clip_value, clip_norm, single_bias = (0.2, 0.0, True) if kind == "adagrad" else (0.0, 1.0, False)
    models = [CharRNN(V, H, 1, dtype, seed=4, init="normal" if kind == "adagrad" else "pytorch") for _ in range(2)]
    opts = [make_optimizer(kind, m.params, **OPTIMIZERS[name]) for m in models]
    fused = FusedStep.for_model(models[1], opts[1], 1, clip_value, clip_norm, single_bias)
    assert fused is not None
    data = np.random.default_rng(1).integers(0, V, 6 * T + 1)
    h_ref = h_fused = models[0].initial_state(1)
    for k in range(6):
        x, y = data[None, k * T : (k + 1) * T], data[None, k * T + 1 : (k + 1) * T + 1]
        lr = OPTIMIZERS[name]["lr"] * (1 - 0.1 * k)
        loss, norm, h_ref = reference_step(models[0], opts[0], x, y, h_ref, lr, clip_value, clip_norm, single_bias)
        f_loss, f_norm, h_fused, status = fused(x, y, h_fused, lr)
        assert status == 0
        assert f_loss == pytest.approx(loss, rel=rtol) and f_norm == pytest.approx(norm, rel=rtol)
        np.testing.assert_allclose(h_fused, h_ref, rtol=rtol, atol=rtol)
        for pname, p in models[0].params.items():
            np.testing.assert_allclose(models[1].params[pname], p, rtol=rtol, atol=rtol * np.abs(p).max(), err_msg=pname)
    assert opts[1].step_count == opts[0].step_count == 6
    for pname, slots in opts[0].state.items():
        for slot, arr in slots.items():
            np.testing.assert_allclose(opts[1].state[pname][slot], arr, rtol=rtol * 10, atol=rtol * np.abs(arr).max())


def test_a_non_finite_loss_changes_nothing_and_an_overflow_is_reported():
    model = CharRNN(7, 8, 1, "float64", seed=0)
    opt = make_optimizer("sgd", model.params, lr=1.0)
    fused = FusedStep.for_model(model, opt, 1)
    before = {k: v.copy() for k, v in model.params.items()}
    model.params["head.bias"][0] = np.inf
    x = np.zeros((1, 3), dtype=np.intp)
    _, _, _, status = fused(x, x, model.initial_state(1), 1.0)
    assert status == 1 and opt.step_count == 0
    assert np.array_equal(model.params["rnn.weight_hh_l0"], before["rnn.weight_hh_l0"])
    model.params["head.bias"][0] = 0.0
    small = CharRNN(7, 8, 1, "float32", seed=0)
    opt = make_optimizer("sgd", small.params, lr=1.0)
    _, _, _, status = FusedStep.for_model(small, opt, 1)(x, x + 1, small.initial_state(1), 1e300)
    assert status == 2 and opt.step_count == 1  # applied, and reported: the caller rolls back


def test_what_the_fused_step_takes(monkeypatch):
    m = CharRNN(7, 8, 1, seed=0)
    assert supports(m, make_optimizer("adam", m.params, lr=0.1), 1)
    assert not supports(m, make_optimizer("adam", m.params, lr=0.1), 2)  # more streams: NumPy path
    assert not supports(m, make_optimizer("adamw", m.params, lr=0.1), 1)
    assert not supports(m, make_optimizer("adam", m.params, lr=0.1, amsgrad=True), 1)
    assert not supports(m, make_optimizer("sgd", m.params, lr=0.1, momentum=0.9), 1)
    assert not supports(m, make_optimizer("rmsprop", m.params, lr=0.1), 1)
    # the stack's options: the fused kernel computes the plain stack (a one-layer residual would
    # change nothing, but is declined all the same rather than trusted to)
    for other in (CharRNN(7, 8, 2, seed=0), CharRNN(7, 8, 1, seed=0, cell="gru"), CharRNN(7, 8, 1, seed=0, dropout=0.1),
                  CharRNN(7, 8, 1, seed=0, layer_norm=True), CharRNN(7, 8, 1, seed=0, residual=True)):
        assert not supports(other, make_optimizer("adam", other.params, lr=0.1), 1)
    monkeypatch.setenv("CHARRNN_JIT", "0")
    assert not _jit.available() and not supports(m, make_optimizer("adam", m.params, lr=0.1), 1)


def test_training_takes_the_fused_step_for_one_stream_and_matches_the_numpy_path(tmp_path, monkeypatch):
    from charrnn.settings import TrainConfig
    from charrnn.train import Trainer, fused

    from conftest import SONNET

    path = tmp_path / "input.txt"
    path.write_text(SONNET * 3)
    cfg = TrainConfig(text=str(path), preset="min-char-rnn", steps=8, sample_every=0, eval_every=0, hidden_size=32)
    a = Trainer(cfg, tmp_path / "a", quiet=True)
    assert a.engine.fused is not None
    a.run()
    monkeypatch.setattr(fused, "supports", lambda *args: False)
    b = Trainer(cfg, tmp_path / "b", quiet=True)
    assert b.engine.fused is None
    b.run()
    for name, p in b.model.params.items():
        np.testing.assert_allclose(a.model.params[name], p, rtol=1e-7, atol=1e-10, err_msg=name)
    assert a.state.smoothed_loss == pytest.approx(b.state.smoothed_loss, rel=1e-10)
