"""minGRU and minLSTM through the commands the other test files do not take every cell through:
report and heatmap of a trained run, fine-tuning on the torch backend, and classify and tag
(with output recurrence) on both backends. Training, exact resume, sample, eval, export and
--init-from on the NumPy engine: tests/train/test_train_cells.py (every registered cell); the
torch backend's parity and resume: tests/torch_backend/; diagnose: tests/diagnostics/test_decay.py."""

import json
import random

import numpy as np
import pytest

from charrnn.core import CELLS
from charrnn.io.checkpoint import load_checkpoint

from conftest import SONNET, run_cli

# the cells whose gates read the input alone, discovered from the registry
PARALLEL = [name for name, m in CELLS.items() if getattr(m, "decay", None) is not None]
TINY = ["--hidden-size", "12", "--seq-len", "12", "--batch-size", "4", "--sample-every", "0", "--quiet"]


@pytest.fixture(scope="module", params=PARALLEL)
def trained(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param)
    text = base / "sonnet.txt"
    text.write_text(SONNET * 4, encoding="utf-8")
    run = base / "run"
    proc = run_cli("train", text, "--out", run, "--cell", request.param, "--num-layers", "2", "--steps", "20", *TINY)
    assert proc.returncode == 0, proc.stderr
    return request.param, run, text


def test_report_and_heatmap(trained, tmp_path):
    cell, run, _ = trained
    proc = run_cli("report", run, "--out", tmp_path / "report.html")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Gradient flow through time" in page and cell in page
    proc = run_cli("heatmap", run, "--out", tmp_path / "h.html")
    assert proc.returncode == 0 and "state h" in proc.stdout, proc.stderr
    assert (tmp_path / "h.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.torch
def test_fine_tuning_on_the_torch_backend(trained, tmp_path):
    cell, run, text = trained
    out = tmp_path / "ft"
    proc = run_cli("train", text, "--init-from", run, "--out", out, "--steps", "3", "--backend", "torch", "--quiet")
    assert proc.returncode == 0, proc.stderr
    a, b = load_checkpoint(run), load_checkpoint(out)
    assert b.model.cell == cell and b.state["step"] == 3
    assert any(not np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)  # it trained on


def first_char_tsv(path, n=60):
    r = random.Random(0)
    words = ["".join(r.choice("abcd") for _ in range(r.randint(1, 10))) for _ in range(n)]
    path.write_text("".join(f"{w}\t{w[0].upper()}\n" for w in words), encoding="utf-8")
    return path


def parity_jsonl(path, n=60):
    r = random.Random(1)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            s = "".join(r.choice("ab") for _ in range(r.randint(1, 12)))
            tags, cur = [], 0
            for c in s:
                cur ^= c == "a"
                tags.append("XY"[cur])
            f.write(json.dumps({"text": s, "tags": tags}) + "\n")
    return path


@pytest.mark.parametrize("cell", PARALLEL)
@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.torch)])
def test_classify_and_tag_with_output_recurrence(cell, backend, tmp_path):
    for task, data, extra in (("classify", first_char_tsv(tmp_path / "c.tsv"), []),
                              ("tag", parity_jsonl(tmp_path / "t.jsonl"), ["--output-recurrence"])):
        run = tmp_path / task
        proc = run_cli(task, "train", data, "--cell", cell, "--hidden-size", "8", "--steps", "6", "--out", run,
                       "--backend", backend, "--quiet", *extra)
        assert proc.returncode == 0, proc.stderr
        proc = run_cli(task, "eval", run, data, "--json")
        assert proc.returncode == 0, proc.stderr
        assert 0 <= json.loads(proc.stdout)["accuracy"] <= 1


@pytest.mark.parametrize("fmt", ["keras", "onnx"])
def test_keras_and_onnx_export_refuse_them_by_name(trained, tmp_path, fmt):
    cell, run, _ = trained
    out = tmp_path / f"m.{fmt}"
    proc = run_cli("export", run, out, "--format", fmt)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("charrnn export: error: "), proc.stderr
    assert cell in lines[0] and not out.exists()
