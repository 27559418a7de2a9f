"""charrnn report: one self-contained HTML page about a run."""

from __future__ import annotations

import argparse

from ._common import command


@command("report", "write one self-contained HTML page about a run: curves, samples, gradient flow, heatmaps")
def _report(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", metavar="FILE.html", default=None, help="where to write it (default RUN/report.html)")

    def run(a: argparse.Namespace) -> int:
        from pathlib import Path

        from ..errors import DataError
        from ..report.html import build_report

        page = build_report(a.run)
        out = Path(a.out) if a.out else (Path(a.run) if Path(a.run).is_dir() else Path(a.run).parent) / "report.html"
        try:
            out.write_text(page, encoding="utf-8")
        except OSError as e:
            raise DataError(f"cannot write {out}: {e.strerror or e}") from None
        print(f"wrote {out} ({len(page.encode('utf-8')) / 1024:,.0f} KiB)")
        return 0

    return run
