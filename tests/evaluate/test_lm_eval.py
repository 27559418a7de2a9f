"""Scoring text: the exact many-stream evaluation against one stream, and the bounded periodic
sample that training validates on."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.evaluate.lm import (SAMPLE_WINDOW, WARMUP, evaluate_ids, evaluate_sample, periodic_budget,
                                 sample_windows, stream_segments)
from charrnn.train import Trainer

from conftest import SONNET
from conftest import tiny_config


def text_ids(n: int, V: int = 30, seed: int = 0) -> np.ndarray:
    """A text with structure (a random walk over the symbols), so that context matters."""
    return np.cumsum(np.random.default_rng(seed).integers(0, 3, n)) % V


def one_stream_nll(model: CharRNN, ids: np.ndarray) -> np.ndarray:
    """nats of every character ids[1:] with one state carried through: the definition."""
    nll, _ = model.nll(ids[None, :-1], ids[None, 1:])
    return nll[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_many_streams_score_every_character_and_agree_with_one(cell):
    model = CharRNN(30, 16, 1, seed=1, cell=cell)
    ids = text_ids(20_011)
    want = one_stream_nll(model, ids)
    one = evaluate_ids(model, ids, streams=1)
    assert one.chars == len(ids) - 1
    assert one.nats == pytest.approx(want.sum(), rel=1e-6)
    for streams in (3, 7, None):
        seen = []
        many = evaluate_ids(model, ids, streams=streams, progress=seen.append)
        assert many.chars == len(ids) - 1 and sum(seen) == many.chars  # every character once, progress too
        # each stream starts WARMUP characters early: the score differs from one stream's only
        # through context older than that
        assert many.nats_per_char == pytest.approx(one.nats_per_char, rel=1e-4)
    # the segments cover the text, their lengths within one of each other
    bounds = stream_segments(len(ids) - 1, 7)
    assert bounds[0] == 0 and bounds[-1] == len(ids) - 1 and np.ptp(np.diff(bounds)) <= 1


def test_short_texts_are_one_stream_exactly():
    model = CharRNN(30, 8, 1, seed=0)
    ids = text_ids(3000)
    assert evaluate_ids(model, ids).nats == pytest.approx(one_stream_nll(model, ids).sum(), rel=1e-6)
    assert evaluate_ids(model, ids[:1]).chars == 0


def test_the_periodic_sample_is_fixed_evenly_spaced_and_bounded():
    n = 1_000_000
    a = sample_windows(n, 20_000)
    assert np.array_equal(a, sample_windows(n, 20_000))  # the same windows every time
    assert len(a) == 20_000 // SAMPLE_WINDOW and a[0] == 0 and a[-1] == n - SAMPLE_WINDOW
    assert np.ptp(np.diff(a)) <= 1  # evenly spaced over the whole split
    assert sample_windows(10_000, 20_000).size == 0  # a budget that covers the text: all of it
    # the budget follows what is trained between validations, not the corpus
    assert periodic_budget(0, 500, 32, 64) == int(0.2 * 500 * 32 * 64)
    assert periodic_budget(7000, 500, 32, 64) == 7000


def test_the_sample_scores_its_windows_after_their_warm_up():
    model = CharRNN(30, 8, 1, seed=2)
    ids = text_ids(50_000)
    got = evaluate_sample(model, ids, 5 * SAMPLE_WINDOW)
    starts = sample_windows(len(ids) - 1, 5 * SAMPLE_WINDOW)
    want = 0.0
    for s in starts:
        lo = max(0, s - WARMUP)
        nll = one_stream_nll(model, ids[lo : s + SAMPLE_WINDOW + 1])
        want += nll[s - lo :].sum()
    assert got.chars == 5 * SAMPLE_WINDOW
    assert got.nats == pytest.approx(want, rel=1e-6)
    small = text_ids(1000)
    assert evaluate_sample(model, small, 5 * SAMPLE_WINDOW).nats == pytest.approx(evaluate_ids(model, small).nats)


@pytest.mark.parametrize("size", [2, 3, 9])
def test_shares_of_the_processes_add_up_to_the_whole_score(size):
    """Under torchrun each process scores every size-th stream or window from its rank on: the
    parts cover every character exactly once and their nats add up to one process's score."""
    model = CharRNN(30, 8, 1, seed=3, cell="gru")
    ids = text_ids(40_000)
    for score in (lambda **kw: evaluate_ids(model, ids, **kw),  # 9 streams for this text
                  lambda **kw: evaluate_ids(model, ids, streams=7, **kw),  # 9 processes: two get none
                  lambda **kw: evaluate_sample(model, ids, 11 * SAMPLE_WINDOW, **kw)):
        whole = score()
        parts = [score(share=(rank, size)) for rank in range(size)]
        assert sum(p.chars for p in parts) == whole.chars
        assert sum(p.nats for p in parts) == pytest.approx(whole.nats, rel=1e-6)
        assert min(p.chars for p in parts[: min(size, 7)]) > 0  # the work is shared, not done once
    with pytest.raises(ValueError, match="rank 2 of 2"):
        evaluate_ids(model, ids, share=(2, 2))


def test_training_validates_on_the_sample_and_ends_on_the_whole_split(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(SONNET * 60, encoding="utf-8")
    trainer = Trainer(tiny_config(path, steps=2, eval_every=1, sample_every=0, eval_max_chars=1024),
                      tmp_path / "run", quiet=True)
    s = trainer.objective
    assert trainer.validate_loss() == evaluate_sample(s.model, s.val_ids, 1024).nats_per_char
    assert trainer.validate_loss(full=True) == evaluate_ids(s.model, s.val_ids).nats_per_char
    assert trainer.validate_loss() != trainer.validate_loss(full=True)
