"""The commands on runs with the stack's options (--residual, --layer-norm): sample, eval,
diagnose, report, heatmap and export rebuild the same model; Keras and ONNX export refuse it by
name before writing anything; classify and tag train and predict with both options."""

import json

import numpy as np
import pytest

from charrnn.io.checkpoint import load_checkpoint
from conftest import SONNET, error_line, run_cli

TINY = ["--hidden-size", "12", "--seq-len", "12", "--batch-size", "4", "--sample-every", "0", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("stacked")
    text = base / "sonnet.txt"
    text.write_text(SONNET * 4, encoding="utf-8")
    run = base / "run"
    proc = run_cli("train", text, "--out", run, "--cell", "lstm", "--num-layers", "3", "--residual", "--layer-norm",
                   "--steps", "20", *TINY)
    assert proc.returncode == 0, proc.stderr
    return run, text


def test_sample_eval_diagnose_report_and_heatmap(trained, tmp_path):
    run, text = trained
    model = load_checkpoint(run).model
    assert model.residual and model.layer_norm
    proc = run_cli("sample", run, "--length", "30", "--seed", "3")
    assert proc.returncode == 0 and len(proc.stdout) >= 30, proc.stderr
    proc = run_cli("eval", run, text, "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0 < json.loads(proc.stdout)["nats_per_char"] < np.log(model.vocab_size) + 1
    proc = run_cli("diagnose", run, "--text", text, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["num_layers"] == 3 and len(report["grad_norm_by_lag"]) == 3
    proc = run_cli("report", run, "--out", tmp_path / "report.html")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("heatmap", run, "--out", tmp_path / "h.html")
    assert proc.returncode == 0, proc.stderr


def test_export_to_pytorch_keeps_the_norms_and_keras_onnx_refuse(trained, tmp_path):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    run, _ = trained
    model = load_checkpoint(run).model
    out = tmp_path / "m.safetensors"
    proc = run_cli("export", run, out)
    assert proc.returncode == 0, proc.stderr
    arrays = load_file(out)
    assert set(arrays) == set(model.params) and {"norm_l1.weight", "norm_l2.bias", "norm_out.weight"} <= set(arrays)
    with safe_open(out, "np") as f:
        meta = json.loads(f.metadata()["model"])
    assert meta["residual"] is True and meta["layer_norm"] is True
    for fmt, name in (("keras", "m.keras"), ("onnx", "m.onnx")):
        line = error_line(run_cli("export", run, tmp_path / name, "--format", fmt), "export")
        assert f"export --format {fmt} builds the plain layer stack" in line and "--residual and --layer-norm" in line
        assert not (tmp_path / name).exists() and not (tmp_path / "m.vocab.json").exists()


def test_classify_and_tag_train_and_predict_with_both_options(tmp_path):
    import random

    r = random.Random(0)
    words = ["".join(r.choice("abcd") for _ in range(r.randint(1, 10))) for _ in range(200)]
    data = tmp_path / "c.tsv"
    data.write_text("".join(f"{w}\t{w[0].upper()}\n" for w in words), encoding="utf-8")
    flags = ["--residual", "--layer-norm", "--num-layers", "2", "--hidden-size", "16", "--quiet"]
    proc = run_cli("classify", "train", data, "--out", tmp_path / "c", "--steps", 120, "--eval-every", 0, "--lr", 0.01,
                   *flags)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("classify", "eval", tmp_path / "c", data, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["accuracy"] >= 0.9, proc.stdout + proc.stderr
    proc = run_cli("classify", "predict", tmp_path / "c", "cab", "dd", "--json")
    assert [json.loads(line)["labels"][0]["label"] for line in proc.stdout.splitlines()] == ["C", "D"]

    tags = tmp_path / "p.jsonl"
    with open(tags, "w", encoding="utf-8") as f:
        for _ in range(200):  # the tag flips at every 'a'
            s = "".join(r.choice("ab") for _ in range(r.randint(1, 20)))
            cur, seq = 0, []
            for c in s:
                cur ^= c == "a"
                seq.append("XY"[cur])
            f.write(json.dumps({"text": s, "tags": seq}) + "\n")
    proc = run_cli("tag", "train", tags, "--out", tmp_path / "t", "--steps", 80, "--eval-every", 0, "--lr", 0.03,
                   "--val-frac", 0, "--lr-schedule", "constant", "--output-recurrence", *flags)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("tag", "eval", tmp_path / "t", tags, "--json", "--beam", 2)
    assert proc.returncode == 0 and json.loads(proc.stdout)["accuracy"] >= 0.95, proc.stdout + proc.stderr
    proc = run_cli("tag", "predict", tmp_path / "t", "abba", "--json")
    assert json.loads(proc.stdout) == {"text": "abba", "tags": ["Y", "Y", "Y", "X"]}
