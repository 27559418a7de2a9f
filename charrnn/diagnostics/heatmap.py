"""Hidden-unit heatmaps: every character coloured by one unit's activation after reading it
(Karpathy, Johnson and Fei-Fei 2015, "Visualizing and understanding recurrent networks").

The units worth looking at first are found automatically: for a few simple properties of the
text at each character (inside quotes, inside brackets, position in the line, start of a word,
upper case), the unit whose activation correlates best with it (Pearson's r over the text).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from .gradflow import run_trajectory

OPEN, CLOSE = "([{", ")]}"
# the units found automatically that are shown before any asked for
AUTO_UNITS = 4


def _in_quotes(text: str) -> np.ndarray:
    """After reading each character: inside a pair of double quotes (or typographic ones)."""
    out = np.zeros(len(text))
    inside = False
    for i, ch in enumerate(text):
        if ch in "\u201c\u201d\"":
            inside = ch == "\u201c" or (ch == '"' and not inside)
        out[i] = inside
    return out


def _in_brackets(text: str) -> np.ndarray:
    out = np.zeros(len(text))
    depth = 0
    for i, ch in enumerate(text):
        depth = depth + 1 if ch in OPEN else max(0, depth - 1) if ch in CLOSE else depth
        out[i] = depth > 0
    return out


def _line_position(text: str) -> np.ndarray:
    out = np.zeros(len(text))
    pos = 0
    for i, ch in enumerate(text):
        pos = 0 if ch == "\n" else pos + 1
        out[i] = pos
    return out


def _word_start(text: str) -> np.ndarray:
    return np.array([ch.isalnum() and (i == 0 or not text[i - 1].isalnum()) for i, ch in enumerate(text)], float)


def _upper(text: str) -> np.ndarray:
    return np.array([ch.isupper() for ch in text], float)


PROPERTIES: dict[str, Callable[[str], np.ndarray]] = {
    "inside quotes": _in_quotes,
    "inside brackets": _in_brackets,
    "position in line": _line_position,
    "start of a word": _word_start,
    "upper case": _upper,
}


@dataclass
class Tracker:
    prop: str  # the property
    unit: int  # the unit that tracks it best
    r: float  # Pearson's correlation over the text


def activations(model: Any, ids: np.ndarray, layer: int, part: str, state0: Any = None) -> np.ndarray:
    """Layer `layer`'s state part (one of the cell's STATE: "h", the LSTM's "c") after reading each
    of ids (N,): (N, H).

    ids gets one character appended internally so that the last one is read too."""
    parts = model.state_parts
    if part not in parts:
        raise ConfigError(f"--state {part}: a {model.cell} carries only {', '.join(parts)}")
    if not 0 <= layer < model.num_layers:
        raise ConfigError(f"--layer must be in [0, {model.num_layers - 1}], got {layer}")
    ids = np.asarray(ids, dtype=np.intp)
    traj = run_trajectory(model, np.r_[ids, ids[-1:]], state0)
    k = parts.index(part)
    return np.concatenate([traj.states[layer][s + 1][k] for s in range(len(ids))]).astype(np.float64)


def correlations(acts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson's r of values (N,) with every column of acts (N, H); 0 for a constant column."""
    a = acts - acts.mean(axis=0)
    v = values - values.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (v * v).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * v[:, None]).sum(axis=0) / denom
    return np.where(denom > 0, r, 0.0)


def find_trackers(text: str, acts: np.ndarray) -> list[Tracker]:
    """The best unit for every property that varies over the text, best correlated first."""
    out = []
    for name, fn in PROPERTIES.items():
        values = fn(text)
        if values.std() == 0:
            continue  # the text has no quotes (or no brackets ...): nothing to track
        r = correlations(acts, values)
        unit = int(np.argmax(np.abs(r)))
        out.append(Tracker(name, unit, float(r[unit])))
    return sorted(out, key=lambda t: -abs(t.r))


def heatmap_sections(model, text: str, ids, layer: int, part: str, units: list[int] | None, state0=None):
    """(trackers, sections) for the page or picture: the units that track a property of the text
    first (with their correlation), then the units asked for."""
    acts = activations(model, ids, layer, part, state0)
    H = acts.shape[1]
    trackers = find_trackers(text, acts)
    sections, seen = [], set()
    for t in trackers:
        if t.unit not in seen and len(seen) < AUTO_UNITS:
            seen.add(t.unit)
            sections.append((f"unit {t.unit} ({part}, layer {layer}) tracks {t.prop}: r = {t.r:+.2f}", acts[:, t.unit]))
    for u in units or ():
        if u >= H:
            raise ConfigError(f"--units: unit {u} does not exist (the layer has {H} units, 0..{H - 1})")
        sections.append((f"unit {u} ({part}, layer {layer})", acts[:, u]))
    return trackers, sections


def display_text(vocab: Any, ids: np.ndarray) -> str:
    """One character per id, so that characters and activations line up: the text, or for a
    byte vocabulary each byte as the Latin-1 character of that value."""
    if vocab.encoding == "bytes":
        return vocab.decode_bytes(ids).decode("latin-1")
    return vocab.decode(ids)


def _colour(v: float) -> str:
    """v in [-1, 1] -> a background: red for positive, blue for negative, white at 0."""
    v = float(np.clip(v, -1, 1))
    alpha = abs(v) * 0.85
    rgb = "214,39,40" if v > 0 else "31,119,180"
    return f"rgba({rgb},{alpha:.2f})"


def scale(values: np.ndarray) -> np.ndarray:
    """Into [-1, 1]: h already is; the LSTM's c is divided by its largest magnitude."""
    m = float(np.max(np.abs(values))) if values.size else 0.0
    return values / m if m > 1 else values


def text_html(text: str, values: np.ndarray) -> str:
    """The text as spans, each character's background its value (scaled to [-1, 1]); the raw
    value is in the title (shown on hover)."""
    shown = scale(values)
    parts = []
    for ch, v, raw in zip(text, shown, values):
        glyph = "\u21b5\n" if ch == "\n" else html.escape(ch)
        parts.append(f'<span style="background:{_colour(v)}" title="{raw:+.3f}">{glyph}</span>')
    return '<div class="heat">' + "".join(parts) + "</div>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
.heat { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.5; border: 1px solid #ddd;
        padding: 0.6em; margin-bottom: 1.4em; }
.heat span { padding: 0 0.5px; }
"""


def heatmap_page(title: str, sections: list[tuple[str, str, np.ndarray]]) -> str:
    """A whole HTML page: for every (heading, text, values) a heading and the coloured text."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{text_html(t, v)}" for h, t, v in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            "<p>Each character is coloured by the unit's value after reading it: red positive, blue negative, "
            f"white zero (hover for the number).</p>{body}</body></html>")
