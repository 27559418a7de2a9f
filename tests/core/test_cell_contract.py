"""The cell contract (charrnn/core/__init__.py): a cell is its own module, registered by name, and
nothing outside the core needs to know which cell runs.

The proof is a fourth cell written here, unlike the three of the package: a leaky memory with a
two-part state (h, m), one sigmoid gate and a parameter table of its own (three parameters, not
PyTorch's four), registered from this file and then trained, resumed after an interruption,
sampled, evaluated, diagnosed, reported, drawn as a heatmap, gradient-checked and used by the
tagger with output recurrence, all through the real command line; what needs a PyTorch, Keras or
ONNX twin refuses it by name. Beside it: the registry's checks, every cell importing only the core,
and no comparison with a cell's name anywhere in the package outside the core.
"""

import ast
import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import charrnn
from charrnn import core
from charrnn.core import CELLS, ContractError, OnnxLayer, Param, UnknownCell, cell, cell_names, register
from charrnn.core.linear import as_layer_input, gate_layer_train_flops, input_backward, input_forward, is_ids, sigmoid
from charrnn.model import INITS

from conftest import SONNET, charrnn as run, error_line, optional, snapshot

# ------------------------------------------------------------------------------------------------
# the leaky memory cell, written with the helpers every cell shares (core/linear.py) and nothing else
#
#     a_t = tanh(W_a x_t + U_a h_{t-1} + b_a)         candidate
#     k_t = sigmoid(W_k x_t + U_k h_{t-1} + b_k)      keep gate
#     m_t = k_t * m_{t-1} + (1 - k_t) * a_t           memory
#     h_t = tanh(m_t)
#
# with the gate blocks a|k stacked in w_x (2H, I), w_h (2H, H) and one bias (2H,).

LEAKY = "leaky"


def leaky_forward(x, params, state0, need_cache=True):
    w_x, w_h, b = params
    x = as_layer_input(x, w_h.dtype)
    T, B = x.shape[:2]
    H = w_h.shape[1]
    xw = input_forward(x, w_x, b)  # (T, B, 2H): W x_t + b for every step
    hbuf = np.empty((T + 1, B, H), dtype=w_h.dtype)
    mbuf = np.empty((T + 1, B, H), dtype=w_h.dtype)
    acts = np.empty((T, B, 2, H), dtype=w_h.dtype)
    hbuf[0], mbuf[0] = state0
    for t in range(T):
        pre = xw[t] + hbuf[t] @ w_h.T
        a, k = np.tanh(pre[:, :H]), sigmoid(pre[:, H:])
        mbuf[t + 1] = k * mbuf[t] + (1 - k) * a
        hbuf[t + 1] = np.tanh(mbuf[t + 1])
        acts[t, :, 0], acts[t, :, 1] = a, k
    cache = (x, hbuf, mbuf, acts) if need_cache else None
    return hbuf[1:].copy(), (hbuf[T].copy(), mbuf[T].copy()), cache


def leaky_backward(dhs, cache, params, grads, dstate_n=None, need_dx=True):
    x, hbuf, mbuf, acts = cache
    w_h = params[1]
    dw_x, dw_h, db = grads
    T, B, H = dhs.shape
    dh_next, dm_next = np.zeros((B, H), dtype=w_h.dtype), np.zeros((B, H), dtype=w_h.dtype)
    if dstate_n is not None:
        dh_next = dh_next if dstate_n[0] is None else dstate_n[0].astype(w_h.dtype)
        dm_next = dm_next if dstate_n[1] is None else dstate_n[1].astype(w_h.dtype)
    dpre = np.empty((T, B, 2 * H), dtype=w_h.dtype)
    for t in range(T - 1, -1, -1):
        a, k = acts[t, :, 0], acts[t, :, 1]
        dh = dhs[t] + dh_next
        dm = dm_next + dh * (1 - hbuf[t + 1] ** 2)
        dpre[t, :, :H] = dm * (1 - k) * (1 - a**2)
        dpre[t, :, H:] = dm * (mbuf[t] - a) * k * (1 - k)
        dw_h += dpre[t].T @ hbuf[t]
        dh_next = dpre[t] @ w_h
        dm_next = dm * k
    dx = input_backward(dpre, x, params[0], dw_x, db, need_dx=need_dx)
    return dx, (dh_next, dm_next)


def leaky_step(x, params, state):
    w_x, w_h, b = params
    (h, m), H = state, w_h.shape[1]
    x = as_layer_input(x, w_h.dtype)
    pre = (w_x.T[x] if is_ids(x) else x @ w_x.T) + b + h @ w_h.T
    a, k = np.tanh(pre[:, :H]), sigmoid(pre[:, H:])
    m_new = k * m + (1 - k) * a
    return np.tanh(m_new), m_new


def leaky_gates(x, params, state):
    w_x, w_h, b = params
    H = w_h.shape[1]
    x = as_layer_input(x, w_h.dtype)
    pre = (w_x.T[x] if is_ids(x) else x @ w_x.T) + b + state[0] @ w_h.T
    return np.stack([np.tanh(pre[:, :H]), sigmoid(pre[:, H:])], axis=1)


def make_leaky() -> types.ModuleType:
    module = types.ModuleType("leaky_cell")
    module.__dict__.update(
        NAME=LEAKY, GATES=2, GATE_NAMES=("a", "k"), SIGMOID_GATES=("k",), STATE=("h", "m"), HEATMAP_STATE="m",
        PARAMS=(Param("w_x", ("G*H", "I"), "input"), Param("w_h", ("G*H", "H"), "recurrent"),
                Param("bias", ("G*H",), "bias")),
        DEFAULT_INIT="orthogonal", DEFAULT_LR=1e-2,
        INIT_BIASES={"orthogonal": (("bias", "k", 1.0),)},  # remember by default, as the LSTM's forget gate
        TORCH_MODULE=None, TORCH_OPTIONS={}, KERAS=None, ONNX=None, KERNELS=False, FUSED_STEP=False,
        forward=leaky_forward, backward=leaky_backward, step=leaky_step,
        forward_reference=leaky_forward, backward_reference=leaky_backward,  # written plainly already
        gate_activations=leaky_gates,
        train_flops=lambda input_size, hidden_size: gate_layer_train_flops(2, input_size, hidden_size),
    )
    return module


@pytest.fixture(scope="module")
def leaky():
    """The leaky cell, registered for this module's tests and taken out of the registry after."""
    module = register(make_leaky())
    yield module
    del CELLS[LEAKY]


# ------------------------------------------------------------------------------------------------
# the toy cell's own proof: its gradients against float64 finite differences


@pytest.mark.parametrize("ids", [True, False])
def test_the_leaky_cells_gradients_match_finite_differences(ids):
    rng = np.random.default_rng(3)
    T, B, H, I = 4, 2, 3, 5
    params = (rng.standard_normal((2 * H, I)) * 0.7, rng.standard_normal((2 * H, H)) * 0.7, rng.standard_normal(2 * H))
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I))
    state0 = (rng.uniform(-0.9, 0.9, (B, H)), rng.standard_normal((B, H)))
    dhs, dstate_n = rng.standard_normal((T, B, H)), (rng.standard_normal((B, H)), rng.standard_normal((B, H)))

    def loss():
        hs, state_n, _ = leaky_forward(x, params, state0, need_cache=False)
        return np.sum(dhs * hs) + sum(np.sum(d * s) for d, s in zip(dstate_n, state_n))

    _, _, cache = leaky_forward(x, params, state0)
    grads = tuple(np.zeros_like(p) for p in params)
    dx, dstate0 = leaky_backward(dhs.copy(), cache, params, grads, dstate_n)
    wrt = [*zip(params, grads), *zip(state0, dstate0)] + ([] if ids else [(x, dx)])
    for a, g in wrt:
        num = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            keep = a[j]
            a[j] = keep + 1e-6
            up = loss()
            a[j] = keep - 1e-6
            num[j] = (up - loss()) / 2e-6
            a[j] = keep
        assert np.abs(g - num).max() <= 1e-7 * max(1.0, np.abs(num).max())
    # one step of `step` is one step of `forward`, and its gates are what forward recorded
    hs, state_n, cache = leaky_forward(x[:1], params, state0)
    np.testing.assert_allclose(leaky_step(x[0], params, state0)[1], state_n[1], rtol=1e-12)
    np.testing.assert_allclose(leaky_gates(x[0], params, state0), cache[3][0], rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# the registry


def test_the_registry_refuses_what_breaks_the_contract_and_names_the_known_cells():
    with pytest.raises(UnknownCell, match=f"unknown cell 'nope': the cells are {', '.join(cell_names())}$"):
        cell("nope")
    with pytest.raises(ContractError, match="already registered"):
        register(cell("lstm"))
    before = dict(CELLS)
    for attr, value, why in [
        ("NAME", "rnn", "already registered"),
        ("SIGMOID_GATES", ("z",), "SIGMOID_GATES"),
        ("STATE", ("m", "h"), "STATE"),
        ("HEATMAP_STATE", "c", "HEATMAP_STATE"),
        ("PARAMS", (Param("w_h", ("G*H", "H"), "recurrent"),), "one input weight"),
        ("PARAMS", (Param("w_x", ("G*H", "I"), "input"), Param("b", ("G*H", "H"), "bias")), "vectors"),
        ("INIT_BIASES", {"orthogonal": (("w_h", "k", 1.0),)}, "INIT_BIASES"),
        ("TORCH_MODULE", "RNN", "torch.nn module has the table"),
        ("TORCH_MODULE", "torch_backend.scan:", "TORCH_MODULE must be"),
        ("decay", 0.5, "decay, when given, must be a function"),
        ("ONNX", OnnxLayer("GRU", (1, 0, 2), {}), "ONNX must be an OnnxLayer"),  # 3 gate blocks, the cell has 2
        ("ONNX", OnnxLayer("RNN", (0, 1), {}), "ONNX must be an OnnxLayer"),  # RNN carries h alone, the cell (h, m)
        ("KERNELS", True, "compiled"),
        ("DEFAULT_LR", 0, "DEFAULT_LR"),
    ]:
        module = make_leaky()
        setattr(module, attr, value)
        with pytest.raises(ContractError, match=why):
            register(module)
    module = make_leaky()
    del module.gate_activations
    with pytest.raises(ContractError, match="lacks gate_activations"):
        register(module)
    assert CELLS == before  # nothing refused was kept


def test_every_registered_cell_declares_what_the_model_needs():
    from charrnn.model.params import count_parameters, parameter_shapes

    for name, module in CELLS.items():
        assert module.NAME == name and cell(name) is module
        assert module.DEFAULT_INIT in INITS
        for feedback in (False, True):  # the closed-form count agrees with the table
            shapes = parameter_shapes(7, 5, 3, name, num_outputs=4, feedback=feedback)
            assert count_parameters(7, 5, 3, name, 4, feedback) == sum(int(np.prod(s)) for s in shapes.values())


# ------------------------------------------------------------------------------------------------
# the core imports alone, and nothing outside it branches on a cell's name


def test_importing_a_cell_loads_only_the_core_and_the_model_nothing_of_training():
    modules = [f"charrnn.core.{name}" for name in cell_names()]
    modules += [f"charrnn.core.{name}_kernels" for name, m in CELLS.items() if m.KERNELS and core._jit.available()]
    code = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
            "print('\\n'.join(sorted(m for m in sys.modules if m == 'charrnn' or m.startswith('charrnn.'))))")
    for module in modules:
        got = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True)
        loaded = got.stdout.split()
        assert module in loaded
        outside = [m for m in loaded if m != "charrnn" and not m.startswith("charrnn.core")]
        assert not outside, f"importing {module} loaded {outside}"
    got = subprocess.run([sys.executable, "-c", code, "charrnn"], capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["charrnn"]
    # the model stands on the core alone too (with the errors, the thread count and the argument
    # checker of its public methods): no settings, training, files or command line
    got = subprocess.run([sys.executable, "-c", code, "charrnn.model"], capture_output=True, text=True, check=True)
    outside = [m for m in got.stdout.split()
               if m not in ("charrnn", "charrnn.errors", "charrnn.threads", "charrnn.checks") and not m.startswith(("charrnn.core", "charrnn.model"))]
    assert not outside, f"importing charrnn.model loaded {outside}"


def _cell_name_literals(node, names):
    if isinstance(node, ast.Constant) and node.value in names:
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _cell_name_literals(element, names)


def test_no_module_outside_the_core_compares_a_cells_name():
    """A comparison with a registered cell's name (==, !=, in, a match case) or a table keyed by one,
    anywhere in the package outside charrnn/core: what differs between cells is the cell's to say."""
    names = set(cell_names())
    package = Path(charrnn.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                operands = [k for k in node.keys if k is not None]
            elif isinstance(node, ast.MatchValue):
                operands = [node.value]
            else:
                continue
            hits = [v for op in operands for v in _cell_name_literals(op, names)]
            if hits:
                found.append(f"{path.relative_to(package)}:{node.lineno} {hits}")
    assert not found


# ------------------------------------------------------------------------------------------------
# the leaky cell through the command line

TINY = ["--hidden-size", "16", "--seq-len", "16", "--batch-size", "4", "--log-every", "5", "--eval-every", "10",
        "--sample-every", "10", "--sample-length", "30", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    p = tmp_path_factory.mktemp("leaky") / "sonnet.txt"
    p.write_text(SONNET * 6, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def leaky_run(leaky, text, tmp_path_factory):
    """A leaky cell trained 40 steps without a stop."""
    run_dir = tmp_path_factory.mktemp("leaky") / "run"
    proc = run("train", text, "--cell", LEAKY, "--out", run_dir, "--steps", "40", *TINY)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def _records(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_leaky_cell_trains_with_validation_and_samples(leaky_run):
    from charrnn.io.checkpoint import load_checkpoint

    config = json.loads((leaky_run / "config.json").read_text())
    assert (config["cell"], config["init"], config["lr"]) == (LEAKY, "orthogonal", 1e-2)  # the cell's defaults
    c = load_checkpoint(leaky_run / "latest.safetensors")
    assert c.model.cell == LEAKY and c.state["step"] == 40
    assert sorted(c.model.params) == sorted(["rnn.w_x_l0", "rnn.w_h_l0", "rnn.bias_l0", "head.weight", "head.bias"])
    assert isinstance(c.hidden, tuple) and len(c.hidden) == 2  # (h, m) carried, saved and read back
    records = _records(leaky_run)
    val = [r["val_nats_per_char"] for r in records if r["val_nats_per_char"] is not None]
    assert len(val) >= 4 and val[-1] < val[0]  # it learns
    assert records[-1]["spectral_radius"] and len(records[-1]["spectral_radius"][0]) == 2  # W_h's blocks a, k
    assert (leaky_run / "samples.txt").read_text(encoding="utf-8").count("step") >= 4


def test_the_leaky_cell_resumes_exactly_after_an_interruption(leaky, leaky_run, text, tmp_path, monkeypatch):
    from charrnn.data.text import Batcher
    from charrnn.io.checkpoint import load_checkpoint

    real, calls = Batcher.next_batch, []

    def interrupted(self):  # Ctrl-C while the 23rd step is taken
        calls.append(1)
        if len(calls) == 23:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    run_dir = tmp_path / "run"
    monkeypatch.setattr(Batcher, "next_batch", interrupted)
    proc = run("train", text, "--cell", LEAKY, "--out", run_dir, "--steps", "40", *TINY)
    assert proc.returncode == 130, proc.stderr
    assert load_checkpoint(run_dir / "latest.safetensors").state["step"] == 23
    monkeypatch.setattr(Batcher, "next_batch", real)
    proc = run("train", "--resume", run_dir, "--quiet")
    assert proc.returncode == 0, proc.stderr
    for name in ("latest.safetensors", "best.safetensors"):
        a, b = load_checkpoint(run_dir / name), load_checkpoint(leaky_run / name)
        assert {k: v for k, v in a.state.items() if k != "elapsed"} == {k: v for k, v in b.state.items() if k != "elapsed"}
        for k in b.model.params:
            assert np.array_equal(a.model.params[k], b.model.params[k]), k
        for k in b.optimizer_arrays:
            assert np.array_equal(a.optimizer_arrays[k], b.optimizer_arrays[k]), k
        assert all(np.array_equal(x, y) for x, y in zip(a.hidden, b.hidden))
    assert _records(run_dir) == _records(leaky_run)
    assert (run_dir / "samples.txt").read_text() == (leaky_run / "samples.txt").read_text()


def test_the_leaky_cell_samples_evaluates_and_checks_its_gradients(leaky, leaky_run, text):
    proc = run("sample", leaky_run, "--length", "60", "--seed", "1")
    assert proc.returncode == 0 and len(proc.stdout) >= 60, proc.stderr
    assert run("sample", leaky_run, "--length", "60", "--seed", "1").stdout == proc.stdout
    proc = run("sample", leaky_run, "--length", "20", "--seed", "2", "--num-samples", "3")
    assert proc.returncode == 0, proc.stderr
    proc = run("eval", leaky_run, text, "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0 < json.loads(proc.stdout)["nats_per_char"] < np.log(len(set(SONNET)))
    proc = run("eval", leaky_run, text, "--dynamic", "--dynamic-lr", "0.01", "--dynamic-segment", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dynamic"] is True and json.loads(proc.stdout)["tuned"] == ["decay"]
    proc = run("gradcheck", "--cell", LEAKY)
    assert proc.returncode == 0 and "PASS" in proc.stdout and "rnn.w_x_l0" in proc.stdout and "m0" in proc.stdout


def test_the_leaky_cell_is_diagnosed_reported_and_drawn(leaky, leaky_run, tmp_path):
    proc = run("diagnose", leaky_run, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["cell"] == LEAKY and set(d["saturation"][0]) == {"all", "k"}  # its one sigmoid gate
    assert len(d["spectral_radius"][0]) == 2  # a value per gate block of W_h
    proc = run("diagnose", leaky_run)
    assert proc.returncode == 0 and "a: radius" in proc.stdout and "d(h,m)_t/d(h,m)_{t-1}" in proc.stdout
    out = tmp_path / "report.html"
    proc = run("report", leaky_run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert "Gradient flow through time" in page and "Hidden units" in page and LEAKY in page
    proc = run("heatmap", leaky_run, "--out", tmp_path / "h.html")
    assert proc.returncode == 0 and "state m" in proc.stdout, proc.stderr  # the cell's own default part
    assert (tmp_path / "h.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    error_line(run("heatmap", leaky_run, "--state", "c"), "heatmap")


def test_what_needs_a_pytorch_keras_or_onnx_twin_refuses_the_leaky_cell_by_name(leaky, leaky_run, text, tmp_path):
    for fmt, out in (("torch", tmp_path / "m.safetensors"), ("keras", tmp_path / "m.keras"),
                     ("onnx", tmp_path / "m.onnx")):
        line = error_line(run("export", leaky_run, out, "--format", fmt), "export")
        assert LEAKY in line and not out.exists()
    optional("torch")
    line = error_line(run("train", text, "--cell", LEAKY, "--backend", "torch", "--out", tmp_path / "t", *TINY), "train")
    assert "the leaky cell has no PyTorch module" in line and not (tmp_path / "t").exists()
    # resumed or fine-tuned on the torch backend, sampled or scored by it: refused before anything is written
    before = snapshot(leaky_run)
    for cmd, args in (("train", ["--resume", leaky_run, "--steps", "50"]),
                      ("train", [text, "--init-from", leaky_run, "--out", tmp_path / "ft", "--steps", "2"]),
                      ("sample", [leaky_run, "--length", "5", "--seed", "1"]), ("eval", [leaky_run, text])):
        assert "the leaky cell has no PyTorch module" in error_line(run(cmd, *args, "--backend", "torch"), cmd)
    assert snapshot(leaky_run) == before and not (tmp_path / "ft").exists()


def test_the_tagger_widens_the_leaky_cells_input_weight_with_its_output_recurrence(leaky, tmp_path):
    data = tmp_path / "tags.jsonl"
    words = SONNET.split()[:60]
    data.write_text("".join(json.dumps({"text": w, "tags": ["U" if c.isupper() else "l" for c in w]}) + "\n"
                            for w in words), encoding="utf-8")
    run_dir = tmp_path / "tagger"
    proc = run("tag", "train", data, "--cell", LEAKY, "--output-recurrence", "--hidden-size", "8", "--steps", "6",
               "--out", run_dir, "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = run("tag", "eval", run_dir, data, "--beam", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    from charrnn.io.task_checkpoint import load_task_checkpoint

    model = load_task_checkpoint(run_dir).model
    assert model.params["feedback.weight"].shape == (16, 2)  # as many rows as the table's input weight
