"""Is it copying? How much of a sample occurs in the training text.

    words   the share of the sample's words (maximal runs of letters and digits, \\w+) that occur
            as words of the training text
    lines   the share of the sample's complete lines (each ending in a newline; stripped, blank
            ones left out) that occur as lines of the training text
    longest the longest substring of the sample that occurs anywhere in the training text

Words and lines are set look-ups. The longest copy needs, for every position i of the sample, the
longest prefix of sample[i:] found in the text (its matching statistics); a suffix array of the
text answers each in O(log n) comparisons: the suffixes sharing the longest prefix with sample[i:]
sit next to the place where sample[i:] would be inserted in sorted order.

The suffix array is built by prefix doubling in NumPy: sort the suffixes by their first k
symbols, then by their first 2k using the ranks of the first k twice, until every rank differs.
Only the groups still tied are sorted again in each round, so the rounds after the first few
touch few suffixes in natural text (a corpus full of long repeats takes more). The text is capped at
`MAX_CHARS` characters (its first part is indexed) so that a very large corpus costs bounded memory:
about 50 bytes per character indexed at the peak of the construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import stopping
from ..checks import counted

# Index at most this many characters of the training text (about 800 MB at the construction's peak).
MAX_CHARS = 16_000_000
# Sample positions covered by a copied substring at least this long are marked in the report.
COPY_MARK = 20

_WORD = re.compile(r"\w+")


def suffix_array(ids: np.ndarray) -> np.ndarray:
    """The suffixes of ids (N,) (non-negative ints) in lexicographic order: (N,) start positions.

    A suffix that is a prefix of another sorts first, as in string order."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # the first round sorts by the first k symbols at once, packed into one 63-bit key (symbol + 1
    # in b bits each, 0 past the end): one sort of all N suffixes instead of log2(k) of them
    b = int(ids.max() + 1).bit_length()
    k = max(1, 63 // b)
    key = np.zeros(n, dtype=np.int64)
    for j in range(k):
        key <<= b
        if j < n:
            key[: n - j] |= ids[j:] + 1
    sa = np.argsort(key)  # ties are suffixes equal so far: their order is settled by later rounds
    # rank[i]: the slot in sa where the group of suffixes tying with suffix i begins; a group's
    # rank stays valid while later rounds split it, and the slots of a group are contiguous
    sorted_key = key[sa]
    new_group = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    rank = np.empty(n, dtype=np.int64)
    rank[sa] = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    tied = np.flatnonzero(~(new_group & np.r_[new_group[1:], True]))  # slots of groups of 2 or more
    del key, sorted_key, new_group
    while tied.size:
        stopping.check()
        sub = sa[tied]
        nxt = sub + k
        second = np.zeros(sub.size, dtype=np.int64)  # 0: the suffix ends within k symbols, sorts first
        inside = nxt < n
        second[inside] = rank[nxt[inside]] + 1
        key = rank[sub] * (n + 1) + second  # < (n + 1)^2: exact in int64 for n up to 3e9
        order = np.argsort(key)
        sub, key = sub[order], key[order]
        sa[tied] = sub
        new_group = np.r_[True, key[1:] != key[:-1]]
        rank[sub] = np.maximum.accumulate(np.where(new_group, tied, 0))
        # a group's slots are contiguous, so a slot stays tied unless it starts a group of one
        tied = tied[~(new_group & np.r_[new_group[1:], True])]
        k *= 2
    return sa


def _as_bytes(ids: np.ndarray) -> bytes:
    """Big-endian 32-bit codes: bytes order then equals the order of the symbol sequences."""
    return np.asarray(ids, dtype=">u4").tobytes()


def _lcp(a: bytes, b: bytes) -> int:
    """The common prefix of two big-endian 4-byte code strings, in symbols."""
    m = min(len(a), len(b)) // 4
    if m == 0:
        return 0
    x = np.frombuffer(a, dtype=">u4", count=m)
    y = np.frombuffer(b, dtype=">u4", count=m)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else m


@dataclass
class Novelty:
    words: int  # words in the sample
    words_in_train: int  # of them, words that occur in the training text
    lines: int  # complete, non-blank lines in the sample
    lines_in_train: int
    longest: int  # characters of the longest substring of the sample found in the training text
    longest_text: str  # that substring
    chars: int  # characters in the sample

    @property
    def word_share(self) -> float | None:
        return self.words_in_train / self.words if self.words else None

    @property
    def line_share(self) -> float | None:
        return self.lines_in_train / self.lines if self.lines else None

    def to_json(self) -> dict[str, Any]:
        return {"chars": self.chars, "words": self.words, "words_in_train": self.words_in_train,
                "word_share": self.word_share, "lines": self.lines, "lines_in_train": self.lines_in_train,
                "line_share": self.line_share, "longest_copy": self.longest, "longest_copy_text": self.longest_text}

    def summary(self) -> str:
        w = f"{self.words_in_train}/{self.words} words ({self.word_share:.0%})" if self.words else "no words"
        ln = f"{self.lines_in_train}/{self.lines} complete lines ({self.line_share:.0%})" if self.lines \
            else "no complete lines"
        return (f"{w} and {ln} occur in the training text; the longest substring copied from it is "
                f"{counted(self.longest, 'character')}: {self.longest_text!r}")


def complete_lines(text: str) -> list[str]:
    """The lines of text that end in a newline, stripped, blank ones left out."""
    parts = text.split("\n")[:-1]  # the last piece has no newline after it
    return [s.strip() for s in parts if s.strip()]


class NoveltyIndex:
    """The training text, indexed to answer how much of a sample it contains.

    ids: (N,) token ids of the training text; `decode` turns ids into text (the vocabulary's).
    Only the first `max_chars` characters are indexed; `truncated` says whether that cut any.
    """

    def __init__(self, ids: np.ndarray, decode: Any, max_chars: int = MAX_CHARS) -> None:
        ids = np.asarray(ids)
        self.truncated = ids.shape[0] > max_chars
        ids = np.ascontiguousarray(ids[:max_chars], dtype=np.int64)
        self.decode = decode
        self.n = ids.shape[0]
        self.sa = suffix_array(ids)
        self.codes = _as_bytes(ids)
        text = decode(ids)
        self.words = set(_WORD.findall(text))
        self.lines = {s.strip() for s in text.split("\n") if s.strip()}

    def _suffix(self, pos: int, length: int) -> bytes:
        return self.codes[4 * pos : 4 * (pos + length)]

    def matching_lengths(self, sample: np.ndarray) -> np.ndarray:
        """For every position i of sample (M,), the longest prefix of sample[i:] found in the text."""
        sample = np.asarray(sample, dtype=np.int64)
        m = sample.shape[0]
        q_all = _as_bytes(sample)
        out = np.zeros(m, dtype=np.int64)
        sa, n = self.sa, self.n
        for i in range(m):
            stopping.check()
            q = q_all[4 * i :]
            length = m - i
            lo, hi = 0, n  # first slot whose suffix is >= q, by binary search
            while lo < hi:
                mid = (lo + hi) // 2
                if self._suffix(int(sa[mid]), length) < q:
                    lo = mid + 1
                else:
                    hi = mid
            best = 0
            for slot in (lo - 1, lo):
                if 0 <= slot < n:
                    best = max(best, _lcp(self._suffix(int(sa[slot]), length), q))
            out[i] = best
        return out

    def novelty(self, sample: np.ndarray) -> Novelty:
        sample = np.asarray(sample, dtype=np.int64).reshape(-1)
        text = self.decode(sample)
        words = _WORD.findall(text)
        lines = complete_lines(text)
        ms = self.matching_lengths(sample) if sample.size else np.zeros(0, dtype=np.int64)
        i = int(np.argmax(ms)) if ms.size else 0
        longest = int(ms[i]) if ms.size else 0
        return Novelty(
            words=len(words), words_in_train=sum(w in self.words for w in words),
            lines=len(lines), lines_in_train=sum(s in self.lines for s in lines),
            longest=longest, longest_text=self.decode(sample[i : i + longest]), chars=int(sample.size),
        )

    def copied_mask(self, sample: np.ndarray, min_length: int = COPY_MARK) -> np.ndarray:
        """(M,) bool: the sample's characters inside a substring of at least `min_length`
        characters that occurs in the training text."""
        ms = self.matching_lengths(sample)
        mask = np.zeros(ms.shape[0] + 1, dtype=np.int64)
        starts = np.flatnonzero(ms >= min_length)
        np.add.at(mask, starts, 1)
        np.add.at(mask, starts + ms[starts], -1)
        return np.cumsum(mask)[:-1] > 0
