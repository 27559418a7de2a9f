"""The interpolated Kneser-Ney n-gram: a distribution over the whole vocabulary for any context,
equal to Chen and Goodman's formulas written plainly here (counters and recursion), and the
comparison with a recurrent model's log-probabilities."""

from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from charrnn.diagnostics.ngram import Comparison, KneserNey, compare, max_order
from charrnn.errors import ConfigError

from conftest import SONNET


def sonnet_ids():
    symbols = sorted(set(SONNET))
    return np.array([symbols.index(c) for c in SONNET]), len(symbols), symbols


class Reference:
    """Interpolated Kneser-Ney by the book, one probability at a time (Chen and Goodman 1998,
    section 3.5): raw counts at the highest order, continuation counts N1+(. g) below, the
    discount n1 / (n1 + 2 n2) of each order's counts, and the uniform distribution at the end."""

    def __init__(self, ids, V, n):
        ids = [int(i) for i in ids]
        self.V, self.n = V, n
        grams = {k: Counter(tuple(ids[i : i + k]) for i in range(len(ids) - k + 1)) for k in range(1, n + 1)}
        self.c = {n: grams[n]}
        for k in range(1, n):
            self.c[k] = Counter(g[1:] for g in grams[k + 1])  # each distinct (k+1)-gram once
        self.D = {}
        for k, counts in self.c.items():
            n1 = sum(1 for v in counts.values() if v == 1)
            n2 = sum(1 for v in counts.values() if v == 2)
            self.D[k] = n1 / (n1 + 2 * n2) if n1 else 0.5

    @lru_cache(maxsize=None)
    def p(self, w, h):
        k = len(h) + 1
        c, D = self.c[k], self.D[k]
        if k == 1:
            total = sum(c.values())
            return max(c[(w,)] - D, 0) / total + D * len(c) / total / self.V
        lower = self.p(w, h[1:])
        total = sum(c[h + (x,)] for x in range(self.V))
        if total == 0:
            return lower
        types = sum(1 for x in range(self.V) if c[h + (x,)] > 0)
        return max(c[h + (w,)] - D, 0) / total + D * types / total * lower


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_equal_to_the_formulas_written_plainly(order):
    ids, V, _ = sonnet_ids()
    train, held = ids[:500], ids[500:620]
    kn, ref = KneserNey(train, V, order), Reference(train, V, order)
    assert kn.discounts == pytest.approx([ref.D[k] for k in range(1, order + 1)], abs=0)
    expected = [np.log(ref.p(int(held[t]), tuple(int(i) for i in held[max(0, t - order + 1) : t])))
                for t in range(1, len(held))]
    np.testing.assert_allclose(kn.log_probs(held), expected, rtol=1e-12)
    for context in ([], [3], list(held[:order]), [V - 1] * 6):
        h = tuple(int(i) for i in context[len(context) - (order - 1) :]) if order > 1 else ()
        dist = kn.distribution(np.array(context, dtype=int))
        np.testing.assert_allclose(dist, [ref.p(w, h) for w in range(V)], rtol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 5, 7])
def test_probabilities_sum_to_one_over_the_vocabulary(order):
    ids, V, _ = sonnet_ids()
    kn = KneserNey(np.tile(ids, 3), V, order)
    rng = np.random.default_rng(order)
    contexts = [ids[i : i + order] for i in rng.integers(0, len(ids) - order, 20)]  # seen ones
    contexts += [rng.integers(0, V, order) for _ in range(20)] + [ids[:0], ids[:1]]  # mostly unseen, short
    for context in contexts:
        dist = kn.distribution(context)
        assert dist.shape == (V,) and (dist > 0).all()
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)


def test_a_higher_order_predicts_a_repetitive_text_better():
    ids, V, _ = sonnet_ids()
    train, held = np.tile(ids, 4), ids
    bits = [-KneserNey(train, V, n).log_probs(held).mean() for n in (1, 2, 3, 5)]
    assert bits == sorted(bits, reverse=True) and bits[-1] < 0.5 * bits[0]


def test_bad_orders_and_texts_are_refused():
    with pytest.raises(ConfigError, match=r"order must be a whole number in \[1, 7\] for a vocabulary of 300"):
        KneserNey(np.arange(20) % 300, 300, 8)
    assert max_order(300) == 7 and 300**7 < 2**62 < 300**8
    with pytest.raises(ConfigError, match="order"):
        KneserNey(np.arange(20) % 5, 5, 0)
    with pytest.raises(ConfigError, match="order"):
        KneserNey(np.arange(20) % 5, 5, True)
    with pytest.raises(ConfigError, match="needs at least 3 characters to fit, got 2"):
        KneserNey(np.array([0, 1]), 5, 3)
    with pytest.raises(ConfigError, match=r"token ids must be in \[0, 4\]"):
        KneserNey(np.array([0, 1, 5]), 5, 2)
    with pytest.raises(ConfigError, match="nothing to score"):
        KneserNey(np.array([0, 1, 2]), 5, 2).log_probs(np.array([1]))


def test_the_comparison_counts_per_character():
    ids, V, symbols = sonnet_ids()
    held = ids[:200]
    chars = [symbols[i] for i in held]
    kn = KneserNey(ids, V, 3)
    # a "recurrent model" that is the same n-gram but certain of every 'e': it gains on 'e' only
    model = kn.log_probs(held).copy()
    e = np.array(chars[1:]) == "e"
    model[e] = 0.0
    c = compare(ids, held, model, chars, V, order=3)
    assert isinstance(c, Comparison) and c.order == 3 and c.fit_chars == len(ids)
    np.testing.assert_allclose(c.ngram_log_probs, kn.log_probs(held), rtol=1e-12)
    table = c.by_character()
    assert table[0].char == "e" and table[0].count == int(e.sum()) and table[0].model_bits == 0.0
    assert table[0].gain == pytest.approx(-kn.log_probs(held)[e].mean() / np.log(2))
    assert all(g.gain == pytest.approx(0.0, abs=1e-12) for g in table[1:])
    assert sum(g.count for g in table) == len(held) - 1
    assert c.model_bits_per_char < c.ngram_bits_per_char
    doc = c.to_json()
    assert doc["by_char"][0]["char"] == "e" and len(doc["model_log_probs"]) == len(held) - 1
    with pytest.raises(ConfigError, match="log-probabilities"):
        compare(ids, held, model[1:], chars, V)
