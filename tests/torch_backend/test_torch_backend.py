"""The torch backend: the NumPy engine's losses to 1e-9 in float64, one checkpoint format for both
backends, the device and install errors, and the NumPy path that never imports torch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from charrnn.io.checkpoint import LATEST, METRICS, load_checkpoint
from charrnn.core import cell_names
from charrnn.settings import TrainConfig, given_of
from charrnn.train import Trainer

from conftest import optional, run_cli

torch = optional("torch")
pytestmark = pytest.mark.torch

CELLS = cell_names()  # the built-in cells, as registered when the tests are collected

SMALL = dict(hidden_size=12, num_layers=2, seq_len=8, batch_size=4, dtype="float64", log_every=1, eval_every=10,
             sample_every=0)


def config(text: Path, **changes) -> TrainConfig:
    return TrainConfig(**(dict(text=str(text)) | SMALL | changes))


def losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    return [r["train_loss"] for r in records if r["train_loss"] is not None]


def train(cfg: TrainConfig, run: Path, resume: bool = False, **engine) -> Path:
    Trainer(given_of(cfg) | engine, run, resume=resume, quiet=True).run()
    return run


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def assert_close_runs(a: Path, b: Path, tol: float) -> None:
    ca, cb = load_checkpoint(a / LATEST), load_checkpoint(b / LATEST)
    assert ca.state["step"] == cb.state["step"]
    for k in ca.model.params:
        assert rel(ca.model.params[k], cb.model.params[k]) < tol, k
    assert ca.optimizer_arrays.keys() == cb.optimizer_arrays.keys()
    for k in ca.optimizer_arrays:
        assert rel(ca.optimizer_arrays[k], cb.optimizer_arrays[k]) < tol, k
    assert ca.optimizer_meta == cb.optimizer_meta
    for x, y in zip(*(c.hidden if isinstance(c.hidden, tuple) else (c.hidden,) for c in (ca, cb))):
        assert rel(x, y) < tol


@pytest.mark.parametrize("cell", CELLS)
def test_first_20_losses_equal_the_numpy_engine(tmp_path, sonnet_file, cell):
    cfg = config(sonnet_file, cell=cell, steps=20)
    ours = losses(train(cfg, tmp_path / "numpy"))
    theirs = losses(train(cfg.replace(backend="torch"), tmp_path / "torch"))
    assert len(ours) == len(theirs) == 20
    assert rel(theirs, ours) < 1e-9, np.abs(np.array(theirs) - ours).max()
    assert_close_runs(tmp_path / "torch", tmp_path / "numpy", 1e-9)  # parameters, slots, carried state


@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd", lr=0.5, momentum=0.9, weight_decay=1e-3),
    dict(optimizer="adagrad", lr=0.1, clip_value=0.05, clip_norm=0.0),
    dict(optimizer="rmsprop", lr=1e-2, momentum=0.5),
    dict(optimizer="adamw", weight_decay=0.1, lr_schedule="step", lr_decay_every=3, lr_decay=0.5),
    dict(optimizer="adam", single_bias=True, warmup_steps=3),
], ids=lambda s: s["optimizer"])
def test_every_optimizer_and_clip_matches(tmp_path, sonnet_file, settings):
    cfg = config(sonnet_file, cell="gru", num_layers=1, steps=8, **settings)
    ours = losses(train(cfg, tmp_path / "numpy"))
    theirs = losses(train(cfg.replace(backend="torch"), tmp_path / "torch"))
    assert rel(theirs, ours) < 1e-9
    assert_close_runs(tmp_path / "torch", tmp_path / "numpy", 1e-9)


@pytest.mark.parametrize("first, second", [("numpy", "torch"), ("torch", "numpy")])
def test_a_run_resumes_with_the_other_backend(tmp_path, sonnet_file, first, second):
    cfg = config(sonnet_file, cell="lstm", steps=12, lr_schedule="constant")
    whole = train(cfg.replace(backend=first), tmp_path / "whole")
    half = train(cfg.replace(backend=first, steps=6), tmp_path / "half")
    train(cfg.replace(steps=12), half, resume=True, backend=second)
    assert load_checkpoint(half / LATEST).config.backend == second
    assert rel(losses(half), losses(whole)) < 1e-9  # the loss carries on where it was
    assert_close_runs(half, whole, 1e-9)


def test_dropout_resumes_with_the_same_masks(tmp_path, sonnet_file):
    cfg = config(sonnet_file, cell="lstm", dropout=0.3, steps=10, backend="torch",
                 lr_schedule="constant")
    whole = train(cfg, tmp_path / "whole")
    half = train(cfg.replace(steps=5), tmp_path / "half")
    train(cfg.replace(steps=10), half, resume=True)
    assert losses(half) == losses(whole)
    a, b = load_checkpoint(half / LATEST), load_checkpoint(whole / LATEST)
    assert all(np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)
    numpy_run = losses(train(cfg.replace(backend="numpy"), tmp_path / "numpy"))
    # other masks than the NumPy engine's, the same model: the first loss (masks apart) is close
    assert abs(numpy_run[0] - losses(whole)[0]) < 0.05


def test_sample_and_eval_take_either_backend(tmp_path, sonnet_file):
    run = train(config(sonnet_file, cell="gru", steps=5, backend="torch"), tmp_path / "run")
    scores, texts = [], []
    for backend in ("numpy", "torch"):
        got = run_cli("eval", run, sonnet_file, "--json", "--backend", backend)
        assert got.returncode == 0, got.stderr
        scores.append(json.loads(got.stdout)["nats_per_char"])
        got = run_cli("sample", run, "--seed", "4", "--length", "80", "--prime", "Shall", "--backend", backend)
        assert got.returncode == 0, got.stderr
        texts.append(got.stdout)
    assert abs(scores[0] - scores[1]) < 1e-9 * scores[0]
    assert texts[0] == texts[1]  # float64 logits that agree to rounding draw the same characters
    # several samples, stepped together (ten streams: one batch on the torch side), draw alike too
    several = [run_cli("sample", run, "--seed", "4", "--length", "40", "--prime", "Shall", "--num-samples", "10",
                       "--backend", backend) for backend in ("numpy", "torch")]
    assert all(got.returncode == 0 for got in several), several[1].stderr
    assert several[0].stdout == several[1].stdout and several[0].stdout.count("Shall") == 10


def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, sonnet_file):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    got = run_cli("train", sonnet_file, "--out", tmp_path / "run", "--backend", "torch", "--device", "cuda")
    assert got.returncode == 2
    assert got.stderr.count("\n") == 1 and "--device cuda" in got.stderr and "Traceback" not in got.stderr
    assert not (tmp_path / "run").exists()
    got = run_cli("train", sonnet_file, "--out", tmp_path / "run", "--device", "cuda")
    assert got.returncode == 2 and "needs --backend torch" in got.stderr
    run = train(config(sonnet_file, steps=2), tmp_path / "cpu")
    for command in (("sample", run), ("eval", run, sonnet_file)):
        got = run_cli(*command, "--backend", "torch", "--device", "cuda")
        assert got.returncode == 2 and got.stderr.count("\n") == 1 and "--device cuda" in got.stderr
    # a run saved on a GPU: resumed here it says how, and the NumPy engine takes it over
    from charrnn.io.arrays import read_arrays, write_arrays

    arrays, meta = read_arrays(run / LATEST)
    write_arrays(run / LATEST, arrays, meta | {"config": meta["config"] | {"backend": "torch", "device": "cuda"}})
    got = run_cli("train", "--resume", run, "--steps", "3")
    assert got.returncode == 2 and "use --device cpu" in got.stderr and "Traceback" not in got.stderr
    train(TrainConfig(steps=3), run, resume=True, backend="numpy")
    assert load_checkpoint(run / LATEST).config.device == "cpu"


def test_cuda_is_chosen_by_local_rank(monkeypatch):
    from charrnn.errors import ConfigError
    from charrnn.torch_backend import resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1) and chosen == [1]
    with pytest.raises(ConfigError, match="at most 2 processes per machine"):
        resolve_device("cuda", local_rank=2)


def test_gpu_tensors_reach_checkpoints_as_numpy(tmp_path, sonnet_file, monkeypatch):
    """The engine brings every tensor to NumPy through .cpu(): recorded here on CPU tensors."""
    from charrnn.torch_backend import module

    moved = []
    real = torch.Tensor.cpu

    def cpu(self, *args, **kwargs):
        moved.append(tuple(self.shape))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    run = train(config(sonnet_file, cell="lstm", steps=3, backend="torch"), tmp_path / "run")
    c = load_checkpoint(run / LATEST)
    shapes = {p.shape for p in c.model.params.values()} | {c.hidden[0].shape}
    assert shapes <= set(moved)
    assert module.TorchLM  # the module that holds them


def test_missing_torch_is_one_line(tmp_path, sonnet_file):
    code = ("import sys; sys.modules['torch'] = None; from charrnn.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    run = train(config(sonnet_file, steps=2), tmp_path / "run")
    for args in (("train", sonnet_file, "--out", tmp_path / "new", "--backend", "torch"),
                 ("sample", run, "--backend", "torch"), ("eval", run, sonnet_file, "--backend", "torch"),
                 ("train", "--resume", run, "--steps", "4", "--backend", "torch")):
        got = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
        assert got.returncode == 2, got.stderr
        assert got.stderr.count("\n") == 1 and "pip install 'charrnn[torch]'" in got.stderr, got.stderr
    assert not (tmp_path / "new").exists()
    assert load_checkpoint(run / LATEST).state["step"] == 2  # nothing lost


def test_the_numpy_path_never_imports_torch(tmp_path, sonnet_file):
    code = f"""
import sys
from charrnn.cli import main
run = {str(tmp_path / 'run')!r}
assert main(['train', {str(sonnet_file)!r}, '--out', run, '--steps', '3', '--hidden-size', '8', '--quiet']) == 0
assert main(['train', '--resume', run, '--steps', '4', '--quiet']) == 0
assert main(['sample', run, '--length', '5', '--seed', '1']) == 0
assert main(['eval', run, {str(sonnet_file)!r}]) == 0
assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr


def test_deterministic_and_fine_tuning_across_backends(tmp_path, sonnet_file):
    cfg = config(sonnet_file, cell="gru", steps=4)
    plain = train(cfg.replace(backend="torch"), tmp_path / "plain")
    got = run_cli("train", sonnet_file, "--out", tmp_path / "det", "--backend", "torch", "--deterministic",
                  "--cell", "gru", "--hidden-size", "12", "--num-layers", "2", "--seq-len", "8", "--batch-size", "4",
                  "--dtype", "float64", "--log-every", "1", "--eval-every", "10", "--sample-every", "0",
                  "--steps", "4", "--quiet")
    assert got.returncode == 0, got.stderr
    assert rel(losses(tmp_path / "det"), losses(plain)) < 1e-12
    assert load_checkpoint(tmp_path / "det" / LATEST).config.deterministic
    # a torch run fine-tuned by the NumPy engine, and the reverse: same weights to start from
    for source, backend in ((plain, "numpy"), (tmp_path / "det", "torch")):
        tuned = train(cfg.replace(init_from=str(source), backend=backend, steps=2), tmp_path / f"tuned-{backend}")
        assert load_checkpoint(tuned / LATEST).state["step"] == 2


def test_divergence_is_recovered_from_the_last_checkpoint(tmp_path, sonnet_file):
    from charrnn.train import Diverged

    cfg = config(sonnet_file, backend="torch", cell="rnn", dtype="float32", optimizer="sgd", lr=1e36, clip_norm=0.0,
                 steps=20, max_divergences=2, eval_every=5)
    run = tmp_path / "run"
    with pytest.raises(Diverged, match="diverged"):
        train(cfg, run)
    saved = load_checkpoint(run / LATEST)  # the last good state, with the count and the lowered rate
    assert saved.state["divergences"] == 2 and saved.state["lr_scale"] == 0.25
    assert all(np.isfinite(p).all() for p in saved.model.params.values())
