"""The torch backend's stack options (--residual, --layer-norm) against the NumPy model, float64:
the language model's module for every cell, its training, and the task models' module."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.core import cell_names
from charrnn.gradcheck import random_problem
from charrnn.model import CharClassifier, CharTagger
from conftest import optional, parts

torch = optional("torch")
pytestmark = pytest.mark.torch

from charrnn.torch_backend.module import TorchLM  # noqa: E402  (needs torch)
from charrnn.torch_backend.tasks import TorchTask  # noqa: E402

CELLS = cell_names()
OPTIONS = [dict(residual=True), dict(layer_norm=True), dict(residual=True, layer_norm=True)]


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("options", OPTIONS, ids=["residual", "layer_norm", "both"])
@pytest.mark.parametrize("cell", CELLS)
def test_the_module_computes_the_numpy_model(cell, options):
    V, H, L, B, T = 6, 5, 3, 2, 4
    model, x, y, h0 = random_problem(V, H, L, B, T, seed=11, cell=cell, **options)
    module = TorchLM.of(model).double()
    module.load_numpy(model.params)
    names = module.named_charrnn_parameters()
    assert list(names) == list(model.params)  # the table's names, in its order
    state = tuple(torch.from_numpy(np.array(s)) for s in parts(h0))
    logits, state_n = module(torch.from_numpy(x.T.copy()), state)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y.T.copy()).reshape(-1))
    loss.backward()
    want_loss, grads, h_last = model.loss_and_grads(x, y, h0)
    assert abs(loss.item() - want_loss) <= 1e-10 * want_loss
    assert all(rel(a.detach().numpy(), b) <= 1e-10 for a, b in zip(state_n, parts(h_last)))
    for name, p in names.items():
        assert rel(p.grad.numpy(), grads[name]) <= 1e-10, name


@pytest.mark.parametrize("cell", ["lstm", "mingru"])
def test_training_on_torch_equals_numpy(tmp_path, sonnet_file, cell):
    from charrnn.io.checkpoint import LATEST, load_checkpoint
    from charrnn.settings import TrainConfig, given_of
    from charrnn.train import Trainer

    cfg = TrainConfig(text=str(sonnet_file), hidden_size=8, num_layers=2, seq_len=6, batch_size=3, dtype="float64",
                      log_every=1, eval_every=5, sample_every=0, steps=10, cell=cell, residual=True, layer_norm=True)
    for backend in ("numpy", "torch"):
        Trainer(given_of(cfg.replace(backend=backend)), tmp_path / backend, quiet=True).run()
    a, b = (load_checkpoint(tmp_path / backend / LATEST) for backend in ("numpy", "torch"))
    assert a.model.layer_norm and b.model.residual
    for name in a.model.params:
        assert rel(b.model.params[name], a.model.params[name]) < 1e-9, name


@pytest.mark.parametrize("kind", ["classify", "tag", "tag-feedback"])
def test_the_task_module_computes_the_numpy_model(kind):
    V, K, H, L = 7, 3, 4, 3
    rng = np.random.default_rng(5)
    common = dict(hidden_size=H, num_layers=L, dtype="float64", seed=2, cell="gru", residual=True, layer_norm=True)
    model = (CharClassifier(V, K, **common) if kind == "classify"
             else CharTagger(V, K, feedback=kind == "tag-feedback", **common))
    for p in model.params.values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    lens = np.array([5, 3])
    x = rng.integers(0, V, (2, 5))
    module = TorchTask(model).double()
    module.load_numpy(model.params)
    assert set(module.named_charrnn_parameters()) == set(model.params)
    xt = torch.from_numpy(x.T.copy())
    if kind == "classify":
        top = module.top(xt, None, None)
        logits = module.head(top[torch.from_numpy(lens - 1), torch.arange(2)])
        want = model.logits([x[0, :5], x[1, :3]])
        assert rel(logits.detach().numpy(), want) <= 1e-10
        return
    y = rng.integers(0, K, (2, 5))
    prev = None
    if model.feedback:
        yt = torch.from_numpy(y.T.copy())
        prev = torch.cat([torch.full_like(yt[:1], -1), yt[:-1]])
    logits = module.head(module.top(xt, prev, None)).transpose(0, 1)  # (B, T, K)
    want = model.logits(x, lens, previous=y if model.feedback else None)
    for b in range(2):
        assert rel(logits[b, : lens[b]].detach().numpy(), want[b, : lens[b]]) <= 1e-10
