"""charrnn plot: a run's training curves as a PNG."""

from __future__ import annotations

import argparse
import sys

from ._common import add_force_flag, command, needs_run


@command("plot", "draw a run's training curves (loss, learning rate, gradient norm, spectral radius) to a PNG",
         outputs=("--out",), reads={"RUN": "run"})
def _plot(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", metavar="FILE.png", default=None,
                   help="where to write it (default RUN/curves.png, which the next plot replaces)")
    add_force_flag(p, "--out")

    def run(a: argparse.Namespace) -> int:
        from ..diagnostics.plots import curves_figure, pyplot, write_png
        from ..errors import ConfigError, show_path
        from ..io.layout import CURVES
        from ..io.rundir import read_metrics, run_dir_of
        from ..io.writer import check_target

        needs_run(a.run, "plot draws the run's training curves")
        pyplot()
        run_dir = run_dir_of(a.run)
        out = check_target(run_dir / CURVES if a.out is None else a.out, force=a.force, own=CURVES)
        m = read_metrics(run_dir)
        skipped = f"{m.skipped:,} line(s) of {show_path(run_dir / 'metrics.jsonl')} skipped: not a valid record"
        if not m.records:
            if m.skipped:
                raise ConfigError(f"{run_dir} has no readable metrics ({skipped})")
            raise ConfigError(f"{run_dir} has no metrics yet (metrics.jsonl records no step): train first")
        if m.skipped:
            print(f"charrnn plot: {skipped}", file=sys.stderr)
        from ..diagnostics.gradflow import gate_names
        from ..io.rundir import read_config

        write_png(curves_figure(m.records, gate_names((read_config(run_dir) or {}).get("cell"))), out,
                  force=a.force, own=CURVES)
        print(f"wrote {out}")
        return 0

    return run
