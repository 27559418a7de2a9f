"""What a notebook shows: a run at a glance, and the figures of the commands as matplotlib Figures.

    run = charrnn.run("runs/demo")      # displays its curves and last samples; run.records, run.samples
    charrnn.plot_curves("runs/demo")    # the figure of `charrnn plot`
    charrnn.plot_gradient_flow(lm)      # of `charrnn diagnose --plot` (a model, a run, or a list of them)
    charrnn.plot_heatmap(lm, "text")    # of `charrnn heatmap --out FILE.png`
    charrnn.plot_impulse(w=-0.9)        # of `charrnn impulse --plot`

Every function returns a Figure and never calls plt.show(): a notebook displays the Figure a cell
ends with, a script saves it (fig.savefig). The commands draw through the same functions of
charrnn/diagnostics (plots.py for the drawing, analysis.py for what is measured), so a figure from
Python is the command's figure.
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any

from .api import LanguageModel
from .checks import Range, checked
from .errors import ConfigError, show_path

__all__ = ["Run", "plot_curves", "plot_gradient_flow", "plot_heatmap", "plot_impulse", "run"]

SAMPLES_SHOWN = 3  # the newest samples a run's display shows


def curves(run_dir: Path) -> tuple[Any, str | None]:
    """(the curves Figure of a run, a note on metrics lines skipped or None): `charrnn plot`'s
    figure. A run without a readable record is a ConfigError."""
    from .diagnostics.gradflow import gate_names
    from .diagnostics.plots import curves_figure
    from .io.rundir import read_config, read_metrics

    m = read_metrics(run_dir)
    skipped = f"{m.skipped:,} line(s) of {show_path(run_dir / 'metrics.jsonl')} skipped: not a valid record"
    if not m.records:
        if m.skipped:
            raise ConfigError(f"{run_dir} has no readable metrics ({skipped})")
        raise ConfigError(f"{run_dir} has no metrics yet (metrics.jsonl records no step): train first")
    fig = curves_figure(m.records, gate_names((read_config(run_dir) or {}).get("cell")))
    return fig, skipped if m.skipped else None


@checked()
def plot_curves(run: str | os.PathLike[str]) -> Any:
    """The training curves of a run directory (or a checkpoint in one): loss in nats with bits
    beside it, learning rate, gradient norms, spectral radius. A matplotlib Figure."""
    from .io.rundir import run_dir_of

    return curves(run_dir_of(run))[0]


def _checkpoint(model: Any, dtype: str | None = None) -> Any:
    """What the diagnostics read (model, vocab, path, config) for a LanguageModel or a run path."""
    from types import SimpleNamespace

    from .io.checkpoint import load_checkpoint

    if isinstance(model, LanguageModel):
        run = None
        if model.path is not None:
            run = load_checkpoint(model.path)  # for the run's own text; the model is the one given
        return SimpleNamespace(model=model.model, vocab=model.vocab, path=run and run.path,
                               config=run and run.config)
    c = load_checkpoint(model, dtype)
    if c.vocab is None:
        raise ConfigError(f"{c.path}: this model file has no vocabulary; use a run directory or a training checkpoint")
    return c


def _own_text(c: Any, text: Any) -> None:
    if text is None and c.path is None:
        raise ConfigError("this model comes from no run directory: give the text to read (text=...)")


@checked(window=Range(2), max_lag=Range(0), warmup=Range(0))
def plot_gradient_flow(model: LanguageModel | str | os.PathLike[str] | list[Any], text: str | bytes | None = None,
                       window: int = 300, max_lag: int | None = None, warmup: int = 100) -> Any:
    """|dL_t/dh_(t-k)| against the lag k, each curve divided by its lag-0 value: `charrnn diagnose
    --plot`. model: a LanguageModel, a run directory or checkpoint (read in float64, as the command
    does), or a list of them (one curve per model and layer). text: the text to measure on
    (default: each run's validation text); `warmup` characters settle the state, then `window`
    are analysed."""
    from .diagnostics.analysis import curve_labels, gradient_flow
    from .diagnostics.plots import gradflow_figure

    models = model if isinstance(model, list) else [model]
    if not models:
        raise ConfigError("plot_gradient_flow(): model is an empty list")
    measured = []
    for i, m in enumerate(models):
        if not isinstance(m, (LanguageModel, str, os.PathLike)):
            raise ConfigError(f"plot_gradient_flow(): model[{i}] must be a LanguageModel or a path, "
                              f"got {type(m).__name__}")
        c = _checkpoint(m, "float64")
        _own_text(c, text)
        name = str(m.path) if isinstance(m, LanguageModel) else os.fspath(m)
        measured.append((name, gradient_flow(c, window, max_lag, warmup, text=text).diagnosis))
    return gradflow_figure(curve_labels(measured))


@checked(max_chars=Range(1), layer=Range(0), warmup=Range(0))
def plot_heatmap(model: LanguageModel | str | os.PathLike[str], text: str | bytes | None = None,
                 units: list[int] | None = None, layer: int | None = None, state: str | None = None,
                 max_chars: int = 480, warmup: int = 100) -> Any:
    """The text coloured by hidden units' activations, the units that track quotes, lines, words
    or capitals first, then `units`: `charrnn heatmap --out FILE.png`. layer: default the top
    one; state: h, or the LSTM's memory c (default: the part the cell shows best)."""
    from .diagnostics.analysis import heatmap
    from .diagnostics.plots import heatmap_figure

    c = _checkpoint(model)
    _own_text(c, text)
    if units is not None and not all(type(u) is int and u >= 0 for u in units):
        raise ConfigError("plot_heatmap(): units must be unit numbers >= 0")
    hm = heatmap(c, max_chars, layer, state, units, text=text, warmup=warmup)
    return heatmap_figure(hm.text, hm.sections, max_chars=max_chars)


@checked(steps=Range(0, 100_000), matrix=Range(1), radius=Range(0), seed=Range(0))
def plot_impulse(w: float = -0.9, steps: int = 20, matrix: int | None = None, radius: float = 0.9,
                 gaussian: bool = False, seed: int = 0) -> Any:
    """The response of h_t = w h_(t-1) + x_t to a unit impulse against |w|^t, or with `matrix`
    an H x H recurrent matrix of spectral radius `radius` (R times a random orthogonal matrix, or
    a rescaled Gaussian one): `charrnn impulse --plot`."""
    from .diagnostics.impulse import impulse_response
    from .diagnostics.plots import impulse_figure

    return impulse_figure(impulse_response(w, steps, matrix, radius, gaussian, seed))


class Run:
    """A run directory at a glance: its settings, metrics records and samples, read when made.
    In a notebook it shows its curves and newest samples; `curves()` is the Figure alone."""

    @checked()
    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        from .io.rundir import read_config, read_metrics, read_samples, run_dir_of

        self.run_dir = run_dir_of(run_dir)
        self.config = read_config(self.run_dir) or {}
        metrics = read_metrics(self.run_dir)
        self.records: list[dict[str, Any]] = metrics.records  # metrics.jsonl, one dict per logged step
        self.samples: list[tuple[int, str]] = read_samples(self.run_dir)  # (step, text), oldest first

    @property
    def steps(self) -> int:
        return int(self.records[-1]["step"]) if self.records else 0

    @property
    def validation(self) -> float | None:
        """The last validation loss, nats per character (None before any)."""
        vals = [r["val_nats_per_char"] for r in self.records if isinstance(r.get("val_nats_per_char"), (int, float))]
        return float(vals[-1]) if vals else None

    def curves(self) -> Any:
        """The training curves, as plot_curves draws them."""
        return curves(self.run_dir)[0]

    def model(self) -> LanguageModel:
        """The run's best model (charrnn.load)."""
        return LanguageModel.load(self.run_dir)

    def _summary(self) -> str:
        v = self.validation
        val = "" if v is None else f", validation {v:.4f} nats/char ({v / math.log(2):.4f} bits)"
        cell = self.config.get("cell")
        return f"{self.steps:,} steps" + (f" ({cell})" if isinstance(cell, str) else "") + val

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}: {self._summary()}, {len(self.samples)} samples)"

    def _repr_html_(self) -> str:
        from .diagnostics.plots import png_bytes

        parts = [f"<div><b>{html.escape(str(self.run_dir))}</b>: {html.escape(self._summary())}</div>"]
        try:
            png = png_bytes(self.curves())
            parts.append(f'<img alt="training curves" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
        except ConfigError as e:  # no metrics yet, or no matplotlib: say so where the curves would be
            parts.append(f"<p><i>{html.escape(str(e))}</i></p>")
        for step, text in self.samples[-SAMPLES_SHOWN:]:
            parts.append(f"<div>sample at step {step:,}</div><pre style=\"white-space: pre-wrap\">"
                         f"{html.escape(text)}</pre>")
        if not self.samples:
            parts.append("<p><i>no samples yet</i></p>")
        return "\n".join(parts)


@checked()
def run(run_dir: str | os.PathLike[str]) -> Run:
    """A run directory at a glance (`Run`): in a notebook, its curves and newest samples."""
    return Run(run_dir)
