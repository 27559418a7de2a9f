"""Scoring text: nats and bits per character, over a whole text or over a fixed sample of it.

Two ways to score, both with many streams at once (one matrix product serves them all, and the
streams are what the model's worker threads share out, see threads.py):

* `evaluate_ids`, exact: every character after the first is scored once. The text is cut into
  `streams` contiguous segments, each scored by its own stream with the state carried through
  the segment; a stream starts from the state that the WARMUP characters before its segment
  leave (run, not scored), so it differs from one stream carried through the whole text only
  by what happened more than WARMUP characters back: a few hundredths of a percent on real
  text. `streams=1` is the one-stream score.
* `evaluate_sample`, bounded: `sample_windows` picks evenly spaced windows of fixed length,
  the same for a given text and budget, and only they are scored (each after its own warm-up).
  Training's periodic validation uses it, so that its cost follows the budget rather than the
  corpus (`periodic_budget`); the last validation of a run is exact.

Both take `share=(rank, size)`: the process of that rank scores every size-th stream (or window)
from its rank on and returns its part; the parts' nats and characters summed over the ranks are
the whole score. Under torchrun each process scores its share, so a validation costs 1/size of
its single-process time, and the trainer adds the parts up (engine.sum_across).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import stopping
from ..core import tuning
from ..core.tuning import EVAL_WINDOW  # the default window of the functions below
from ..model import CharRNN

NATS_TO_BITS = 1.0 / math.log(2.0)
# Characters run before a stream's or a window's first scored character, to set its state.
WARMUP = 128
# The exact evaluation's streams: at most this many, and none shorter than MIN_STREAM_CHARS
# (a text below twice that is scored by one stream, exactly as one stream carried through it).
EVAL_STREAMS = 64
MIN_STREAM_CHARS = 4096
# The periodic validation sample: windows of this many scored characters.
SAMPLE_WINDOW = 512
# Its budget: this share of the characters trained between two validations. Scoring is a
# forward pass only, a third of a training step's work per character or less, so the sample
# costs a small share of the training time between validations (measured in BENCHMARKS.md,
# "periodic validation's share of training time"), and less with many streams.
PERIODIC_SHARE = 0.2


class PerCharacter:
    """The units of a score, derived from its `nats_per_char` (which a subclass defines)."""

    nats_per_char: float

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


@dataclass
class EvalResult(PerCharacter):
    nats: float  # total negative log-likelihood of the scored characters
    chars: int  # characters scored

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.chars if self.chars else float("nan")


def _window_steps(model: CharRNN, streams: int, window: int) -> int:
    per_step = streams * (2 * model.vocab_size + 3 * model.hidden_size * model.num_layers)
    return max(1, min(window, tuning.MAX_WINDOW_NUMBERS // per_step))


def stream_segments(n: int, streams: int) -> np.ndarray:
    """Start offsets (streams + 1,) of `streams` contiguous segments covering the n targets,
    their lengths differing by at most one."""
    base, extra = divmod(n, streams)
    lengths = np.full(streams, base, dtype=np.int64)
    lengths[:extra] += 1
    return np.concatenate([[0], np.cumsum(lengths)])


# The whole of a score: one process scores every stream (see `share` in the module docstring).
WHOLE = (0, 1)


def evaluate_ids(model: CharRNN, ids: np.ndarray, streams: int | None = None, window: int = EVAL_WINDOW,
                 progress: Callable[[int], None] | None = None, share: tuple[int, int] = WHOLE) -> EvalResult:
    """Score ids[1:] given what comes before it: every character once (module docstring).

    ids: (N,) token ids (a memmap is read window by window). streams: None picks up to
    EVAL_STREAMS, each at least MIN_STREAM_CHARS long; 1 carries one state through the text.
    progress(k) is called with the number of characters scored after every forward call.
    share: (rank, size), this process's part of the streams (module docstring).
    """
    n = len(ids) - 1
    if n < 1:
        return EvalResult(0.0, 0)
    if streams is None:
        streams = min(EVAL_STREAMS, n // MIN_STREAM_CHARS)
    streams = max(1, min(streams, n))
    bounds = stream_segments(n, streams)
    lengths = np.diff(bounds)
    # stream s runs from `first` (its warm-up, before bounds[s]) to bounds[s + 1] and scores the
    # positions from bounds[s] on
    first = np.maximum(bounds[:-1] - WARMUP, 0)
    skip = bounds[:-1] - first
    mine = _part(streams, share)
    if mine.start >= streams:  # fewer streams than processes: this one has none
        return EvalResult(0.0, 0)
    total, count = _score_streams(model, ids, first[mine], skip[mine], (skip + lengths)[mine], window, progress)
    return EvalResult(total, count)


def _part(n: int, share: tuple[int, int]) -> slice:
    """The streams (of n) that the process of rank share[0] of share[1] scores."""
    rank, size = share
    if not 0 <= rank < size:
        raise ValueError(f"share: rank {rank} of {size} processes")
    return slice(rank, n, size)


def _score_streams(model: CharRNN, ids: np.ndarray, first: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   window: int, progress: Callable[[int], None] | None) -> tuple[float, int]:
    """Stream s reads ids from first[s] on, from a zero state, and scores its positions (counted
    from first[s]) in [lo[s], hi[s]); it runs to hi[s], the streams together to max(hi).
    Returns (nats, scored characters). Only one forward call's columns are read at a time, so
    memory stays bounded by the window, whatever the text's size (a memmap is read in place)."""
    S = len(first)
    n = int(hi.max())
    last = len(ids) - 1
    h = model.initial_state(S)
    steps = _window_steps(model, S, window)
    total, count = 0.0, 0
    for start in range(0, n, steps):
        stopping.check()
        pos = np.arange(start, min(start + steps, n))[None, :]
        idx = np.minimum(first[:, None] + pos, last - 1)  # past a stream's end: padding, never scored
        x = np.asarray(ids[idx], dtype=np.intp)
        y = np.asarray(ids[idx + 1], dtype=np.intp)
        keep = (pos >= lo[:, None]) & (pos < hi[:, None])  # (S, T)
        if keep.all():
            mean, h = model.loss(x, y, h)  # forward only, the state carried into the next window
            total += mean * x.size
            count += x.size
        else:
            nll, h = model.nll(x, y, h)  # (S, T) per position
            total += float(nll[keep].sum(dtype=np.float64))
            count += int(keep.sum())
        if progress is not None:
            progress(int(keep.sum()))
    return total, count


def sample_windows(n: int, max_chars: int, length: int = SAMPLE_WINDOW) -> np.ndarray:
    """Start offsets (in target positions) of the periodic sample of n targets: K = max_chars //
    length windows (at least one) of `length` targets, evenly spaced from the first to the last.
    The same n and budget always give the same windows. Empty when the budget covers all n."""
    k = max(1, max_chars // length)
    if k * length >= n:
        return np.zeros(0, dtype=np.int64)
    return np.linspace(0, n - length, k).round().astype(np.int64)


def evaluate_sample(model: CharRNN, ids: np.ndarray, max_chars: int, window: int = EVAL_WINDOW,
                    share: tuple[int, int] = WHOLE) -> EvalResult:
    """Score the periodic sample of ids (see `sample_windows`), all windows at once as streams;
    a text the budget covers is scored whole (`evaluate_ids`). share: as for evaluate_ids."""
    n = len(ids) - 1
    starts = sample_windows(n, max_chars)
    if starts.size == 0:
        return evaluate_ids(model, ids, window=window, share=share)
    starts = starts[_part(len(starts), share)]
    first = np.maximum(starts - WARMUP, 0)
    skip = starts - first
    total, count = 0.0, 0
    # in groups of streams, so that a large sample never holds all of its logits at once
    group = max(EVAL_STREAMS, tuning.MAX_WINDOW_NUMBERS // (16 * (2 * model.vocab_size + 3 * model.hidden_size)))
    for g in range(0, len(starts), group):
        sl = slice(g, g + group)
        t, c = _score_streams(model, ids, first[sl], skip[sl], skip[sl] + SAMPLE_WINDOW, window, None)
        total, count = total + t, count + c
    return EvalResult(total, count)


def periodic_budget(max_chars: int, eval_every: int, batch_size: int, seq_len: int) -> int:
    """Characters a periodic validation scores: `max_chars` when set (--eval-max-chars), else
    PERIODIC_SHARE of the characters trained between two validations."""
    if max_chars:
        return max_chars
    return max(SAMPLE_WINDOW, int(PERIODIC_SHARE * max(eval_every, 1) * batch_size * seq_len))
