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
        from ..diagnostics.plots import pyplot, write_png
        from ..io.layout import CURVES
        from ..io.rundir import run_dir_of
        from ..io.writer import check_target
        from ..notebook import curves

        needs_run(a.run, "plot draws the run's training curves")
        pyplot()
        run_dir = run_dir_of(a.run)
        out = check_target(run_dir / CURVES if a.out is None else a.out, force=a.force, own=CURVES)
        fig, skipped = curves(run_dir)  # charrnn.plot_curves's figure
        if skipped:
            print(f"charrnn plot: {skipped}", file=sys.stderr)
        write_png(fig, out, force=a.force, own=CURVES)
        print(f"wrote {out}")
        return 0

    return run
