"""charrnn report: one self-contained HTML page about a run."""

from __future__ import annotations

import argparse

from ._common import add_force_flag, command, needs_run


@command("report", "write one self-contained HTML page about a run: curves, samples, gradient flow, heatmaps",
         outputs=("--out",), reads={"RUN": "run"})
def _report(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", metavar="FILE.html", default=None,
                   help="where to write it (default RUN/report.html, which the next report replaces)")
    add_force_flag(p, "--out")

    def run(a: argparse.Namespace) -> int:
        from ..io.layout import REPORT
        from ..io.rundir import run_dir_of
        from ..io.writer import check_target, write_file
        from ..report.html import build_report

        needs_run(a.run, "a report reads the run's metrics and samples")
        default = run_dir_of(a.run) / REPORT  # a path that is neither a run nor a checkpoint: refused
        out = check_target(default if a.out is None else a.out, force=a.force, own=REPORT)  # before the work
        page = build_report(a.run).encode("utf-8")
        write_file(out, page, force=a.force, own=REPORT)
        print(f"wrote {out} ({len(page) / 1024:,.0f} KiB)")
        return 0

    return run
