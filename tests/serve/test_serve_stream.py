"""LanguageModel.generate and samples with on_text: the pieces, joined, are the text returned,
for a model of characters and one of bytes, with a stop string and with several samples."""

import numpy as np
import pytest

from charrnn.api import LanguageModel
from charrnn.data.text import Vocab
from charrnn.model import CharRNN


def model_of(symbols, encoding="utf-8", seed=0):
    vocab = Vocab(symbols, encoding)
    return LanguageModel(CharRNN(vocab.size, 16, 1, seed=seed, cell="gru"), vocab)


CASES = [dict(prime="ab", length=120, seed=1), dict(prime="", length=80, seed=2, temperature=2.0),
         dict(prime="ca", length=200, seed=3, stop="cb"), dict(prime="b", length=0, seed=4)]


@pytest.mark.parametrize("args", CASES)
def test_the_pieces_are_the_text(args):
    lm = model_of(list("\nabcdé☃"))
    pieces = []
    text = lm.generate(**args, on_text=pieces.append)
    assert "".join(pieces) == text == lm.generate(**args)
    assert all(p for p in pieces)
    if args["prime"]:
        assert pieces[0] == args["prime"][0]  # the prime comes first, as it is shown


def test_a_bytes_models_characters_are_passed_on_whole():
    # the bytes of 'é' (c3 a9) and '☃' (e2 98 83) and some that are no UTF-8 at all
    lm = model_of(sorted([0x0A, 0x61, 0xC3, 0xA9, 0xE2, 0x98, 0x83, 0xFF]), "bytes", seed=5)
    for seed in range(6):
        pieces = []
        text = lm.generate("a", length=300, seed=seed, temperature=3.0, on_text=pieces.append)
        assert "".join(pieces) == text == lm.generate("a", length=300, seed=seed, temperature=3.0)
    assert any(ch in text for ch in "é☃\ufffd")


def test_several_samples_stream_the_first():
    lm = model_of(list("\nabcd"))
    pieces = []
    texts = lm.samples(3, "ab", length=90, seed=7, on_text=pieces.append)
    assert "".join(pieces) == texts[0] and texts == lm.samples(3, "ab", length=90, seed=7)
    many = []
    texts = lm.samples(9, "ab", length=40, seed=8, on_text=many.append)  # stepped together
    assert "".join(many) == texts[0]


def test_a_callback_that_raises_stops_the_generation():
    lm = model_of(list("\nabcd"))
    seen = []

    def stop_after_ten(piece):
        seen.append(piece)
        if len(seen) == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lm.generate("a", length=100_000, seed=1, on_text=stop_after_ten)
    assert len(seen) == 10 and np.all([len(p) == 1 for p in seen])
