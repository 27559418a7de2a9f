"""ONNX export with ONNX Runtime as the oracle: every registered cell is exported and gives the
engine's log-probabilities (against `LanguageModel.score`, one stream, <= 1e-5 nats per
character) and final states, at one and two layers, time 1 and 100, batch 1 and 7, or is refused
by name; greedy generation with ONNX Runtime alone is `charrnn sample --greedy`; the README's
example runs as written. The largest differences are printed (`pytest -s`) for BENCHMARKS.md."""

import contextlib
import io
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import SONNET, charrnn, error_line, listing, optional, parts

onnx = optional("onnx")
ort = optional("onnxruntime")
pytestmark = pytest.mark.onnx

import charrnn as charrnn_api  # noqa: E402
from charrnn import CharRNN, ConfigError  # noqa: E402
from charrnn.api import LanguageModel  # noqa: E402
from charrnn.core import CELLS, cell, cell_names, register  # noqa: E402
from charrnn.data.text import Vocab  # noqa: E402
from charrnn.interop.keras import save_imported  # noqa: E402
from charrnn.interop.onnx import build_onnx_model  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
# the characters of the sonnet and of the README example's prime
SYMBOLS = sorted(set(SONNET + "ROMEO:"))
H = 24
TOL = 1e-5


def session(model: CharRNN, vocab: Vocab) -> "ort.InferenceSession":
    """ONNX Runtime running the exported model, straight from its bytes."""
    data = build_onnx_model(model, vocab).SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def run(sess, model: CharRNN, ids: np.ndarray, state=None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(logits, final state parts) of ids (B, T) from `state` (parts of (L, B, H); None: zeros)."""
    if state is None:
        state = parts(model.initial_state(ids.shape[0]))
    names = [f"{p}0" for p in model.state_parts]
    out = sess.run(None, {"ids": ids.astype(np.int64), **{n: np.asarray(s, np.float32) for n, s in zip(names, state)}})
    return out[0], tuple(out[1:])


def log_probs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ln p(target) of each position, in float64, from logits (B, T, V) and targets (B, T)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]


def exported_cells():
    return [name for name in cell_names() if cell(name).ONNX is not None]


def random_model(cell_name: str, layers: int, dtype: str = "float32", vocab_size: int = len(SYMBOLS),
                 seed: int = 0) -> CharRNN:
    """A random model with both biases non-zero (PyTorch's init): every parameter shows in the output."""
    return CharRNN(vocab_size, H, layers, dtype, seed=seed, init="pytorch", cell=cell_name)


def check_parity(model: CharRNN, vocab: Vocab, configs) -> dict:
    """For each (T, B): ONNX Runtime's log-probabilities of B random texts of T + 1 symbols against
    `LanguageModel.score` of each, and its logits and final states from a random state against the
    engine's. Returns the largest absolute differences."""
    sess, lm = session(model, vocab), LanguageModel(model, vocab)
    rng = np.random.default_rng(1)
    worst = {}
    for T, B in configs:
        ids = rng.integers(0, vocab.size, (B, T + 1))
        logits, _ = run(sess, model, ids[:, :T])
        assert logits.shape == (B, T, vocab.size) and logits.dtype == np.float32
        got = log_probs(logits, ids[:, 1:])
        scores = [lm.score(vocab.decode_bytes(row)) for row in ids]  # bytes: exact in either encoding
        assert all(np.array_equal(s.text_ids, row) for s, row in zip(scores, ids))
        lp = max(float(np.abs(got[b] - scores[b].log_probs).max()) for b in range(B))
        state = tuple(rng.uniform(-0.9, 0.9, (model.num_layers, B, H)) for _ in model.state_parts)
        logits, finals = run(sess, model, ids[:, :T], state)
        want, want_state = model.logits(ids[:, :T], model.public_state(state))
        st = max(float(np.abs(a - b).max()) for a, b in zip(finals, parts(want_state)))
        lg = float(np.abs(logits - want).max())
        worst[(T, B)] = (lp, lg, st)
        assert lp <= TOL and lg <= TOL and st <= TOL, ((T, B), worst[(T, B)])
    return worst


def show(what: str, worst: dict) -> None:
    for (T, B), (lp, lg, st) in worst.items():
        print(f"{what} T={T} B={B}: log-probs {lp:.1e}, logits {lg:.1e}, final states {st:.1e}")


# -- every cell, exported or refused by name --------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell_name", cell_names())
def test_every_cell_gives_onnx_runtime_the_engines_log_probs_and_states(cell_name, layers):
    model, vocab = random_model(cell_name, layers), Vocab(SYMBOLS)
    if cell(cell_name).ONNX is None:  # skip nothing: a cell without an operator is refused by name
        with pytest.raises(ConfigError, match=f"the {cell_name} cell has no standard ONNX operator"):
            build_onnx_model(model, vocab)
        return
    show(f"{cell_name} L={layers}", check_parity(model, vocab, [(1, 1), (1, 7), (100, 1), (100, 7)]))


@pytest.mark.parametrize("cell_name", exported_cells())
def test_a_float64_run_is_exported_in_float32_within_the_same_bound(cell_name):
    model = random_model(cell_name, 2, "float64")
    show(f"{cell_name} L=2 float64", check_parity(model, Vocab(SYMBOLS), [(100, 7)]))
    proto = build_onnx_model(model, Vocab(SYMBOLS))
    assert {t.data_type for t in proto.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}


def test_a_bytes_model_is_exported_with_its_byte_values():
    rng = np.random.default_rng(2)
    values = sorted(int(v) for v in rng.choice(256, 40, replace=False))
    vocab = Vocab(values, encoding="bytes")
    model = random_model("lstm", 2, vocab_size=vocab.size)
    show("lstm L=2 bytes", check_parity(model, vocab, [(100, 7)]))
    meta = {p.key: p.value for p in build_onnx_model(model, vocab).metadata_props}
    assert json.loads(meta["vocab"]) == values and meta["encoding"] == "bytes"


def test_the_interface_is_the_documented_one():
    for name in exported_cells():
        model = random_model(name, 2)
        proto = build_onnx_model(model, Vocab(SYMBOLS))
        onnx.checker.check_model(proto, full_check=True)
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17

        def shapes(values):
            return {v.name: (v.type.tensor_type.elem_type, [d.dim_param or d.dim_value
                                                            for d in v.type.tensor_type.shape.dim]) for v in values}

        f, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
        state = [2, "batch", H]
        want_in = {"ids": (i64, ["batch", "time"])} | {f"{p}0": (f, state) for p in model.state_parts}
        want_out = {"logits": (f, ["batch", "time", len(SYMBOLS)])} | {f"{p}T": (f, state) for p in model.state_parts}
        assert shapes(proto.graph.input) == want_in and shapes(proto.graph.output) == want_out
        assert [v.name for v in proto.graph.input] == list(want_in)  # ids, h0 (, c0): the README relies on it
        assert [v.name for v in proto.graph.output] == list(want_out)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(meta["vocab"]) == SYMBOLS and meta["cell"] == name
        assert (meta["vocab_size"], meta["hidden_size"], meta["num_layers"]) == (str(len(SYMBOLS)), str(H), "2")
        assert json.loads(meta["state"]) == list(model.state_parts)
    assert {cell(n).ONNX.op for n in exported_cells()} >= {"RNN", "LSTM", "GRU"}  # the standard operators


# -- generation -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """trained(cell) -> a run directory of a small model of that cell trained on the sonnet (a
    second each): its greedy text wanders, with choices far from ties."""
    runs: dict[str, Path] = {}

    def get(cell_name: str) -> Path:
        if cell_name not in runs:
            out = tmp_path_factory.mktemp("onnx") / cell_name
            charrnn_api.fit(texts=[SONNET * 3 + "ROMEO:\n"], out=out, quiet=True, cell=cell_name, hidden_size=32,
                            num_layers=2, steps=250, seq_len=32, batch_size=8, lr=1e-2, sample_every=0, eval_every=0)
            runs[cell_name] = out
        return runs[cell_name]

    return get


def saved_run(model: CharRNN, where: Path) -> Path:
    save_imported(model, Vocab(SYMBOLS), where)
    return where


def onnx_greedy(path: Path, prime: str, length: int) -> str:
    """Greedy decoding with ONNX Runtime alone, one character per call, the states carried."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    vocab = json.loads(meta["vocab"])
    L, hidden = int(meta["num_layers"]), int(meta["hidden_size"])
    states = [np.zeros((L, 1, hidden), np.float32) for _ in json.loads(meta["state"])]
    names = [i.name for i in sess.get_inputs()][1:]
    text, ids = prime, np.array([[vocab.index(c) for c in prime]], np.int64)
    for _ in range(length):
        logits, *states = sess.run(None, {"ids": ids, **dict(zip(names, states))})
        ids = logits[:, -1:].argmax(-1)
        text += vocab[int(ids[0, 0])]
    return text


@pytest.mark.parametrize("cell_name", exported_cells())
def test_greedy_generation_in_onnx_runtime_is_charrnn_sample_greedy(cell_name, trained, tmp_path):
    run_dir = trained(cell_name)
    proc = charrnn("export", run_dir, "--format", "onnx", tmp_path / "m.onnx")
    assert proc.returncode == 0 and proc.stderr == f"wrote {tmp_path / 'm.onnx'}\n", proc.stderr
    proc = charrnn("sample", run_dir, "--greedy", "--prime", "Shall I", "--length", "200")
    assert proc.returncode == 0, proc.stderr
    got = onnx_greedy(tmp_path / "m.onnx", "Shall I", 200)
    assert got + "\n" == proc.stdout
    assert len(set(got[7:])) >= 4  # it wanders: the comparison has something to compare
    # a trained model's larger weights and sharper predictions, over the whole sonnet in one stream
    lm = charrnn_api.load(run_dir)
    ids = lm.encode(SONNET)
    logits, _ = run(ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]), lm.model,
                    ids[None, :-1])
    diff = float(np.abs(log_probs(logits, ids[None, 1:])[0] - lm.score(SONNET).log_probs).max())
    print(f"{cell_name} L=2 trained T={ids.size - 1} B=1: log-probs {diff:.1e}")
    assert diff <= TOL


def readme_onnx_example() -> str:
    """The README's Python block that uses ONNX Runtime."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if "import onnxruntime" in b]
    assert len(found) == 1, "README.md must hold one Python example with ONNX Runtime"
    return found[0]


def test_the_readmes_example_generates_with_onnx_runtime_alone_what_charrnn_samples(trained, tmp_path, monkeypatch):
    code = readme_onnx_example()
    assert "charrnn" not in code  # ONNX Runtime and NumPy alone
    run_dir = trained("gru")
    monkeypatch.chdir(tmp_path)
    export = re.search(r"\$ (charrnn export \S+ --format onnx (\S+))", README.read_text(encoding="utf-8"))
    assert export and export.group(2) in code, "the README's export command writes the file its example opens"
    proc = charrnn("export", run_dir, "--format", "onnx", export.group(2))
    assert proc.returncode == 0, proc.stderr
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    proc = charrnn("sample", run_dir, "--greedy", "--prime", namespace["prime"], "--length", str(namespace["length"]))
    assert proc.returncode == 0, proc.stderr
    assert out.getvalue() == proc.stdout and len(out.getvalue()) > namespace["length"]


# -- bad input --------------------------------------------------------------------------------------

def test_a_cell_without_an_onnx_operator_is_refused_by_name_before_anything_is_written(tmp_path):
    twin = types.ModuleType("gru_without_onnx")
    twin.__dict__.update({k: v for k, v in vars(cell("gru")).items() if not k.startswith("__")})
    twin.NAME, twin.ONNX = "plain_gru", None
    register(twin)
    try:
        run_dir = saved_run(random_model("plain_gru", 1), tmp_path / "run")
        line = error_line(charrnn("export", run_dir, "--format", "onnx", tmp_path / "m.onnx"), "export")
        assert "the plain_gru cell has no standard ONNX operator" in line
        assert all(n in line for n in exported_cells())  # and names those that have one
        assert listing(tmp_path).keys() == {"run"}
    finally:
        del CELLS["plain_gru"]


def test_a_run_without_a_model_and_a_missing_onnx_package_are_one_line_each(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    line = error_line(charrnn("export", tmp_path / "empty", "--format", "onnx", tmp_path / "m.onnx"), "export")
    assert "empty" in line
    run_dir = saved_run(random_model("gru", 1), tmp_path / "run")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    line = error_line(charrnn("export", run_dir, "--format", "onnx", tmp_path / "m.onnx"), "export")
    assert "pip install 'charrnn[onnx]'" in line
    assert listing(tmp_path).keys() == {"empty", "run"}


def test_a_float64_run_is_said_to_be_exported_in_float32(tmp_path):
    run_dir = saved_run(random_model("rnn", 1, "float64"), tmp_path / "run")
    proc = charrnn("export", run_dir, "--format", "onnx", tmp_path / "m.onnx")
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == ["charrnn export: the model is float64; the ONNX model holds and computes in "
                                        "float32", f"wrote {tmp_path / 'm.onnx'}"]
    weights = [t for t in onnx.load(tmp_path / "m.onnx").graph.initializer if t.name.startswith(("W_", "R_", "B_"))]
    assert weights and {t.data_type for t in weights} == {onnx.TensorProto.FLOAT}
