"""charrnn diagnose: gradient flow through time, weight spectra, saturation, and what they mean."""

from __future__ import annotations

import argparse

from ..checks import counted
from ._common import add_force_flag, command, positive_int

DEFAULT_WINDOW = 300
DEFAULT_MAX_LAG = 100
DEFAULT_WARMUP = 100


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
            from ..diagnostics.analysis import curve_labels
            from ..diagnostics.plots import gradflow_figure, write_png

            write_png(gradflow_figure(curve_labels([(run, d) for run, d, _ in results])), a.plot, force=a.force)
        return 0

    return run


def _diagnose_one(a: argparse.Namespace, run_path: str):
    """Measure one run and print its numbers (unless --json): (run_path, diagnosis, JSON extras)."""
    from ..diagnostics.analysis import gradient_flow
    from .heatmap import load

    c = load(run_path, a.text, dtype="float64")  # exact ratios over many lags
    g = gradient_flow(c, a.window, a.max_lag, a.warmup, text_file=a.text, default_max_lag=DEFAULT_MAX_LAG)
    d, warm, where, analysed, max_lag = g.diagnosis, g.warm, g.where, g.analysed, g.max_lag
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
            if r.decay is not None:  # the element-wise filter's coefficient, beside the gradient it sets
                dec = r.decay
                life = (f"half-life {dec['half_life_median']:.3g} steps (median unit), "
                        f"{dec['half_life_max']:.3g} (longest)" if dec["half_life_median"] is not None
                        else "no forgetting")
                print(f"  learned decay a_t   10%: {dec['p10']:.3f}  median: {dec['p50']:.3f}  90%: {dec['p90']:.3f}  "
                      f"mean: {dec['mean']:.3f}; {life}")
                print("  decay histogram     " + " ".join(f"{c}" for c in dec["histogram"]) + "  (0..1 in "
                      f"{len(dec['histogram'])} bins)")
            if not isinstance(r.spectral_radius, list):  # one gate block: single numbers
                print(f"  W_hh                spectral radius {r.spectral_radius:.3f}, singular values "
                      f"{r.singular_values[0]:.3f} (largest) .. {r.singular_values[1]:.3g} (smallest)")
            elif r.spectral_radius:  # none for a cell without a recurrent weight
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
