"""Dynamic evaluation (charrnn/evaluate/dynamic.py): the update against a plain loop written
separately, nothing learnt is the static score, an unseen repeated pattern is learnt, and neither
the caller's model nor its parameters change."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.core import cell_names
from charrnn.errors import DataError
from charrnn.evaluate.dynamic import (EPS_SHARE, SEGMENT_GRID, RMSStep, dynamic_nats, dynamic_work, evaluate_dynamic,
                                      working_copy)
from charrnn.evaluate.lm import WARMUP

V = 11


def text_ids(n: int, seed: int = 0) -> np.ndarray:
    """A text with structure (a random walk over the symbols), so that context matters."""
    return np.cumsum(np.random.default_rng(seed).integers(0, 3, n)) % V


def tiny(cell: str, dtype: str = "float64", seed: int = 1) -> CharRNN:
    return CharRNN(V, 6, 2, dtype, seed, cell=cell)


def reference(model: CharRNN, ids: np.ndarray, eta: float, lam: float, n: int):
    """The method written plainly from its definition: RMS over the first half's segments (trained
    weights, state carried), the second half's state from the WARMUP characters before it, then
    per segment: score every position, take the gradient, step every parameter by the formula.
    Returns (nats of the second half, the final weights)."""
    targets = len(ids) - 1
    m = targets // 2
    theta0 = {k: v.copy() for k, v in model.params.items()}
    net = CharRNN(V, model.hidden_size, model.num_layers, model.dtype, cell=model.cell,
                  params={k: v.copy() for k, v in theta0.items()})
    squares, count, h = {k: 0.0 for k in theta0}, 0, None
    for s in range(0, m, n):
        e = min(s + n, m)
        _, g, h = net.loss_and_grads(ids[None, s:e], ids[None, s + 1:e + 1], h)
        squares = {k: squares[k] + g[k] ** 2 for k in theta0}
        count += 1
    rms = {k: np.sqrt(squares[k] / count) for k in theta0}
    mean = np.concatenate([r.ravel() for r in rms.values()]).mean()
    eps = EPS_SHARE * mean
    first = max(m - WARMUP, 0)
    _, h = net.nll(ids[None, first:m], ids[None, first + 1:m + 1])
    total = 0.0
    for s in range(m, targets, n):
        e = min(s + n, targets)
        x, y = ids[None, s:e], ids[None, s + 1:e + 1]
        nll, _ = net.nll(x, y, h)
        total += nll.sum()
        _, g, h = net.loss_and_grads(x, y, h)
        for k, theta in net.params.items():
            decay = np.minimum(lam * rms[k] / mean, 1.0)
            theta[...] = theta - eta * g[k] / (rms[k] + eps) + decay * (theta0[k] - theta)
    return total, net.params


@pytest.mark.parametrize("cell", cell_names())
def test_the_update_is_the_formula_written_plainly(cell):
    model = tiny(cell)
    before = {k: v.copy() for k, v in model.params.items()}
    ids = text_ids(701)
    # large enough that the weights move and the decay's cap binds; small enough that the steps do
    # not amplify rounding (a far larger eta makes the two loops part at 1e-10)
    eta, lam, n = 0.01, 0.5, 9
    want_nats, want_params = reference(model, ids, eta, lam, n)
    got = evaluate_dynamic(model, ids, lr=eta, decay=lam, segment=n)
    assert (got.lr, got.decay, got.segment, got.tuned, got.chars) == (eta, lam, n, (), 700 - 350)
    assert got.nats == pytest.approx(want_nats, rel=1e-12, abs=0)
    for k in before:  # the caller's model is untouched
        assert np.array_equal(model.params[k], before[k]), k
    # the weights the in-place updates reach are the plain loop's, and they moved
    work = working_copy(model)
    from charrnn.evaluate.dynamic import gradient_rms

    rms = gradient_rms(work, ids, 0, 350, n)
    _, h = work.loss(ids[None, 350 - WARMUP:350], ids[None, 351 - WARMUP:351])
    step = RMSStep(work.params, rms, eta, lam)
    assert any((r == 1.0).any() for r in step.rate.values()) and any((r < 1.0).any() for r in step.rate.values())
    assert dynamic_nats(work, ids, 350, 700, n, step, h) == pytest.approx(want_nats, rel=1e-12, abs=0)
    for k in before:
        np.testing.assert_allclose(work.params[k], want_params[k], rtol=1e-12, atol=1e-14, err_msg=k)
    assert max(np.abs(work.params[k] - before[k]).max() for k in before) > 1e-3


@pytest.mark.parametrize("cell, stack", [("lstm", {}), ("mingru", {}), ("gru", {"residual": True, "layer_norm": True})])
def test_nothing_learnt_is_the_static_one_stream_score(cell, stack):
    """(The stack's options too: the working copy is the same model, its norms included.)"""
    model = CharRNN(V, 6, 2, "float64", 4, cell=cell, **stack)
    ids = text_ids(1_203, seed=2)
    got = evaluate_dynamic(model, ids, lr=0.0, decay=0.7, segment=13)
    # the static score of the second half, by definition: one stream from the warm-up on
    m = (len(ids) - 1) // 2
    nll, _ = model.nll(ids[None, m - WARMUP:-1], ids[None, m - WARMUP + 1:])
    assert got.static.chars == got.chars == len(ids) - 1 - m
    assert got.static.nats == pytest.approx(nll[0, WARMUP:].sum(), rel=1e-12)
    assert got.nats == pytest.approx(got.static.nats, rel=1e-12, abs=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_repeated_pattern_never_seen_is_learnt(dtype):
    """An untrained model on a random phrase said over and over: adapting to it must bring the
    loss far down; an update that does nothing or climbs the loss fails."""
    model = CharRNN(V, 16, 1, dtype, 0, cell="lstm")
    ids = np.tile(np.random.default_rng(7).integers(0, V, 9), 311)
    got = evaluate_dynamic(model, ids, lr=0.005, decay=0.0, segment=10)
    assert got.static.nats_per_char > 2.0  # it does not know the phrase
    assert got.nats_per_char < got.static.nats_per_char - 1.5
    # tuned on the first half, from the grid: still well below the static score
    seen = []
    tuned = evaluate_dynamic(model, ids, progress=seen.append)
    assert set(tuned.tuned) == {"lr", "decay", "segment"} and tuned.segment in SEGMENT_GRID
    assert sum(seen) == dynamic_work(len(ids))  # the progress bar's total is what is read
    assert tuned.nats_per_char < tuned.static.nats_per_char - 0.5


def test_a_text_too_short_to_halve_is_refused_in_one_line():
    model = tiny("rnn")
    with pytest.raises(DataError, match="too few for dynamic evaluation: it needs at least 21,"):
        evaluate_dynamic(model, text_ids(20), lr=0.1, decay=0.0, segment=10)
    assert evaluate_dynamic(model, text_ids(21), lr=0.1, decay=0.0, segment=10).chars == 10


@pytest.mark.parametrize("fixed", [{"lr": 0.01, "decay": 0.0}, {"segment": 10, "decay": 0.1}, {"lr": 0.01, "segment": 7}])
def test_only_the_hyperparameters_left_open_are_tuned(fixed):
    model = tiny("gru")
    ids = text_ids(301)
    seen = []
    got = evaluate_dynamic(model, ids, progress=seen.append, **fixed)
    assert set(got.tuned) == {"lr", "decay", "segment"} - set(fixed)
    assert all(getattr(got, k) == v for k, v in fixed.items())
    assert sum(seen) == dynamic_work(len(ids), **fixed) and got.tuning_chars == 150


def test_the_api_scores_dynamically_and_leaves_its_model_alone():
    from charrnn.api import LanguageModel
    from charrnn.data.text import Vocab

    symbols = list("abcdefghijk")
    lm = LanguageModel(tiny("lstm", "float32"), Vocab(symbols))
    before = {k: v.copy() for k, v in lm.model.params.items()}
    text = "".join(symbols[i] for i in text_ids(600, seed=5))
    got = lm.score(text, dynamic=True, dynamic_lr=0.01, dynamic_decay=0.0, dynamic_segment=10)
    want = evaluate_dynamic(lm.model, lm.encode(text), lr=0.01, decay=0.0, segment=10)
    assert (got.nats, got.static.nats, got.chars) == (want.nats, want.static.nats, 300)
    assert got.nats != got.static.nats
    for k in before:
        assert np.array_equal(lm.model.params[k], before[k]), k
    assert lm.score(text).chars == 599  # without dynamic: the static score of the whole text
