"""The figures: impulse responses, gradient flow by lag, training curves, heatmap strips.

matplotlib is an optional extra (`pip install 'charrnn[report]'`); without it every function here
raises one ConfigError naming the extra. Each function returns a matplotlib Figure, never shown:
the commands and the report draw it off-screen (Agg) to PNG bytes, which the report inlines and
the commands write to files; a notebook displays it (charrnn.notebook).
"""

from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

EXTRA = "report"
NATS_TO_BITS = 1.0 / math.log(2.0)


def pyplot(headless: bool = True) -> Any:
    """matplotlib.pyplot, on the Agg backend when `headless` (the commands: files, never windows),
    or a one-line error naming the extra to install."""
    try:
        import matplotlib

        if headless:
            matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"plots need matplotlib, which is not installed: pip install 'charrnn[{EXTRA}]'") from None
    return plt


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """plt.subplots for a figure that is returned, not shown: on the backend already chosen (a
    notebook's inline one, MPLBACKEND, or pyplot in use), else Agg; and closed at once, so that
    pyplot neither keeps it nor shows it a second time when a notebook displays the returned Figure."""
    chosen = "matplotlib.pyplot" in sys.modules or "MPLBACKEND" in os.environ
    plt = pyplot(headless=not chosen)
    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)
    return fig, axes


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot(headless=False).close(fig)  # drawn: pyplot lets it go, made by `subplots` or not
    return buf.getvalue()


def write_png(fig: Any, path: str | Path, dpi: int = 100, *, force: bool = False, own: str | None = None) -> Path:
    """Draw `fig` to `path` through the one writer (`force` and `own` as `io.writer.write_file`)."""
    from ..io.writer import write_file

    return write_file(path, png_bytes(fig, dpi), force=force, own=own)


# Matplotlib cannot draw infinities, and its axis transforms fail (a singular matrix) on spans
# near the largest float: an impulse response past this magnitude (|w| = 1e308, or (-2)^1100) is
# left out of its plot, and the title says so.
PLOTTABLE = 1e150


def _plottable(values: Any) -> tuple[np.ndarray, bool]:
    """The values with those past PLOTTABLE (or not finite) as NaN, which matplotlib skips, and
    whether any was."""
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v) & (np.abs(v) <= PLOTTABLE)
    return np.where(keep, v, np.nan), not keep.all()


def impulse_figure(imp: Any) -> Any:
    """The impulse response against its envelope R^t (log scale), and for the scalar h_t itself."""
    t = np.arange(len(imp.values))
    values, cut = _plottable(imp.values)
    envelope, cut_envelope = _plottable(imp.envelope)
    left_out = f" (values past {PLOTTABLE:.0e} not drawn)" if cut or cut_envelope else ""
    if imp.kind == "scalar":
        fig, (a, b) = subplots(1, 2, figsize=(10, 3.6))
        a.plot(t, values, "o-", ms=3, label="h_t")
        a.plot(t, envelope, "--", color="gray", label="±|w|^t")
        a.plot(t, -envelope, "--", color="gray")
        a.axhline(0, color="black", lw=0.5)
        w = imp.values[1] if len(imp.values) > 1 else imp.radius
        a.set_title(f"impulse response of h_t = w h_(t-1) + x_t, w = {w:g}{left_out}", fontsize="medium")
        a.set_xlabel("t")
        a.legend()
        mag = np.abs(values)
        b.semilogy(t, np.where(mag > 0, mag, np.nan), "o-", ms=3, label="|h_t|")
        b.semilogy(t, envelope, "--", color="gray", label="|w|^t")
        b.set_title("the same, log scale")
        b.set_xlabel("t")
        b.legend()
    else:
        random, cut_random = _plottable(imp.random)
        left_out = left_out or (f" (values past {PLOTTABLE:.0e} not drawn)" if cut_random else "")
        fig, a = subplots(figsize=(6.5, 3.8))
        a.semilogy(t, values, "-", label="max |h_t| over unit impulses = |W^t|")
        a.semilogy(t, random, "-", label="|h_t|, one random unit impulse")
        a.semilogy(t, envelope, "--", color="gray", label="R^t")
        a.set_title(f"{imp.kind} W, spectral radius R = {imp.radius:g}{left_out}", fontsize="medium")
        a.set_xlabel("t")
        a.legend()
    for axis in fig.axes:  # every step on the axis, drawn or left out
        axis.set_xlim(0, max(len(t) - 1, 1))
    fig.tight_layout()
    return fig


def gradflow_figure(diagnoses: dict[str, Any], normalise: bool = True) -> Any:
    """grad_norm_by_lag of every layer of every labelled diagnosis, on a log scale, each curve
    divided by its lag-0 value when `normalise` (so cells of different output scales compare)."""
    fig, a = subplots(figsize=(7, 4))
    for label, d in diagnoses.items():
        for l, r in enumerate(d.layers):
            g = np.asarray(r.grad_norm_by_lag)
            if normalise and g[0] > 0:
                g = g / g[0]
            name = label if d.num_layers == 1 else f"{label}, layer {l}"
            a.semilogy(np.arange(len(g)), np.where(g > 0, g, np.nan), label=name)
    a.axhline(0.01 if normalise else np.nan, color="gray", ls=":", lw=1)
    a.set_xlabel("lag k (characters)")
    a.set_ylabel("|dL_t/dh_(t-k)| / |dL_t/dh_t|" if normalise else "|dL_t/dh_(t-k)|")
    a.set_title("gradient flow through time (mean over targets t)")
    a.legend()
    fig.tight_layout()
    return fig


def _series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and r.get(key) is not None
           and math.isfinite(r[key])]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pts)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def curves_figure(records: Sequence[dict], gate_names: Sequence[str] | None = None) -> Any:
    """Loss (train, smoothed, validation; nats with bits on the right), learning rate, gradient
    norm and the recurrent weights' spectral radius (gate blocks named by `gate_names`), against
    the step."""
    radius = [r for r in records if r.get("spectral_radius")]
    panels = 4 if radius else 3
    fig, axes = subplots(panels, 1, figsize=(8, 2.4 * panels + 1), sharex=True)
    a = axes[0]
    for key, style, label in (("train_loss", "-", "train"), ("smoothed_loss", "-", "train, smoothed"),
                              ("val_nats_per_char", "o-", "validation")):
        x, y = _series(records, key)
        if x.size:
            a.plot(x, y, style, ms=3, label=label, alpha=0.5 if key == "train_loss" else 1.0)
    a.set_ylabel("loss (nats/char)")
    bits = a.secondary_yaxis("right", functions=(lambda n: n * NATS_TO_BITS, lambda b: b / NATS_TO_BITS))
    bits.set_ylabel("bits/char")
    a.legend()
    a.set_title("training")
    x, y = _series(records, "lr")
    axes[1].plot(x, y)
    axes[1].set_ylabel("learning rate")
    x, y = _series(records, "grad_norm")
    axes[2].semilogy(x, np.where(y > 0, y, np.nan), color="black", label="all parameters")
    per = [r for r in records if isinstance(r.get("grad_norms"), dict)]
    for name in (per[-1]["grad_norms"] if per else ()):  # every parameter's own norm, before clipping
        pts = [(r["step"], r["grad_norms"].get(name)) for r in per]
        xs, ys = zip(*[(a, b) for a, b in pts if isinstance(b, (int, float)) and b > 0] or [(np.nan, np.nan)])
        axes[2].semilogy(xs, ys, lw=0.8, alpha=0.8, label=name)
    axes[2].set_ylabel("gradient norm")
    if per:
        axes[2].legend(fontsize="x-small", ncol=3)
    if radius:
        steps = [r["step"] for r in radius]
        values = [r["spectral_radius"] for r in radius]  # per record: [layer][gate block]
        for l in range(len(values[0])):
            for g in range(len(values[0][l])):
                ys = [v[l][g] if l < len(v) and g < len(v[l]) else np.nan for v in values]
                block = gate_names[g] if gate_names and len(gate_names) == len(values[0][l]) else f"block {g}"
                axes[3].plot(steps, ys, "o-", ms=3, label=f"layer {l}" + (f", {block}" if len(values[0][l]) > 1 else ""))
        axes[3].axhline(1.0, color="gray", ls=":", lw=1)
        axes[3].set_ylabel("spectral radius of W_hh")
        axes[3].legend(fontsize="small", ncol=2)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    return fig


def heatmap_figure(text: str, panels: Sequence[tuple[str, np.ndarray]], width: int = 80, max_chars: int = 480) -> Any:
    """For every (title, values) a panel: the text in lines of `width` characters, each cell
    coloured by its value (scaled into [-1, 1]: red positive, blue negative)."""
    from .heatmap import scale

    text = text[:max_chars]
    rows = max(1, math.ceil(len(text) / width))
    panels = list(panels) or [("(no units)", np.zeros(len(text)))]
    fig, axes = subplots(len(panels), 1, figsize=(width * 0.11, (rows * 0.2 + 0.5) * len(panels)), squeeze=False)
    for a, (title, values) in zip(axes[:, 0], panels):
        grid = np.full((rows, width), np.nan)
        grid.flat[: len(text)] = scale(np.asarray(values, dtype=float))[: len(text)]
        a.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        for i, ch in enumerate(text):
            a.text(i % width, i // width, "\u21b5" if ch == "\n" else ch, ha="center", va="center", fontsize=6.5,
                   family="monospace")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig
