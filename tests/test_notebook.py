"""docs/tour.ipynb runs from a fresh kernel, and shows what it says: the model, the score and the
run as rich HTML (the score's numbers in range, its text escaped), and every figure as a PNG."""

import base64
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import optional

TOUR = Path(__file__).resolve().parents[1] / "docs" / "tour.ipynb"
ROOT = Path(__file__).resolve().parents[1]


def outputs(cell) -> dict:
    """mime type -> data of a cell's display and result outputs (the last of each type)."""
    found = {}
    for out in cell.get("outputs", []):
        if out.get("output_type") in ("display_data", "execute_result"):
            found.update(out["data"])
    return found


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbformat = optional("nbformat")
    optional("nbclient")
    if importlib.util.find_spec("ipykernel") is None:
        optional("ipykernel")
    optional("matplotlib")
    where = tmp_path_factory.mktemp("tour")
    # Executed in a process of its own: running a kernel imports ipykernel, which would make this
    # one look like a notebook to the tests after it. The kernel imports this checkout's charrnn.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = where / "executed.ipynb"
    code = ("import sys, nbclient, nbformat\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            "nbclient.NotebookClient(nb, timeout=120, kernel_name='python3',\n"
            "                        resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
            "nbformat.write(nb, sys.argv[3])\n")
    p = subprocess.run([sys.executable, "-c", code, str(TOUR), str(where), str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    cells = {}
    for cell in nb.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            cells.setdefault(tag, []).append(cell)
    return nb, cells, where


def test_the_tour_runs_from_a_fresh_kernel_without_an_error(executed):
    nb, cells, where = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)  # every cell ran
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    assert (where / "runs" / "tour" / "best.safetensors").is_file()  # written where the notebook runs


def test_the_model_shows_its_shape_vocabulary_and_a_sample(executed):
    _, cells, _ = executed
    shown = outputs(cells["model"][0])
    page = shown["text/html"]
    assert "lstm" in page and "hidden size" in page and "<pre" in page and "a sample" in page
    assert shown["text/plain"].startswith("LanguageModel(")  # the plain repr is kept
    printed = "".join(o.get("text", "") for o in cells["sample"][0]["outputs"])
    assert printed.startswith("the cat ") and len(printed) > 100


def test_the_score_shows_numbers_in_range_and_its_text_coloured_and_escaped(executed):
    _, cells, _ = executed
    V = int(re.search(r"(\d+) symbols", outputs(cells["model"][0])["text/plain"]).group(1))
    shown = outputs(cells["score"][0])
    m = re.fullmatch(r"Score\(nats_per_char=([\d.]+), bits_per_char=([\d.]+), perplexity=([\d.]+), chars=(\d+)\)",
                     shown["text/plain"])
    assert m, shown["text/plain"]
    nats, bits, ppl, chars = float(m[1]), float(m[2]), float(m[3]), int(m[4])
    assert 0 < nats < math.log(V)  # better than a uniform guess over the vocabulary, after a few seconds
    assert bits == pytest.approx(nats / math.log(2), abs=2e-4) and ppl == pytest.approx(math.exp(nats), rel=1e-3)
    page = shown["text/html"]
    assert f"{nats:.4f} nats/char" in page and f"{bits:.4f} bits" in page
    spans = re.findall(r'<span style="background:rgba\(214,39,40,([\d.]+)\)" title="([\d.]+) bits">', page)
    assert len(spans) == chars == len("the dog sat on the mat. the cat saw the bird in the tree.") - 1
    assert all(0 <= float(a) <= 0.85 for a, _ in spans)


def test_the_run_shows_its_curves_and_samples_and_the_figures_are_pngs(executed):
    _, cells, _ = executed
    run = outputs(cells["run"][0])
    assert run["text/plain"].startswith("Run(") and "steps" in run["text/plain"]
    png = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', run["text/html"])
    assert png and base64.b64decode(png[1]).startswith(b"\x89PNG")
    assert "sample at step" in run["text/html"]
    figures = cells["figure"]
    assert len(figures) == 4
    for cell in figures:
        shown = outputs(cell)
        assert "image/png" in shown, cell.source
        assert base64.b64decode(shown["image/png"]).startswith(b"\x89PNG")
        # one picture per figure: the Figure returned, not a second copy left open in pyplot
        assert sum("image/png" in o.get("data", {}) for o in cell["outputs"]) == 1, cell.source
