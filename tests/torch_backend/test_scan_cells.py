"""The torch modules of the cells that no torch.nn class computes (TORCH_MODULE "module:Class",
torch_backend/scan.py): the parallel scan against the step-by-step recurrence, the modules
against the NumPy cells in float64 (values and every gradient), on a GPU when there is one, and
exact resume, evaluation and sampling on the torch backend."""

import json

import numpy as np
import pytest

from charrnn.core import CELLS
from charrnn.io.checkpoint import LATEST, load_checkpoint

from conftest import optional, run_cli

torch = optional("torch")
pytestmark = pytest.mark.torch

from charrnn.torch_backend.module import torch_layer  # noqa: E402  (imports torch)
from charrnn.torch_backend.scan import parallel_scan  # noqa: E402
from test_torch_backend import config, losses, train  # noqa: E402

# the registered cells whose torch module is their own (discovered: a cell added later is covered)
OWN = [name for name, m in CELLS.items() if m.TORCH_MODULE is not None and ":" in m.TORCH_MODULE]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_the_own_modules_are_found():
    assert {"mingru", "minlstm"} <= set(OWN)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T", [1, 2, 3, 7, 8, 33, 128])
def test_the_parallel_scan_is_the_recurrence(T, device):
    g = torch.Generator().manual_seed(T)
    a = torch.rand(T, 3, 5, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(T, 3, 5, generator=g, dtype=torch.float64).to(device)
    h0 = torch.randn(3, 5, generator=g, dtype=torch.float64).to(device)
    h, want = h0, []
    for t in range(T):
        h = a[t] * h + b[t]
        want.append(h)
    got = parallel_scan(a, b, h0)
    assert got.shape == (T, 3, 5)
    assert torch.allclose(got, torch.stack(want), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", OWN)
def test_the_module_matches_the_numpy_cell_with_its_gradients(cell, device):
    """Two layers, float64: outputs, final states and the gradients of every parameter, the
    input and the initial state, against the NumPy cell's forward and backward."""
    module = CELLS[cell]
    rng = np.random.default_rng(len(cell))
    for T, B, I, H in [(1, 1, 2, 1), (5, 3, 4, 6), (40, 2, 3, 5)]:
        layer_class, options = torch_layer(cell)
        layers = layer_class(I, H, 2, **options).double().to(device)
        x = rng.standard_normal((T, B, I))
        h0 = rng.standard_normal((2, B, H))
        dout, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((2, B, H))
        tx = torch.tensor(x, device=device, requires_grad=True)
        th0 = torch.tensor(h0, device=device, requires_grad=True)
        out, h_n = layers(tx, th0)
        ((out * torch.tensor(dout, device=device)).sum() + (h_n * torch.tensor(dh_n, device=device)).sum()).backward()
        # the NumPy cell, layer by layer, with the module's parameters
        arrays = [p.detach().cpu().numpy() for p in layers.parameters()]  # weight_ih_l0, bias_ih_l0, ..
        params = [tuple(arrays[2 * k : 2 * k + 2]) for k in range(2)]
        hs0, s0, c0 = module.forward(x, params[0], (h0[0],))
        hs1, s1, c1 = module.forward(hs0.copy(), params[1], (h0[1],))
        assert np.abs(out.detach().cpu().numpy() - hs1).max() <= 1e-12 * np.abs(hs1).max()
        assert np.allclose(h_n.detach().cpu().numpy(), [s0[0], s1[0]], rtol=1e-12, atol=1e-14)
        grads = [tuple(np.zeros_like(p) for p in ps) for ps in params]
        dx1, dh1 = module.backward(dout, c1, params[1], grads[1], (dh_n[1],))
        dx0, dh0 = module.backward(dx1, c0, params[0], grads[0], (dh_n[0],))
        want = [g for gs in grads for g in gs]
        for p, g in zip(layers.parameters(), want):
            assert np.allclose(p.grad.cpu().numpy(), g, rtol=1e-10, atol=1e-12 * np.abs(g).max())
        assert np.allclose(tx.grad.cpu().numpy(), dx0, rtol=1e-10, atol=1e-12)
        assert np.allclose(th0.grad.cpu().numpy(), [dh0[0], dh1[0]], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", OWN)
def test_training_resumes_exactly_on_the_torch_backend_and_scores_alike(tmp_path, sonnet_file, cell):
    cfg = config(sonnet_file, cell=cell, dropout=0.2, steps=10, backend="torch", lr_schedule="constant")
    whole = train(cfg, tmp_path / "whole")
    half = train(cfg.replace(steps=5), tmp_path / "half")
    train(cfg.replace(steps=10), half, resume=True)
    assert losses(half) == losses(whole)
    a, b = load_checkpoint(half / LATEST), load_checkpoint(whole / LATEST)
    assert a.model.cell == cell and all(np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)
    assert all(np.array_equal(a.optimizer_arrays[k], b.optimizer_arrays[k]) for k in a.optimizer_arrays)
    scores, texts = [], []
    for backend in ("numpy", "torch"):
        got = run_cli("eval", whole, sonnet_file, "--json", "--backend", backend)
        assert got.returncode == 0, got.stderr
        scores.append(json.loads(got.stdout)["nats_per_char"])
        got = run_cli("sample", whole, "--seed", "4", "--length", "60", "--prime", "Shall", "--backend", backend)
        assert got.returncode == 0, got.stderr
        texts.append(got.stdout)
    assert abs(scores[0] - scores[1]) < 1e-9 * scores[0]
    assert texts[0] == texts[1] and len(texts[0]) >= 60


@pytest.mark.parametrize("cell", OWN)
@pytest.mark.parametrize("task", ["classify", "tag"])
def test_the_task_models_train_alike_on_both_backends(cell, task, tmp_path):
    """float64, two layers, the tagger with output recurrence R (which widens the cell's input
    weight on the torch side too): the same weights and losses to rounding after 8 steps."""
    from charrnn.io.task_checkpoint import load_task_checkpoint
    from charrnn.train import Trainer

    words = ["".join("ab"[(7 * i + j * j) % 3 % 2] for j in range(1 + i % 9)) for i in range(40)]
    if task == "classify":  # text<TAB>label
        data = tmp_path / "d.tsv"
        data.write_text("".join(f"{w}\t{w[0].upper()}\n" for w in words), encoding="utf-8")
    else:
        data = tmp_path / "d.jsonl"
        data.write_text("".join(json.dumps({"text": w, "tags": ["XY"[c == "a"] for c in w]}) + "\n" for w in words),
                        encoding="utf-8")
    given = dict(task=task, data=str(data), cell=cell, hidden_size=6, num_layers=2, batch_size=8, steps=8,
                 eval_every=4, patience=0, lr=0.02, dtype="float64", dropout=0.0, feedback=task == "tag")
    for backend in ("numpy", "torch"):
        Trainer(given | {"backend": backend}, tmp_path / backend, quiet=True).run()
    a, b = (load_task_checkpoint(tmp_path / backend / LATEST) for backend in ("numpy", "torch"))
    assert a.state["step"] == b.state["step"] == 8 and a.model.cell == cell
    for name in a.model.params:
        np.testing.assert_allclose(b.model.params[name], a.model.params[name], rtol=1e-9, atol=1e-11, err_msg=name)


def test_a_torch_module_the_backend_does_not_have_is_one_line_error():
    """TORCH_MODULE names a class of one of the backend's own modules, looked up, never imported."""
    import types

    from charrnn.core import register
    from charrnn.errors import ConfigError

    module = types.ModuleType("elsewhere")
    module.__dict__.update({k: v for k, v in vars(CELLS["mingru"]).items() if not k.startswith("__")})
    module.NAME, module.TORCH_MODULE = "elsewhere", "charrnn.torch_backend.nowhere:MinGRU"
    register(module)
    try:
        with pytest.raises(ConfigError, match="is not one the torch backend has") as e:
            torch_layer("elsewhere")
        assert "\n" not in str(e.value)
    finally:
        del CELLS["elsewhere"]
