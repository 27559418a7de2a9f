"""charrnn explain-update: its numbers are the engine's, PyTorch's and Keras's, and the gradient
check fails the BasicRNNCell question's mistaken backward while ours passes."""

import contextlib
import io
import os

import numpy as np
import pytest

from charrnn.cli import main
from charrnn.explain import U, W, explain_update, reference_backward
from charrnn.gradcheck import TOLERANCE
from conftest import optional

torch = optional("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # Keras on NumPy 2


@pytest.fixture(scope="module")
def ex():
    return explain_update("hello", hidden_size=4, lr=0.1, seed=0)


def test_the_numbers_are_the_engines(ex):
    x, y = ex.inputs[None], ex.targets[None]
    loss, grads, _ = ex.model.loss_and_grads(x, y)
    assert loss == ex.loss and all(np.array_equal(grads[k], ex.grads[k]) for k in grads)
    plain = reference_backward(ex.model, ex.inputs, ex.targets)  # one equation per line, one step at a time
    assert all(np.allclose(plain[k], ex.grads[k], rtol=0, atol=1e-14) for k in grads)
    for k, g in ex.grads.items():
        assert np.allclose(ex.sgd[k], -ex.lr * g, rtol=0, atol=1e-15)
        # Adam's first step: m^ = g, v^ = g^2, so every weight moves by lr * g / (|g| + eps)
        assert np.allclose(ex.adam[k], -ex.lr * g / (np.abs(g) + 1e-8), rtol=0, atol=1e-12)


def test_the_numbers_are_pytorchs(ex):
    """An oracle of the test's own: nn.RNN over the whole one-hot window (not the RNNCell loop the
    command uses), nn.Linear, cross_entropy, torch.optim.SGD / Adam."""
    p, V, H = ex.model.params, ex.model.vocab_size, ex.model.hidden_size

    def step(opt):
        rnn = torch.nn.RNN(V, H, dtype=torch.float64)
        head = torch.nn.Linear(H, V, dtype=torch.float64)
        with torch.no_grad():
            for name, t in [*rnn.named_parameters(), *head.named_parameters()]:
                t.copy_(torch.from_numpy(p[("rnn." if name.endswith("l0") else "head.") + name]))
        hs, _ = rnn(torch.nn.functional.one_hot(torch.from_numpy(ex.inputs), V).double()[:, None])
        loss = torch.nn.functional.cross_entropy(head(hs[:, 0]), torch.from_numpy(ex.targets))
        loss.backward()
        named = {**{"rnn." + n: t for n, t in rnn.named_parameters()}, **{"head." + n: t for n, t in head.named_parameters()}}
        grads = {k: t.grad.numpy().copy() for k, t in named.items()}
        opt(list(named.values())).step()
        return loss.item(), grads, {k: t.detach().numpy() - p[k] for k, t in named.items()}

    loss, grads, sgd = step(lambda ps: torch.optim.SGD(ps, lr=ex.lr))
    _, _, adam = step(lambda ps: torch.optim.Adam(ps, lr=ex.lr, eps=1e-8))
    assert abs(loss - ex.loss) < 1e-14
    for k in grads:
        assert np.abs(grads[k] - ex.grads[k]).max() < 1e-14
        assert np.abs(sgd[k] - ex.sgd[k]).max() < 1e-15
        assert np.abs(adam[k] - ex.adam[k]).max() < 1e-14
        assert np.abs(ex.frameworks["PyTorch"]["grads"][k] - ex.grads[k]).max() < 1e-14


def test_the_numbers_are_keras(ex):
    optional("keras")
    k = ex.frameworks["Keras"]
    assert abs(k["loss"] - ex.loss) < 1e-6  # Keras multiplies in float32
    for name in (U, W, "head.weight", "head.bias"):
        assert np.abs(k["grads"][name] - ex.grads[name]).max() < 1e-6
        assert np.abs(k["sgd"][name] - ex.sgd[name]).max() < 1e-7
        assert np.abs(k["adam"][name] - ex.adam[name]).max() < 1e-8  # Keras keeps lr as a float32
    # one bias b = b_ih + b_hh: its gradient is db, which each of PyTorch's two biases gets
    assert np.abs(k["grads"]["b"] - ex.grads["rnn.bias_ih_l0"]).max() < 1e-6
    assert np.array_equal(ex.grads["rnn.bias_ih_l0"], ex.grads["rnn.bias_hh_l0"])


def test_the_input_weight_gradient_lives_in_the_columns_of_the_inputs(ex):
    symbols = ex.vocab.symbols
    read = set(ex.inputs.tolist())
    assert {symbols[i] for i in read} == {"h", "e", "l"} and "o" in symbols  # 'o' is only ever a target
    for j in range(ex.vocab.size):
        column = ex.grads[U][:, j]
        assert np.all(column != 0) if j in read else np.all(column == 0)
        assert np.all(ex.sgd[U][:, j] == 0) == (j not in read)


def test_the_check_catches_the_questions_backward(ex):
    ours = ex.checks["charrnn (BPTT)"]
    assert max(ours.values()) <= TOLERANCE
    seed = ex.checks["the BasicRNNCell question's (h_{t-1}, no chain)"]
    for name in (U, W, "rnn.bias_ih_l0", "head.weight"):
        assert seed[name] > 1e-2
    assert seed["head.bias"] <= TOLERANCE  # dc = sum of dy_t: the one array the seed gets right
    assert ex.checks["no chain through time only"]["head.weight"] <= TOLERANCE  # dV needs no chain
    assert ex.checks["no chain through time only"][W] > 1e-2
    assert ex.checks["h_{t-1} for h_t only"]["head.weight"] > 1e-2


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["explain-update", *map(str, args)])
    return status, out.getvalue(), err.getvalue()


def test_the_command(ex):
    status, out, err = cli("--text", "hello", "--no-frameworks")
    assert status == 0, err
    assert "never an input: 'o'" in out and "non-zero columns of dU: 'e', 'h', 'l'" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith(("charrnn (BPTT)", "the BasicRNNCell"))}
    assert lines["charrnn"].endswith("PASS") and lines["the"].endswith("FAIL")
    assert f"loss = {ex.loss:.6f} nats" in out
    for bad, message in ((["--text", "a"], "at least 2 characters"), (["--text", "aaaa"], "2 distinct"),
                         (["--hidden-size", 40], "at most 16"), (["--lr", 0], "--lr must be a positive"),
                         (["--text", "x" * 201], "at most 200")):
        status, _, err = cli(*bad)
        assert status == 2 and message in err and err.count("\n") == 1, (bad, err)
