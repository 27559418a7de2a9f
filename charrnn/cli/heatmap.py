"""charrnn heatmap: a text coloured by hidden units' activations, the telling units found first."""

from __future__ import annotations

import argparse

from ..checks import counted
from ._common import add_force_flag, command, load_for_inference, needs_run, positive_int

DEFAULT_CHARS = 1500


def unit_list(text: str) -> list[int]:
    try:
        units = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be unit numbers separated by commas, got {text!r}") from None
    if not units or min(units) < 0:
        raise argparse.ArgumentTypeError(f"must be unit numbers >= 0 separated by commas, got {text!r}")
    return units


@command("heatmap", "colour a text by hidden units' activations; find the units that track quotes, lines, words",
         outputs=("--out",),
         reads={"RUN --text": "model", "RUN": "run"})
def _heatmap(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("--text", metavar="FILE", default=None, help="text to read (default: the run's validation text)")
    p.add_argument("--units", type=unit_list, default=None, metavar="U,U,...", help="also show these units")
    p.add_argument("--layer", type=int, default=None, help="the layer (default: the top one)")
    p.add_argument("--state", default=None, metavar="PART",
                   help="the part of the cell's state: h, or the LSTM's memory c (default: the part the cell "
                        "shows best, c for the LSTM)")
    p.add_argument("--max-chars", type=positive_int, default=DEFAULT_CHARS,
                   help=f"characters of the text shown (default {DEFAULT_CHARS})")
    p.add_argument("--out", metavar="FILE.html|FILE.png", default=None, help="write the heatmap here")
    add_force_flag(p, "--out")

    def run(a: argparse.Namespace) -> int:
        from ..diagnostics.analysis import heatmap
        from ..errors import ConfigError
        from ..io.writer import check_target

        out = None if a.out is None else check_target(a.out, force=a.force)  # refused before any work
        if out is not None and out.suffix.lower() not in (".html", ".htm", ".png"):
            raise ConfigError(f"--out must end in .html or .png, got {out.name}")
        if out is not None and out.suffix.lower() == ".png":
            from ..diagnostics.plots import pyplot

            pyplot()
        c = load(a.run, a.text)
        m = c.model
        hm = heatmap(c, a.max_chars, a.layer, a.state, a.units, text_file=a.text)
        text, trackers, sections, layer, part, where = hm.text, hm.trackers, hm.sections, hm.layer, hm.part, hm.where
        print(f"charrnn heatmap: {counted(len(text), 'character')} of {where}, {m.cell} layer {layer}, state {part}")
        if not trackers:
            print("no property varies over this text (no quotes, brackets, lines, words or capitals)")
        for t in trackers:
            print(f"  {t.prop:<18} unit {t.unit:>4}   r = {t.r:+.3f}")
        if out is None:
            print("(--out FILE.html or FILE.png to see the text coloured by these units)")
            return 0
        title = f"charrnn heatmap: {m.cell}, layer {layer}, state {part}"
        if out.suffix.lower() == ".png":
            from ..diagnostics.plots import heatmap_figure, write_png

            write_png(heatmap_figure(text, [(h, v) for h, v in sections]), out, force=a.force)
        else:
            from ..diagnostics.heatmap import heatmap_page
            from ..io.writer import write_file

            write_file(out, heatmap_page(title, [(h, text, v) for h, v in sections]).encode("utf-8"), force=a.force)
        print(f"wrote {out}")
        return 0

    return run


def load(run: str, text: str | None, dtype: str | None = None):
    """RUN's checkpoint; a shipped model's too when a --text is given (it keeps no text of its own)."""
    if text is None:
        needs_run(run, "give --text FILE, as the model keeps no validation text of its own")
    return load_for_inference(run, dtype)
