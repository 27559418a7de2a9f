"""charrnn plot: a run's training curves as a PNG."""

from __future__ import annotations

import argparse

from ._common import command


@command("plot", "draw a run's training curves (loss, learning rate, gradient norm, spectral radius) to a PNG")
def _plot(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", metavar="FILE.png", default=None, help="where to write it (default RUN/curves.png)")

    def run(a: argparse.Namespace) -> int:
        from pathlib import Path

        from ..diagnostics.plots import curves_figure, pyplot, write_png
        from ..errors import ConfigError
        from ..io.rundir import read_metrics, run_dir_of

        pyplot()
        run_dir = run_dir_of(a.run)
        if not run_dir.is_dir():
            raise ConfigError(f"{a.run}: no such run directory")
        m = read_metrics(run_dir)
        if not m.records:
            raise ConfigError(f"{run_dir} has no metrics yet (metrics.jsonl records no step): train first")
        out = Path(a.out) if a.out else run_dir / "curves.png"
        from ..diagnostics.gradflow import gate_names
        from ..io.rundir import read_config

        write_png(curves_figure(m.records, gate_names((read_config(run_dir) or {}).get("cell"))), out)
        print(f"wrote {out}")
        return 0

    return run
