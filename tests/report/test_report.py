"""The inspection commands on a real (tiny) run: diagnose, heatmap, impulse, sample --novelty,
plot and report, their bad inputs, and the report opened in a real browser (headless Chromium)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from charrnn.io.checkpoint import load_checkpoint
from charrnn.model import layer_names

from conftest import SONNET, chromium, optional, run_cli

matplotlib = optional("matplotlib")  # the `report` extra, part of `test`
import matplotlib.image  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    text = d / "sonnet.txt"
    text.write_text(SONNET * 8, encoding="utf-8")
    r = run_cli("train", text, "--out", d / "run", "--cell", "rnn", "--hidden-size", 24, "--seq-len", 16, "--batch-size", 4,
                "--steps", 60, "--eval-every", 20, "--log-every", 10, "--sample-every", 20, "--sample-length", 120,
                "--quiet", "--seed", 3)
    assert r.returncode == 0, r.stderr
    return d / "run"


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_metrics_record_spectral_radius_and_gradient_norms(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if r["val_nats_per_char"] is not None]
    assert [r["step"] for r in evaluated] == [20, 40, 60]
    assert all("spectral_radius" not in r for r in records if r["val_nats_per_char"] is None)
    c = load_checkpoint(run_dir / "latest.safetensors")
    w = c.model.params[layer_names(c.model.cell, 0)[1]].astype(np.float64)
    assert evaluated[-1]["spectral_radius"] == [[pytest.approx(np.abs(np.linalg.eigvals(w)).max(), rel=1e-9)]]
    norms = records[-1]["grad_norms"]
    assert set(norms) == set(c.model.params) and all(v > 0 for v in norms.values())
    # the global norm is the norm of the per-parameter norms (both before clipping)
    assert np.sqrt(sum(v * v for v in norms.values())) == pytest.approx(records[-1]["grad_norm"], rel=1e-5)


def test_diagnose_json(run_dir):
    r = run_cli("diagnose", run_dir, "--json", "--window", 40, "--max-lag", 12)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert len(d["grad_norm_by_lag"]) == 1 and len(d["grad_norm_by_lag"][0]) == 13
    assert d["targets"] == 40 - 1 - 12 and d["cell"] == "rnn"
    assert isinstance(d["spectral_radius"][0], float) and len(d["singular_values"][0]) == 2
    assert d["verdict"][0] in ("vanishing", "exploding", "healthy") and d["reading"]


def test_diagnose_compares_several_runs(run_dir, tmp_path):
    r = run_cli("diagnose", run_dir, run_dir / "latest.safetensors", "--json", "--window", 30, "--max-lag", 5,
                "--plot", tmp_path / "both.png")
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    assert [d["run"] for d in docs] == [str(run_dir), str(run_dir / "latest.safetensors")]
    assert all(len(d["grad_norm_by_lag"][0]) == 6 for d in docs)
    assert (tmp_path / "both.png").stat().st_size > 1000


def test_diagnose_text_plot_and_human_output(run_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(SONNET, encoding="utf-8")
    r = run_cli("diagnose", run_dir, "--text", text, "--plot", tmp_path / "g.png", "--max-lag", 20)
    assert r.returncode == 0, r.stderr
    assert "reading: the gradient is multiplied by" in r.stdout and "|state Jacobian|" in r.stdout
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagnose_bad_inputs(run_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Shall I compare thee? ☃ Ω", encoding="utf-8")
    one_line_error(run_cli("diagnose", run_dir, "--text", text), "'☃'", "'Ω'")
    text.write_text("Shall I compare thee", encoding="utf-8")
    one_line_error(run_cli("diagnose", run_dir, "--text", text, "--max-lag", 50),
                   "a lag of 50 needs a text of at least 52 characters")
    one_line_error(run_cli("diagnose", tmp_path / "nope"), "no such run directory")


def test_heatmap_html_png_and_bad_units(run_dir, tmp_path):
    r = run_cli("heatmap", run_dir, "--out", tmp_path / "h.html", "--units", "0,5", "--max-chars", 200)
    assert r.returncode == 0, r.stderr
    assert "position in line" in r.stdout and "upper case" in r.stdout
    page = (tmp_path / "h.html").read_text(encoding="utf-8")
    assert page.count("<h2>") >= 3 and "unit 5 (h, layer 0)" in page and "http" not in page
    r = run_cli("heatmap", run_dir, "--out", tmp_path / "h.png", "--max-chars", 100)
    assert r.returncode == 0 and (tmp_path / "h.png").stat().st_size > 1000
    one_line_error(run_cli("heatmap", run_dir, "--units", "24"), "unit 24 does not exist", "0..23")
    one_line_error(run_cli("heatmap", run_dir, "--state", "c"), "a rnn carries only h")
    one_line_error(run_cli("heatmap", run_dir, "--out", tmp_path / "h.txt"), "must end in .html or .png")


def test_impulse_cli():
    r = run_cli("impulse", "--w", "-0.5", "--steps", "6", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["h"] == [(-0.5) ** t for t in range(7)] and d["envelope"] == [0.5**t for t in range(7)]
    r = run_cli("impulse")
    assert "-0.729" in r.stdout and "what it means:" in r.stdout
    r = run_cli("impulse", "--matrix", "8", "--radius", "1.1", "--steps", "5", "--json")
    assert json.loads(r.stdout)["max_norm"] == pytest.approx([1.1**t for t in range(6)], rel=1e-12)


def test_sample_novelty(run_dir, tmp_path):
    r = run_cli("sample", run_dir, "--length", 200, "--seed", 1, "--novelty")
    assert r.returncode == 0, r.stderr
    assert "charrnn sample: novelty:" in r.stderr and "occur in the training text" in r.stderr
    # without the run's text there is nothing to compare with: refused before sampling
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run_dir / "latest.safetensors", lone / "latest.safetensors")
    one_line_error(run_cli("sample", lone, "--novelty"), "has no tokens.bin", "--novelty needs the run directory")


def test_no_metrics_yet(run_dir, tmp_path):
    empty = tmp_path / "fresh"
    empty.mkdir()
    for name in ("config.json", "latest.safetensors", "tokens.bin"):
        shutil.copy(run_dir / name, empty / name)
    (empty / "metrics.jsonl").write_text("")
    one_line_error(run_cli("plot", empty), "has no metrics yet")
    r = run_cli("report", empty)
    assert r.returncode == 0, r.stderr
    page = (empty / "report.html").read_text(encoding="utf-8")
    assert "Nothing to show: no metrics yet" in page and "Nothing to show: no samples yet" in page
    assert "Gradient flow through time" in page  # the checkpoint is there: the model's sections are not empty


def test_missing_matplotlib_is_one_line_naming_the_extra(run_dir, tmp_path):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake), str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")])}
    for args in (("plot", run_dir), ("report", run_dir, "--out", tmp_path / "r.html"),
                 ("impulse", "--plot", tmp_path / "i.png"), ("diagnose", run_dir, "--plot", tmp_path / "d.png")):
        one_line_error(run_cli(*args, env=env), "matplotlib", "pip install 'charrnn[report]'")
    assert not (tmp_path / "r.html").exists()


def test_plot_writes_png(run_dir, tmp_path):
    r = run_cli("plot", run_dir, "--out", tmp_path / "c.png")
    assert r.returncode == 0, r.stderr
    img = matplotlib.image.imread(tmp_path / "c.png")
    assert img.shape[0] > 300 and img[..., :3].std() > 0.05


# ------------------------------------------------------------------------------------------------
# the report in a real browser


def run_chromium(*args, timeout=120):
    exe = chromium()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


PROBE_HEAD = """<script>window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const __ce = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); __ce(...a); };
</script>"""
PROBE_TAIL = """<pre id="__probe"></pre><script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => {
    const r = i.getBoundingClientRect();
    return {w: r.width, h: r.height, nw: i.naturalWidth, nh: i.naturalHeight, ok: i.complete};
  });
  document.getElementById('__probe').textContent = JSON.stringify({errors: window.__errors, imgs: imgs});
});
</script>"""


@pytest.fixture(scope="module")
def report_page(run_dir):
    r = run_cli("report", run_dir)
    assert r.returncode == 0, r.stderr
    return run_dir / "report.html"


def test_report_is_self_contained(report_page):
    page = report_page.read_text(encoding="utf-8")
    for needle in ("http://", "https://", "<link", "src=\"file", "@import", "url("):
        assert needle not in page
    assert page.count('src="data:image/png;base64,') >= 2  # the curves and the gradient flow
    for section in ("Configuration", "Training curves", "Samples", "Gradient flow through time", "Hidden units"):
        assert f"<h2>{section}</h2>" in page


@pytest.mark.browser
def test_report_in_chromium_no_errors_and_every_image_shown(report_page, tmp_path):
    page = report_page.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>"),
                      encoding="utf-8")
    r = run_chromium("--dump-dom", "--virtual-time-budget=10000", probed.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    start = r.stdout.index('<pre id="__probe">') + len('<pre id="__probe">')
    probe = json.loads(r.stdout[start : r.stdout.index("</pre>", start)].replace("&quot;", '"'))
    assert probe["errors"] == []
    assert len(probe["imgs"]) >= 2
    for img in probe["imgs"]:
        assert img["ok"] and img["nw"] > 0 and img["nh"] > 0 and img["w"] > 0 and img["h"] > 0, img
    # the unmodified page: nothing on the browser's console log either
    r = run_chromium("--dump-dom", report_page.as_uri())
    assert r.returncode == 0
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line]
    assert console == []


@pytest.mark.browser
def test_report_screenshot_is_not_blank(report_page, tmp_path):
    shot = tmp_path / "shot.png"
    r = run_chromium(f"--screenshot={shot}", "--window-size=1100,1800", report_page.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    img = matplotlib.image.imread(shot)[..., :3]
    assert img.shape[:2] == (1800, 1100)
    assert img.std() > 0.05  # not one flat colour
    assert (img.min(axis=2) < 0.9).mean() > 0.02  # text and figures cover part of the page
