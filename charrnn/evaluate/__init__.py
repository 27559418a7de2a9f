"""Scoring a trained model.

    lm.py      a language model's nats per character over a text (streams, windows, periodic samples)
    tasks.py   a classifier's or tagger's loss, accuracy, F1 and confusion matrix
"""

from __future__ import annotations

import math


def finite_or_none(x: float) -> float | None:
    """A score as strict JSON holds it: JSON has no NaN or Infinity, so a loss past the float
    range (or not a number) is null."""
    return x if math.isfinite(x) else None
