"""Novelty of samples: the suffix array, matching lengths and shares on texts with known answers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.data.text import encode_text
from charrnn.diagnostics.novelty import NoveltyIndex, complete_lines, suffix_array


def brute_matching_lengths(text, sample):
    """For each i, the longest prefix of sample[i:] occurring in text, by trying every length."""
    t = "".join(map(chr, text))
    s = "".join(map(chr, sample))
    out = []
    for i in range(len(s)):
        best = 0
        while i + best < len(s) and s[i : i + best + 1] in t:
            best += 1
        out.append(best)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=70), st.integers(0, 3))
def test_suffix_array_sorts_every_suffix(ids, scale):
    ids = np.array(ids) * (1 + 400 * scale)  # large symbol values too: fewer symbols per packed key
    sa = suffix_array(ids)
    assert sa.tolist() == sorted(range(len(ids)), key=lambda i: ids[i:].tolist())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(65, 68), min_size=1, max_size=60), st.lists(st.integers(65, 69), min_size=0, max_size=30))
def test_matching_lengths_against_brute_force(text, sample):
    index = NoveltyIndex(np.array(text), lambda ids: "".join(map(chr, np.asarray(ids).tolist())))
    assert index.matching_lengths(np.array(sample, dtype=np.int64)).tolist() == brute_matching_lengths(text, sample)


def _index(train: str):
    vocab, ids = encode_text(train)
    return vocab, NoveltyIndex(ids, vocab.decode)


def test_planted_copy_is_found_with_its_length():
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghij"))
    train = "".join(rng.choice(letters, 20000))
    copy = train[5000:5037]
    # the sample's own characters are drawn from letters that never appear in training, so
    # nothing outside the planted copy can extend it
    vocab, index = _index(train + "XYZ")
    novel = "".join(rng.choice(list("XYZ"), 50))
    sample = novel + copy + novel
    n = index.novelty(vocab.encode(sample))
    assert n.longest == 37 and n.longest_text == copy
    mask = index.copied_mask(vocab.encode(sample), min_length=20)
    assert mask.tolist() == [False] * 50 + [True] * 37 + [False] * 50


def test_word_and_line_shares_are_counted():
    train = "the cat sat\non the mat\nand so on\n"
    vocab, index = _index(train + "dogXqz")
    # words: the dog sat on the mat qz mat, of which dog and qz are new (training has only
    # "dogXqz"); complete lines: "on the mat" (in training) and "the dog sat" (not); the
    # unfinished last line does not count
    sample = "the dog sat\non the mat\nqz mat"
    n = index.novelty(vocab.encode(sample))
    assert (n.words, n.words_in_train) == (8, 6)
    assert (n.lines, n.lines_in_train) == (2, 1)
    assert n.longest_text == " sat\non the mat\n" and n.longest == 16  # "dog" breaks the match before it
    assert n.to_json()["word_share"] == pytest.approx(6 / 8)


def test_complete_lines():
    assert complete_lines("a\n\n  b \nc") == ["a", "b"]
    assert complete_lines("no newline") == []


def test_cap_indexes_the_first_part_only():
    vocab, ids = encode_text("abcabcabcxyz")
    index = NoveltyIndex(ids, vocab.decode, max_chars=9)
    assert index.truncated and index.n == 9
    assert index.novelty(vocab.encode("xyz")).longest == 0


def test_empty_sample():
    vocab, index = _index("hello world\n")
    n = index.novelty(np.zeros(0, dtype=np.int64))
    assert (n.words, n.lines, n.longest, n.word_share) == (0, 0, 0, None)
