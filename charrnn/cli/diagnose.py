"""charrnn diagnose: gradient flow through time, weight spectra, saturation, and what they mean."""

from __future__ import annotations

import argparse

from ..checks import counted
from ._common import add_force_flag, command, positive_int

DEFAULT_WINDOW = 300
DEFAULT_MAX_LAG = 100
DEFAULT_WARMUP = 100


def analysis_text(c, text_file: str | None, window: int, warmup: int):
    """(ids, where) for the diagnostics: `warmup` characters to settle the state, then `window`
    characters analysed. From --text, else the run's validation text (its training text when it
    holds none out). Characters outside the vocabulary are an error naming them."""
    import numpy as np

    from ..data.text import read_text
    from ..io.rundir import run_text

    if text_file is not None:
        ids = c.vocab.encode(read_text(text_file, c.vocab.encoding))
        where = text_file
    else:
        rt = run_text(c)
        ids = rt.val if len(rt.val) > 1 else rt.train
        where = "the run's validation text" if len(rt.val) > 1 else "the run's training text"
        ids = np.asarray(ids[: warmup + window])
    warm = max(0, min(warmup, len(ids) - window))
    return np.asarray(ids[: warm + window], dtype=np.intp), warm, where


def fmt(v: float) -> str:
    return f"{v:.3g}"


@command("diagnose", "gradient flow through time, spectra and saturation of a trained model", outputs=("--plot",),
         reads={"RUN --text": "model", "RUN": "run"})
def _diagnose(p: argparse.ArgumentParser):
    p.add_argument("runs", metavar="RUN", nargs="+",
                   help="run directory or checkpoint file; several are compared (one plot, a JSON list)")
    p.add_argument("--text", metavar="FILE", default=None,
                   help="text to measure on (default: the run's validation text)")
    p.add_argument("--window", type=positive_int, default=DEFAULT_WINDOW,
                   help=f"characters analysed (default {DEFAULT_WINDOW})")
    p.add_argument("--max-lag", type=int, default=None,
                   help=f"largest lag k of dL_t/dh_(t-k) (default {DEFAULT_MAX_LAG}, or the window's length - 2)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"characters run before the window to settle the state (default {DEFAULT_WARMUP})")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list of them for several runs)")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="draw gradient norm against lag to FILE.png")
    add_force_flag(p, "--plot's FILE.png")
    p.add_argument("--threads", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        import json

        from ._common import apply_threads

        if a.plot is not None:
            from ..diagnostics.plots import pyplot
            from ..io.writer import check_target

            check_target(a.plot, force=a.force)  # refused before any work
            pyplot()
        apply_threads(a.threads)
        results = [_diagnose_one(a, run_path) for run_path in a.runs]
        if a.json:
            docs = [d.to_json() | extra for _, d, extra in results]
            print(json.dumps(docs[0] if len(docs) == 1 else docs, allow_nan=False))
        if a.plot is not None:
            from ..diagnostics.plots import gradflow_figure, write_png

            cells = [d.cell for _, d, _ in results]
            unique = len(set(cells)) == len(cells)  # label the curves by cell, or by run when cells repeat
            curves = {(d.cell if unique else f"{d.cell} ({run})"): d for run, d, _ in results}
            write_png(gradflow_figure(curves), a.plot, force=a.force)
        return 0

    return run


def _diagnose_one(a: argparse.Namespace, run_path: str):
    """Measure one run and print its numbers (unless --json): (run_path, diagnosis, JSON extras)."""
    from ..diagnostics.gradflow import diagnose
    from ..errors import ConfigError
    from .heatmap import load

    c = load(run_path, a.text, dtype="float64")  # exact ratios over many lags
    ids, warm, where = analysis_text(c, a.text, a.window, a.warmup)
    analysed = len(ids) - warm
    max_lag = a.max_lag if a.max_lag is not None else max(0, min(DEFAULT_MAX_LAG, analysed - 2))
    if max_lag < 0:
        raise ConfigError(f"--max-lag must be >= 0, got {max_lag}")
    if max_lag + 2 > analysed:
        raise ConfigError(f"a lag of {max_lag} needs a text of at least {max_lag + 2} characters; "
                          f"{where} gives {analysed}")
    state0 = None
    if warm:
        _, state0 = c.model.logits(ids[None, : warm])
    d = diagnose(c.model, ids[warm:], max_lag, state0)
    if not a.json:
        m = c.model
        print(f"charrnn diagnose: {m.cell}, {m.num_layers} layer(s) of {m.hidden_size} units; "
              f"{counted(analysed, 'character')} of {where} after {warm} to settle the state; "
              f"{counted(d.targets, 'target')}, lags 0..{max_lag}")
        gates = m.cell_module.GATE_NAMES
        shown = [k for k in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500) if k <= max_lag]
        for l, r in enumerate(d.layers):
            print(f"layer {l}")
            g = r.grad_norm_by_lag
            print("  |dL_t/dh_(t-k)|     " + "  ".join(f"k={k}: {fmt(g[k])}" for k in shown))
            if not isinstance(r.spectral_radius, list):  # one gate block: single numbers
                print(f"  W_hh                spectral radius {r.spectral_radius:.3f}, singular values "
                      f"{r.singular_values[0]:.3f} (largest) .. {r.singular_values[1]:.3g} (smallest)")
            else:
                print("  W_hh blocks         " + "  ".join(
                    f"{gname}: radius {rad:.3f}, sv {sv[0]:.3f}..{sv[1]:.3g}"
                    for gname, rad, sv in zip(gates, r.spectral_radius, r.singular_values)))
            j = r.jacobian_norm
            print(f"  |state Jacobian|    median {j['median']:.3f}, mean {j['mean']:.3f}, max {j['max']:.3f}")
            sat = "  ".join(f"{k}: {v:.1%}" for k, v in r.saturation.items())
            print(f"  saturated           {sat}")
        for line in d.reading():
            print(f"reading: {line}")
    return run_path, d, {"run": str(run_path), "text": where, "warmup": warm}
