"""Scoring text: nats and bits per character with the hidden state carried through the text."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model import CharRNN

NATS_TO_BITS = 1.0 / math.log(2.0)
# Steps per forward call: long enough that per-call overhead vanishes, short enough that the
# (B, window, V) logits stay small.
EVAL_WINDOW = 256


@dataclass
class EvalResult:
    nats: float  # total negative log-likelihood of the scored characters
    chars: int  # characters scored (every one but the first of each stream has context)

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.chars if self.chars else float("nan")

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char * NATS_TO_BITS

    @property
    def perplexity(self) -> float:
        """exp(nats per char); infinite past the largest float (a loss above ~709 nats/char)."""
        try:
            return math.exp(self.nats_per_char)
        except OverflowError:
            return float("inf")


def evaluate_ids(model: CharRNN, ids: np.ndarray, streams: int = 1, window: int = EVAL_WINDOW) -> EvalResult:
    """Score ids[1:] given everything before it, in `streams` contiguous parallel streams.

    ids: (N,) token ids (a memmap is read window by window). With streams=1 the hidden state is
    carried through the whole text, so every character after the first is scored with its full
    context. More streams are faster (one matrix product serves them all) but each stream starts
    from a zero state; the few characters left over when N-1 does not divide evenly are dropped.
    """
    n = len(ids) - 1
    if n < 1:
        return EvalResult(0.0, 0)
    streams = max(1, min(streams, n))
    length = n // streams
    x_all = np.asarray(ids[: streams * length]).reshape(streams, length)
    y_all = np.asarray(ids[1 : streams * length + 1]).reshape(streams, length)
    h = model.initial_state(streams)
    total = 0.0
    for start in range(0, length, window):
        x = x_all[:, start : start + window].astype(np.intp)
        y = y_all[:, start : start + window].astype(np.intp)
        mean, h = model.loss(x, y, h)  # forward only, the state carried into the next window
        total += mean * x.size
    return EvalResult(total, streams * length)
