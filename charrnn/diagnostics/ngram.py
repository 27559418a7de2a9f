"""A character n-gram model with interpolated Kneser-Ney smoothing, the baseline a recurrent model
is held against: which characters does the network predict that counting the last n - 1 cannot?

Interpolated Kneser-Ney as Chen and Goodman (1998, "An empirical study of smoothing techniques
for language modeling", section 3.5) give it, with one discount per order. For a history h of
k - 1 characters and h' the same without its first character,

    p_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .)  +  D_k N1+(h .) / c_k(h .) * p_{k-1}(w | h')

where at the highest order n, c_n is the count of the n-gram in the training text, and at every
lower order c_k(g) = N1+(. g), the number of distinct characters seen before g (the continuation
count: how many contexts a string completes, not how often it occurs); c_k(h .) is the sum over
w of c_k(h w) and N1+(h .) the number of w with c_k(h w) > 0. A history never seen at order k
(c_k(h .) = 0) leaves the lower order's estimate as it is. The recursion ends in the uniform
distribution over the V symbols of the vocabulary,

    p_1(w) = max(c_1(w) - D_1, 0) / c_1(.)  +  D_1 N1+(.) / c_1(.) * 1 / V,

so every symbol has a probability above zero and each p_k(. | h) sums to 1 over the vocabulary.
The discounts are Ney's estimate D_k = n1 / (n1 + 2 n2), with n1 and n2 the numbers of k-grams
whose count (c_k above) is 1 and 2. The first characters of a text, with fewer than n - 1 before
them, are predicted from the history there is (the recursion started at a lower order).

An n-gram is a base-V number (its characters the digits), so counting is sorting integers; the
order is limited so that V^n fits in 62 bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

DEFAULT_ORDER = 5
MAX_ORDER = 10
# the model is fitted on at most this many characters of the training text (the first ones)
MAX_FIT_CHARS = 20_000_000
LN2 = float(np.log(2.0))


def max_order(vocab_size: int) -> int:
    """The highest order whose n-grams, as base-V numbers, fit in 62 bits."""
    n = 1
    while n < MAX_ORDER and vocab_size ** (n + 1) < 2**62:
        n += 1
    return n


@dataclass
class _Level:
    """One order k: the k-grams with c_k > 0 and their counts; their histories' totals."""

    keys: np.ndarray  # (M,) int64, sorted: the k-grams as base-V numbers
    counts: np.ndarray  # (M,) float64: c_k
    hist: np.ndarray  # (K,) int64, sorted: the (k-1)-gram histories of those k-grams
    hist_total: np.ndarray  # (K,) c_k(h .)
    hist_types: np.ndarray  # (K,) N1+(h .)
    discount: float  # D_k


def _discount(counts: np.ndarray) -> float:
    n1 = int(np.count_nonzero(counts == 1))
    n2 = int(np.count_nonzero(counts == 2))
    # no singletons: nothing to learn the discount from; half a count is the usual default
    return n1 / (n1 + 2 * n2) if n1 else 0.5


def _level(keys: np.ndarray, counts: np.ndarray, V: int) -> _Level:
    hist, start = np.unique(keys // V, return_index=True)  # keys are sorted: histories run in blocks
    total = np.add.reduceat(counts, start) if keys.size else np.zeros(0)
    types = np.diff(np.r_[start, keys.size]).astype(np.float64)
    return _Level(keys, counts, hist, total, types, _discount(counts))


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of every query in sorted_keys."""
    at = np.searchsorted(sorted_keys, queries)
    at_c = np.minimum(at, max(sorted_keys.size - 1, 0))
    if not sorted_keys.size:
        return np.zeros(queries.shape, bool), at_c
    return (at < sorted_keys.size) & (sorted_keys[at_c] == queries), at_c


class KneserNey:
    """An interpolated Kneser-Ney character model of order n fitted on ids (N,) over a
    vocabulary of V symbols (module docstring)."""

    def __init__(self, ids: np.ndarray, vocab_size: int, order: int = DEFAULT_ORDER) -> None:
        V = int(vocab_size)
        if V < 1:
            raise ConfigError(f"the vocabulary must hold at least one symbol, got {V}")
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= max_order(V):
            raise ConfigError(f"the n-gram order must be a whole number in [1, {max_order(V)}] "
                              f"for a vocabulary of {V} symbols, got {order!r}")
        ids = np.asarray(ids).reshape(-1).astype(np.int64)[:MAX_FIT_CHARS]
        if ids.size < order:
            raise ConfigError(f"an n-gram model of order {order} needs at least {order} characters to fit, "
                              f"got {ids.size}")
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise ConfigError(f"token ids must be in [0, {V - 1}]")
        self.order, self.vocab_size, self.fit_chars = int(order), V, int(ids.size)
        # gram[k] holds the key of ids[i : i + k] at position i, for every k-gram of the text
        grams = [np.zeros(0, np.int64), ids.copy()]
        for k in range(2, self.order + 1):
            grams.append(grams[-1][:-1] * V + ids[k - 1 :])
        self.levels: list[_Level] = [None] * (self.order + 1)  # type: ignore[list-item]
        unique = {k: np.unique(grams[k], return_counts=True) for k in range(1, self.order + 1)}
        for k in range(1, self.order + 1):
            keys, counts = unique[k]
            if k < self.order:
                # continuation counts: the distinct (k+1)-grams ending in each k-gram
                suffixes = unique[k + 1][0] % (V**k)
                keys, counts = np.unique(suffixes, return_counts=True)
            self.levels[k] = _level(keys.astype(np.int64), counts.astype(np.float64), V)

    @property
    def discounts(self) -> list[float]:
        """D_1 .. D_n."""
        return [self.levels[k].discount for k in range(1, self.order + 1)]

    def _probs(self, history: np.ndarray, length: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """p(targets[j] | the last length[j] characters of history[j]): history (M, n-1) ids with
        the most recent character last, length (M,) how many of them count (0 .. n-1)."""
        V = self.vocab_size
        lv = self.levels[1]
        found, at = _lookup(lv.keys, targets)
        c = np.where(found, lv.counts[at], 0.0)
        total = lv.counts.sum()
        if total > 0:
            p = np.maximum(c - lv.discount, 0) / total + lv.discount * lv.keys.size / total / V
        else:
            p = np.full(targets.shape, 1.0 / V)
        hkey = np.zeros(targets.shape, dtype=np.int64)
        for k in range(2, self.order + 1):
            # the history of order k: the last k - 1 characters, as a base-V number
            hkey = hkey + history[:, -(k - 1)] * (V ** (k - 2)) if history.shape[1] else hkey
            lv = self.levels[k]
            seen, hat = _lookup(lv.hist, hkey)
            live = seen & (length >= k - 1)
            gfound, gat = _lookup(lv.keys, hkey * V + targets)
            c = np.where(gfound, lv.counts[gat], 0.0)
            tot = np.where(live, lv.hist_total[hat], 1.0)
            types = np.where(live, lv.hist_types[hat], 0.0)
            p = np.where(live, np.maximum(c - lv.discount, 0) / tot + lv.discount * types / tot * p, p)
        return p

    def _histories(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For every position t of ids (N,): its n-1 preceding ids (zeros before the start) and
        how many of them exist."""
        n1 = self.order - 1
        padded = np.r_[np.zeros(n1, dtype=np.int64), ids.astype(np.int64)]
        if not n1:
            return np.zeros((ids.size, 0), np.int64), np.zeros(ids.size, np.int64)
        hist = np.lib.stride_tricks.sliding_window_view(padded, n1 + 1)[:, :n1]
        return hist, np.minimum(np.arange(ids.size), n1)

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """ln p(ids[t] | the characters before it, up to n - 1 of them) for t = 1 .. N-1: (N-1,),
        as LanguageModel.score gives the recurrent model's."""
        ids = np.asarray(ids).reshape(-1).astype(np.int64)
        if ids.size < 2:
            raise ConfigError("fewer than 2 characters: there is nothing to score")
        hist, length = self._histories(ids)
        return np.log(self._probs(hist[1:], length[1:], ids[1:]))

    def distribution(self, context: np.ndarray) -> np.ndarray:
        """p(w | context) for every symbol w: (V,); the context's last n - 1 ids count."""
        context = np.asarray(context).reshape(-1).astype(np.int64)[-(self.order - 1) :] if self.order > 1 \
            else np.zeros(0, np.int64)
        n1 = self.order - 1
        hist = np.zeros((self.vocab_size, n1), dtype=np.int64)
        if context.size:
            hist[:, n1 - context.size :] = context
        length = np.full(self.vocab_size, context.size)
        return self._probs(hist, length, np.arange(self.vocab_size, dtype=np.int64))


@dataclass
class CharGain:
    """One symbol of the scored text: how well each model predicts it where it occurs."""

    char: str
    count: int
    model_bits: float  # mean surprisal under the recurrent model, bits
    ngram_bits: float  # mean surprisal under the n-gram, bits

    @property
    def gain(self) -> float:
        """Bits per occurrence the recurrent model saves over the n-gram (negative: it loses)."""
        return self.ngram_bits - self.model_bits


@dataclass
class Comparison:
    """The recurrent model against an n-gram on the same text, character by character."""

    order: int
    fit_chars: int  # characters the n-gram was fitted on
    chars: list[str]  # the scored text, one display character per id (N,)
    model_log_probs: np.ndarray  # (N-1,) ln p, the recurrent model's, for chars[1:]
    ngram_log_probs: np.ndarray  # (N-1,) the n-gram's
    discounts: list[float] = field(default_factory=list)

    @property
    def model_bits_per_char(self) -> float:
        return float(-self.model_log_probs.mean() / LN2)

    @property
    def ngram_bits_per_char(self) -> float:
        return float(-self.ngram_log_probs.mean() / LN2)

    @property
    def gains(self) -> np.ndarray:
        """(N-1,) bits the recurrent model saves on each character after the first."""
        return (self.model_log_probs - self.ngram_log_probs) / LN2

    def by_character(self, min_count: int = 1) -> list[CharGain]:
        """Every symbol seen at least min_count times among chars[1:], largest gain first."""
        targets = np.array(self.chars[1:], dtype=object)
        out = []
        for ch in dict.fromkeys(self.chars[1:]):
            at = targets == ch
            n = int(at.sum())
            if n >= min_count:
                out.append(CharGain(ch, n, float(-self.model_log_probs[at].mean() / LN2),
                                    float(-self.ngram_log_probs[at].mean() / LN2)))
        return sorted(out, key=lambda g: -g.gain)

    def to_json(self, min_count: int = 1) -> dict[str, Any]:
        return {
            "order": self.order, "fit_chars": self.fit_chars, "discounts": self.discounts,
            "chars": self.chars, "model_bits_per_char": self.model_bits_per_char,
            "ngram_bits_per_char": self.ngram_bits_per_char,
            "model_log_probs": [float(v) for v in self.model_log_probs],
            "ngram_log_probs": [float(v) for v in self.ngram_log_probs],
            "by_char": [{"char": g.char, "count": g.count, "model_bits": g.model_bits, "ngram_bits": g.ngram_bits,
                         "gain": g.gain} for g in self.by_character(min_count)],
        }


def compare(train_ids: np.ndarray, ids: np.ndarray, model_log_probs: np.ndarray, chars: list[str],
            vocab_size: int, order: int = DEFAULT_ORDER) -> Comparison:
    """The n-gram of `order` fitted on train_ids, and the recurrent model's log-probabilities of
    ids[1:] (what LanguageModel.score gives), side by side on the text ids (N,) shown as chars."""
    ids = np.asarray(ids).reshape(-1)
    model_log_probs = np.asarray(model_log_probs, dtype=np.float64).reshape(-1)
    if model_log_probs.size != ids.size - 1 or len(chars) != ids.size:
        raise ConfigError(f"{model_log_probs.size} log-probabilities and {len(chars)} characters "
                          f"for a text of {ids.size}")
    kn = KneserNey(train_ids, vocab_size, order)
    return Comparison(kn.order, kn.fit_chars, list(chars), model_log_probs, kn.log_probs(ids), kn.discounts)


def compare_model(lm: Any, train_ids: np.ndarray, ids: np.ndarray, order: int = DEFAULT_ORDER) -> Comparison:
    """`compare` for a language model with a vocabulary (charrnn.LanguageModel) on the text ids
    (N,): the model's own scores of that text (`score`), shown as the heatmap shows it."""
    from .heatmap import display_text

    vocab = lm.vocab
    ids = np.asarray(ids, dtype=np.intp)
    text = vocab.decode_bytes(ids) if vocab.encoding == "bytes" else vocab.decode(ids)
    return compare(train_ids, ids, lm.score(text).log_probs, list(display_text(vocab, ids)), vocab.size, order)
