"""Select and match (Strobelt et al. 2018, "LSTMVis"): select a stretch of text, find the hidden
units that are on across all of it, then find the other stretches where those same units are on.

A unit is on at a character when its activation after reading it exceeds a threshold. The units
of a selection are those on at every character of it; a match is a maximal run of characters
where every one of those units is on, at least `min_length` long, the selection itself left out.
Activations are compared as given: scale them first (heatmap.scale) for a state without bounds
such as the LSTM's c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass
class Match:
    units: list[int]  # the units on across the whole selection
    stretches: list[tuple[int, int]]  # [start, end) of every other stretch where they are all on


def check_selection(n: int, start: int, end: int) -> None:
    if not 0 <= start < end <= n:
        raise ConfigError(f"the selection must satisfy 0 <= start < end <= {n} (the text's length), "
                          f"got start {start}, end {end}")


def units_on(acts: np.ndarray, start: int, end: int, threshold: float) -> np.ndarray:
    """The units (columns of acts (N, H)) above threshold at every row in [start, end)."""
    check_selection(acts.shape[0], start, end)
    return np.flatnonzero((acts[start:end] > threshold).all(axis=0))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every maximal run of True in mask (N,)."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def select_and_match(acts: np.ndarray, start: int, end: int, threshold: float,
                     min_length: int | None = None) -> Match:
    """The units on across acts[start:end] (acts (N, H)) and the other stretches where all of them
    are on, at least min_length characters long (default: half the selection, rounded up)."""
    units = units_on(acts, start, end, threshold)
    if min_length is None:
        min_length = (end - start + 1) // 2
    if min_length < 1:
        raise ConfigError(f"the shortest match must be at least 1 character, got {min_length}")
    if units.size == 0:
        return Match([], [])
    on = (acts[:, units] > threshold).all(axis=1)
    found = [(s, e) for s, e in runs(on) if e - s >= min_length and not (s < end and start < e)]
    return Match(units.tolist(), found)
