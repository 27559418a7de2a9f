"""The notebook's figures are the commands' figures (the same PNG bytes), are returned without
being left open in pyplot, and the rich displays escape the text they show."""

import re

import pytest

import charrnn
from charrnn.diagnostics.plots import png_bytes

from conftest import SONNET, charrnn as cli, optional

TRICKY = 'a <b>bold</b> & "quoted" line\n'


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    optional("matplotlib")
    root = tmp_path_factory.mktemp("figures")
    (root / "s.txt").write_text((SONNET + TRICKY) * 3, encoding="utf-8")
    charrnn.fit(root / "s.txt", out=root / "run", hidden_size=8, steps=30, seq_len=16, batch_size=2, eval_every=10,
                sample_every=10, quiet=True)
    return root / "run"


def command_png(out, *args):
    proc = cli(*[a if a != "OUT" else out for a in args])
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_each_figure_function_draws_what_its_command_draws(run, tmp_path):
    pairs = [
        (("plot", run, "--out", "OUT"), charrnn.plot_curves(run)),
        (("impulse", "--w", -0.5, "--steps", 12, "--plot", "OUT"), charrnn.plot_impulse(w=-0.5, steps=12)),
        (("impulse", "--matrix", 6, "--radius", 1.1, "--plot", "OUT"),
         charrnn.plot_impulse(matrix=6, radius=1.1)),
        (("diagnose", run, "--window", 60, "--warmup", 10, "--plot", "OUT"),
         charrnn.plot_gradient_flow(run, window=60, warmup=10)),
        (("heatmap", run, "--max-chars", 120, "--units", "0,3", "--out", "OUT"),
         charrnn.plot_heatmap(run, units=[0, 3], max_chars=120)),
    ]
    for i, (args, fig) in enumerate(pairs):
        assert command_png(tmp_path / f"{i}.png", *args) == png_bytes(fig), args


def test_figures_come_back_closed_so_pyplot_shows_nothing_twice(run):
    plt = optional("matplotlib.pyplot")
    before = plt.get_fignums()  # what other tests of this process left open is theirs
    figs = [charrnn.plot_curves(run), charrnn.plot_impulse(), charrnn.plot_heatmap(charrnn.load(run), TRICKY * 2)]
    assert all(type(f).__name__ == "Figure" for f in figs) and plt.get_fignums() == before


def test_the_displays_escape_the_text_and_keep_the_plain_repr(run):
    lm = charrnn.load(run)
    page = lm._repr_html_()
    assert repr(lm).startswith("LanguageModel(") and "&lt;" in page and "'<'" not in page
    s = lm.score(TRICKY * 2)
    page = s._repr_html_()
    assert "<b>bold" not in page and "&lt;" in page and "&amp;" in page and "&quot;" in page
    assert len(re.findall(r"<span ", page)) == s.chars  # every scored character, coloured
    shown = charrnn.run(run)
    assert repr(shown).startswith(f"Run({str(run)!r}: 30 steps")
    assert shown.steps == 30 and shown.samples and shown.validation is not None
    page = shown._repr_html_()
    assert page.count("data:image/png;base64,") == 1 and "sample at step" in page
    assert html_escaped(shown.samples[-1][1]) in page


def html_escaped(text):
    import html

    return html.escape(text)


def test_a_run_without_metrics_says_so_where_its_curves_would_be(tmp_path):
    (tmp_path / "empty").mkdir()
    shown = charrnn.run(tmp_path / "empty")
    assert "no metrics yet" in shown._repr_html_() and "no samples yet" in shown._repr_html_()
    with pytest.raises(charrnn.ConfigError, match="no metrics yet"):
        charrnn.plot_curves(tmp_path / "empty")
