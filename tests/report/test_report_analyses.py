"""The report's learners' analyses on a real (tiny) LSTM run: gate saturation as a scatter with
its table, and the model against an interpolated Kneser-Ney n-gram on the held-out text, each
number the diagnostics' own."""

import re

import numpy as np
import pytest

import charrnn
from charrnn.diagnostics.ngram import compare_model
from charrnn.diagnostics.saturation import gate_saturation
from charrnn.io.checkpoint import load_checkpoint
from charrnn.io.rundir import run_text
from charrnn.report import html

from conftest import SONNET, run_cli

pytest.importorskip("matplotlib")  # the `report` extra, part of `test`


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("analyses")
    (d / "sonnet.txt").write_text(SONNET * 8, encoding="utf-8")
    r = run_cli("train", d / "sonnet.txt", "--out", d / "run", "--cell", "lstm", "--hidden-size", 16, "--seq-len", 16,
                "--batch-size", 4, "--steps", 60, "--eval-every", 30, "--quiet", "--seed", 2)
    assert r.returncode == 0, r.stderr
    return d / "run"


def section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else None]


def test_gate_saturation_section(lstm_run):
    page = html.build_report(lstm_run)
    body = section(page, "Gate saturation")
    assert body.count('src="data:image/png;base64,') == 1
    c = load_checkpoint(lstm_run, dtype="float64")
    rt = run_text(c)
    ids = np.asarray(rt.val[: html.WARMUP + html.GRADFLOW_WINDOW], dtype=np.intp)
    state0 = c.model.logits(ids[None, : html.WARMUP])[1]
    sats = gate_saturation(c.model, ids[html.WARMUP :][: html.GRADFLOW_WINDOW], state0)
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\w)</td><td>([\d.]+)%</td><td>([\d.]+)%</td>", body)
    assert [(int(l), g) for l, g, _, _ in rows] == [(s.layer, s.gate) for s in sats] == [(0, "i"), (0, "f"), (0, "o")]
    for (_, _, left, right), s in zip(rows, sats):
        assert float(left) == pytest.approx(100 * s.left.mean(), abs=0.05)
        assert float(right) == pytest.approx(100 * s.right.mean(), abs=0.05)


def test_ngram_section(lstm_run):
    page = html.build_report(lstm_run)
    body = section(page, "The recurrent model against an n-gram")
    c = load_checkpoint(lstm_run, dtype="float64")
    rt = run_text(c)
    comp = compare_model(charrnn.api.LanguageModel(c.model, c.vocab), rt.train, np.asarray(rt.val[: html.NGRAM_CHARS]),
                         html.NGRAM_ORDER)
    assert f"<b>{comp.model_bits_per_char:.3f} bits per character</b>" in body
    assert f"<b>{comp.ngram_bits_per_char:.3f}</b>" in body and "Kneser-Ney 5-gram" in body
    best = comp.by_character(min_count=5)[0]
    assert f"<td>{best.count}</td><td>{best.model_bits:.2f}</td><td>{best.ngram_bits:.2f}</td>" in body
    assert body.count("<span style=") == min(len(comp.chars), html.NGRAM_SHOWN)


def test_a_tanh_rnn_or_a_run_without_held_out_text_says_why(tmp_path):
    (tmp_path / "t.txt").write_text(SONNET * 4, encoding="utf-8")
    r = run_cli("train", tmp_path / "t.txt", "--out", tmp_path / "run", "--cell", "rnn", "--hidden-size", 8,
                "--steps", 10, "--val-frac", 0, "--quiet")
    assert r.returncode == 0, r.stderr
    page = html.build_report(tmp_path / "run")
    assert "Nothing to show: a rnn has no sigmoid gates" in section(page, "Gate saturation")
    assert "Nothing to show: the run holds out no validation text" in section(page,
                                                                              "The recurrent model against an n-gram")
