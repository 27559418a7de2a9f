"""What the diagnostic commands and the notebook functions share: the text a diagnostic reads (a
few characters to settle the state, then the window analysed, from a text given as a file or a
string, or else the run's own held-out text), and the gradient flow and heatmap measured over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def analysis_text(c: Any, text_file: str | None, window: int, warmup: int,
                  text: str | bytes | None = None) -> tuple[np.ndarray, int, str]:
    """(ids, warm, where): `warm` characters to settle the state, then up to `window` characters
    analysed, and where they come from. From `text` (a string) or `text_file`, else the run's
    validation text (its training text when it holds none out). Characters outside the
    vocabulary are an error naming them."""
    from ..data.text import read_text
    from ..io.rundir import run_text

    if text is not None:
        ids, where = c.vocab.encode(text), "the text given"
    elif text_file is not None:
        ids, where = c.vocab.encode(read_text(text_file, c.vocab.encoding)), text_file
    else:
        rt = run_text(c)
        ids = rt.val if len(rt.val) > 1 else rt.train
        where = "the run's validation text" if len(rt.val) > 1 else "the run's training text"
        ids = np.asarray(ids[: warmup + window])
    warm = max(0, min(warmup, len(ids) - window))
    return np.asarray(ids[: warm + window], dtype=np.intp), warm, where


def settled_state(model: Any, ids: np.ndarray, warm: int) -> Any:
    """The state after the first `warm` characters (None for none), from which the window is read."""
    if not warm:
        return None
    _, state0 = model.logits(ids[None, :warm])
    return state0


@dataclass
class GradientFlow:
    diagnosis: Any  # gradflow.Diagnosis
    warm: int  # characters read to settle the state
    analysed: int  # characters of the window
    max_lag: int
    where: str  # where the text came from


def gradient_flow(c: Any, window: int, max_lag: int | None, warmup: int, text_file: str | None = None,
                  text: str | bytes | None = None, default_max_lag: int = 100) -> GradientFlow:
    """`diagnose` of checkpoint `c`'s model over the text chosen by `analysis_text`; max_lag None:
    `default_max_lag`, or the window's length - 2 when shorter. A lag the text cannot hold is a
    ConfigError saying how long a text it needs."""
    from ..errors import ConfigError
    from .gradflow import diagnose

    ids, warm, where = analysis_text(c, text_file, window, warmup, text)
    analysed = len(ids) - warm
    lag = max_lag if max_lag is not None else max(0, min(default_max_lag, analysed - 2))
    if lag < 0:
        raise ConfigError(f"--max-lag must be >= 0, got {lag}")
    if lag + 2 > analysed:
        raise ConfigError(f"a lag of {lag} needs a text of at least {lag + 2} characters; {where} gives {analysed}")
    d = diagnose(c.model, ids[warm:], lag, settled_state(c.model, ids, warm))
    return GradientFlow(d, warm, analysed, lag, where)


def curve_labels(measured: list[tuple[str, Any]]) -> dict[str, Any]:
    """{label: diagnosis} for one figure of (name, diagnosis) pairs: curves named by their cell,
    or by cell and name when a cell repeats."""
    cells = [d.cell for _, d in measured]
    unique = len(set(cells)) == len(cells)
    return {(d.cell if unique else f"{d.cell} ({name})"): d for name, d in measured}


@dataclass
class Heatmap:
    text: str  # one character per id (heatmap.display_text)
    trackers: list  # heatmap.Tracker: the units that follow a property of the text
    sections: list  # (title, values): the panels to show
    layer: int
    part: str  # the state part shown (h, or the LSTM's c)
    where: str


def heatmap(c: Any, max_chars: int, layer: int | None = None, part: str | None = None, units: list[int] | None = None,
            text_file: str | None = None, text: str | bytes | None = None, warmup: int = 100) -> Heatmap:
    """Checkpoint `c`'s hidden units over the text chosen by `analysis_text`: the top layer and
    the cell's telling state part unless given, the tracking units first, then `units`."""
    from .heatmap import display_text, heatmap_sections

    m = c.model
    layer = m.num_layers - 1 if layer is None else layer
    part = part or m.cell_module.HEATMAP_STATE
    ids, warm, where = analysis_text(c, text_file, max_chars, warmup, text)
    state0 = settled_state(m, ids, warm)
    ids = ids[warm:]
    shown = display_text(c.vocab, ids)
    trackers, sections = heatmap_sections(m, shown, ids, layer, part, units, state0)
    return Heatmap(shown, trackers, sections, layer, part, where)
