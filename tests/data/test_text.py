"""Tests for charrnn.data.text: vocabulary, streaming encoding, splitting and batching."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.data.text import (Batcher, EncodedText, Vocab, encode_file, encode_text, fit_batch_shape,
                               load_encoded, read_text, split_train_val)
from charrnn.errors import CheckpointError, ConfigError, DataError

from conftest import SONNET, charrnn

# Accents (precomposed and combining), CJK, emoji (4-byte UTF-8), Hebrew, control characters.
MIXED = (
    "Caf\u00e9 na\u00efve e\u0301 \u6f22\u5b57\u304b\u306a \U0001f600\U0001f680 "
    "\u05e9\u05dc\u05d5\u05dd\n\ttab\u00a0end\n"
)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# -- Vocab ---------------------------------------------------------------------------------------


def test_unicode_round_trip_in_memory() -> None:
    vocab, ids = encode_text(MIXED)
    assert vocab.encoding == "utf-8"
    assert vocab.symbols == sorted(set(MIXED))  # code points, never bytes
    assert len(ids) == len(MIXED)  # one id per character: the emoji and CJK are single tokens
    assert ids.dtype == np.uint8
    assert vocab.decode(ids) == MIXED
    assert vocab.decode_bytes(ids) == MIXED.encode("utf-8")
    # The combining accent is its own symbol, distinct from the precomposed letter.
    assert "\u0301" in vocab.symbols and "\u00e9" in vocab.symbols


def test_ids_follow_sorted_code_points() -> None:
    vocab, ids = encode_text("cab")
    assert vocab.symbols == ["a", "b", "c"]
    assert ids.tolist() == [2, 0, 1]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 4, 1 << 20])
def test_a_byte_order_mark_starting_the_file_is_dropped_and_only_there(tmp_path: Path, chunk_bytes: int) -> None:
    # the mark is 3 bytes: small chunks split it, and the decoder must still see it as the first character
    text = "hello \ufeffworld"  # inside the text U+FEFF is a character (a zero-width no-break space)
    path = write(tmp_path / "bom.txt", "\ufeff" + text)
    enc = encode_file(path, tmp_path / "bom.ids", chunk_bytes=chunk_bytes)
    assert enc.vocab.decode(enc.ids) == text
    # the content hash is of the file's bytes, mark included: what identifies the file on resume
    assert enc.text_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    again = encode_file(path, tmp_path / "again.ids", vocab=enc.vocab, chunk_bytes=chunk_bytes)
    assert (again.text_sha256, again.ids_sha256) == (enc.text_sha256, enc.ids_sha256)
    assert read_text(path) == text


def test_bytes_mode_keeps_a_byte_order_mark(tmp_path: Path) -> None:
    data = "\ufeffhi".encode("utf-8")
    path = write(tmp_path / "bom.bin", data)
    enc = encode_file(path, tmp_path / "bom.ids", encoding="bytes")
    assert enc.vocab.decode_bytes(enc.ids) == data
    assert read_text(path, "bytes") == data


def test_a_file_holding_only_a_byte_order_mark_has_no_characters(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no characters"):
        encode_file(write(tmp_path / "bom.txt", "\ufeff"), tmp_path / "bom.ids")


@pytest.mark.parametrize(
    ("n", "dtype"), [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)]
)
def test_id_dtype_thresholds(n: int, dtype: type) -> None:
    # Skip the surrogate block: those code points are not characters.
    cps = [c for c in range(n + 2048) if not 0xD800 <= c <= 0xDFFF][:n]
    vocab = Vocab([chr(c) for c in cps], "utf-8")
    assert vocab.size == n
    assert vocab.id_dtype == dtype


def test_large_vocab_round_trip_beyond_uint16() -> None:
    cps = [c for c in range(70000 + 2048) if not 0xD800 <= c <= 0xDFFF][:70000]
    vocab = Vocab([chr(c) for c in cps], "utf-8")
    text = "".join(chr(c) for c in cps[-5:]) + "a"
    ids = vocab.encode(text)
    assert ids.dtype == np.uint32
    assert int(ids.max()) > 65535
    assert vocab.decode(ids) == text


def test_bytes_vocab_dtype_and_symbols() -> None:
    vocab = Vocab(list(range(256)), "bytes")
    assert vocab.size == 256 and vocab.id_dtype == np.uint8
    assert vocab.encode(b"\x00\xff").tolist() == [0, 255]


@pytest.mark.parametrize(
    "symbols",
    [["b", "a"], ["a", "a"], ["ab"], [], [1]],
)
def test_vocab_rejects_bad_symbols(symbols: list) -> None:
    with pytest.raises((TypeError, ValueError)):
        Vocab(symbols, "utf-8")


def test_unknown_characters_error_names_them() -> None:
    vocab, _ = encode_text("abc")
    with pytest.raises(DataError) as e:
        vocab.encode("ab\u00e9c\n\u00e9")
    msg = one_line(e)
    assert "'\u00e9' (U+00E9)" in msg
    assert "'\\n' (U+000A)" in msg  # shown escaped, so the message stays on one line
    assert "2 distinct" in msg and "3 occurrences" in msg


def test_unknown_error_names_at_most_ten() -> None:
    vocab, _ = encode_text("a")
    with pytest.raises(DataError) as e:
        vocab.encode("".join(chr(0x100 + i) for i in range(25)))
    msg = one_line(e)
    assert "U+0109" in msg and "U+010A" not in msg
    assert "and 15 more" in msg and "25 distinct" in msg


def test_unknown_skip_counts_them() -> None:
    vocab, _ = encode_text("abc")
    ids, n_unknown, unknown = vocab.encode_counting("xaxb\u00e9c", unknown="skip")
    assert vocab.decode(ids) == "abc"
    assert n_unknown == 3
    assert unknown == ["x", "\u00e9"]  # distinct, in order of first appearance
    assert vocab.encode("zzz", unknown="skip").size == 0


def test_decode_rejects_out_of_range_ids() -> None:
    vocab, _ = encode_text("ab")
    with pytest.raises(DataError, match="outside"):
        vocab.decode([0, 2])


def test_lone_surrogate_is_a_data_error() -> None:
    with pytest.raises(DataError, match="surrogate"):
        encode_text("a\ud800b")


def test_vocab_json_round_trip() -> None:
    for vocab in (encode_text(MIXED)[0], encode_text(b"\x00\x01\xfe", "bytes")[0]):
        restored = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
        assert restored == vocab
        assert restored.encode(vocab.decode_bytes([0, 1])).tolist() == [0, 1]
    assert encode_text("ab")[0] != encode_text(b"ab", "bytes")[0]
    assert encode_text("ab")[0] != encode_text("abc")[0]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"encoding": "utf-8"},
        {"encoding": "utf-16", "symbols": ["a"]},
        {"encoding": "utf-8", "symbols": "ab"},
        {"encoding": "utf-8", "symbols": []},
        {"encoding": "utf-8", "symbols": ["b", "a"]},
        {"encoding": "utf-8", "symbols": ["a", "a"]},
        {"encoding": "utf-8", "symbols": ["ab"]},
        {"encoding": "utf-8", "symbols": [97]},
        {"encoding": "utf-8", "symbols": ["\ud800"]},
        {"encoding": "bytes", "symbols": [True]},
        {"encoding": "bytes", "symbols": [256]},
        {"encoding": "bytes", "symbols": [-1]},
        {"encoding": "bytes", "symbols": [1.0]},
        {"encoding": "bytes", "symbols": ["a"]},
        {"encoding": "utf-8", "symbols": ["a"], "extra": 1},
    ],
)
def test_vocab_from_json_rejects_malformed(bad: object) -> None:
    with pytest.raises(CheckpointError):
        Vocab.from_json(bad)


# -- encoding files ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 4096])
def test_encode_file_round_trip_across_chunk_boundaries(tmp_path: Path, chunk_bytes: int) -> None:
    # With chunks of 1-7 bytes, 2-, 3- and 4-byte characters straddle many boundaries.
    text = MIXED * 3
    enc = encode_file(write(tmp_path / "t.txt", text), tmp_path / "t.ids", chunk_bytes=chunk_bytes)
    expected_vocab, expected_ids = encode_text(text)
    assert enc.vocab == expected_vocab
    assert len(enc) == len(text)
    np.testing.assert_array_equal(np.asarray(enc.ids), expected_ids)
    assert enc.vocab.decode(enc.ids) == text


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=60), chunk_bytes=st.integers(1, 9))
def test_encode_file_round_trip_property(text: str, chunk_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.txt"
        try:
            src.write_bytes(text.encode("utf-8"))
        except UnicodeEncodeError:
            return  # a lone surrogate has no UTF-8 form, so no file can hold it
        enc = encode_file(src, Path(d) / "t.ids", chunk_bytes=chunk_bytes)
        assert enc.vocab.symbols == sorted(set(text))
        assert enc.vocab.decode(enc.ids) == text
        del enc


def test_encode_file_writes_raw_little_endian_ids(tmp_path: Path) -> None:
    enc = encode_file(write(tmp_path / "t.txt", "hello"), tmp_path / "t.ids")
    raw = (tmp_path / "t.ids").read_bytes()
    assert raw == np.array([1, 0, 2, 2, 3], dtype="<u1").tobytes()
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert enc.path == tmp_path / "t.ids"


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"\xff", 0),
        (b"abc\xffdef", 3),
        (b"abc\xc3\xa9x\xffyy", 6),  # after a valid 2-byte character
        (b"\xe6\xbc\xa2\xe5\xad\x97\xe6\xbcA", 6),  # a 3-byte character cut short by 'A'
        (b"abcd\xc3", 4),  # truncated at the end of the file
        (b"ab\xed\xa0\x80", 2),  # an encoded surrogate is not valid UTF-8
    ],
)
@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 1 << 20])
def test_invalid_utf8_reports_byte_offset(tmp_path: Path, data: bytes, offset: int, chunk_bytes: int) -> None:
    src = write(tmp_path / "bad.txt", data)
    with pytest.raises(DataError) as e:
        encode_file(src, tmp_path / "bad.ids", chunk_bytes=chunk_bytes)
    msg = one_line(e)
    assert f"byte offset {offset}" in msg
    assert "--encoding bytes" in msg and str(src) in msg
    assert not (tmp_path / "bad.ids").exists()
    with pytest.raises(DataError, match=f"byte offset {offset}"):
        read_text(src, "utf-8")


def test_bytes_mode_on_random_binary(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, size=50_000, dtype=np.uint8).tobytes()
    src = write(tmp_path / "blob.bin", data)
    enc = encode_file(src, tmp_path / "blob.ids", encoding="bytes", chunk_bytes=333)
    assert enc.vocab.encoding == "bytes"
    assert enc.vocab.size == len(set(data)) and enc.vocab.id_dtype == np.uint8
    assert enc.vocab.decode_bytes(enc.ids) == data
    assert isinstance(enc.vocab.decode(enc.ids[:100]), str)  # display form never fails
    assert read_text(src, "bytes") == data
    # Random bytes are almost never valid UTF-8: the text encoding must refuse them.
    with pytest.raises(DataError, match="not valid UTF-8"):
        encode_file(src, tmp_path / "x.ids")


def test_bytes_mode_keeps_multibyte_characters_as_bytes() -> None:
    vocab, ids = encode_text("\u00e9", "bytes")
    assert vocab.symbols == [0xA9, 0xC3] and ids.tolist() == [1, 0]  # C3 A9


def test_ids_are_a_read_only_memmap(tmp_path: Path) -> None:
    enc = encode_file(write(tmp_path / "t.txt", "abcabc"), tmp_path / "t.ids")
    assert isinstance(enc, EncodedText)
    assert isinstance(enc.ids, np.memmap)
    with pytest.raises(ValueError):
        enc.ids[0] = 1
    again = load_encoded(tmp_path / "t.ids", enc.vocab)
    assert isinstance(again.ids, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.ids), np.asarray(enc.ids))


def test_encoding_streams_instead_of_loading(tmp_path: Path) -> None:
    line = "The quick brown fox jumps over the lazy dog; caf\u00e9 \u00fcber na\u00efve.\n"
    src = tmp_path / "big.txt"
    with open(src, "w", encoding="utf-8") as f:
        for _ in range((4 << 20) // len(line) + 1):
            f.write(line)
    size = src.stat().st_size
    assert size > 4 << 20
    tracemalloc.start()
    try:
        enc = encode_file(src, tmp_path / "big.ids", chunk_bytes=1 << 14)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Whole-file decoding would need about `size` bytes for the str alone, plus the id array.
    assert peak < size / 8, (peak, size)
    assert len(enc) == len(src.read_text(encoding="utf-8"))
    assert enc.vocab.decode(enc.ids[: len(line)]) == line


def test_encode_file_with_vocab_maps_and_reports_unknowns(tmp_path: Path) -> None:
    vocab, _ = encode_text("abc\n")
    src = write(tmp_path / "eval.txt", "abxc\n\u00e9a")
    with pytest.raises(DataError) as e:
        encode_file(src, tmp_path / "eval.ids", vocab=vocab, chunk_bytes=2)
    msg = one_line(e)
    assert "'x' (U+0078)" in msg and "'\u00e9' (U+00E9)" in msg and str(src) in msg
    assert not (tmp_path / "eval.ids").exists()
    assert not list(tmp_path.glob("*.tmp"))
    enc = encode_file(src, tmp_path / "eval.ids", vocab=vocab, chunk_bytes=2, unknown="skip")
    assert enc.vocab is vocab
    assert enc.vocab.decode(enc.ids) == "abc\na"
    assert enc.n_unknown == 2 and enc.unknown_symbols == ["x", "\u00e9"]


def test_encode_file_with_vocab_rejects_conflicting_encoding(tmp_path: Path) -> None:
    vocab, _ = encode_text("ab")
    with pytest.raises(ConfigError):
        encode_file(write(tmp_path / "t.txt", "ab"), tmp_path / "t.ids", vocab=vocab, encoding="bytes")


def test_load_encoded_rejects_a_foreign_file(tmp_path: Path) -> None:
    enc = encode_file(write(tmp_path / "t.txt", "abcdef"), tmp_path / "t.ids")
    small, _ = encode_text("ab")
    with pytest.raises(DataError, match="another vocabulary"):
        load_encoded(enc.path, small)
    big = Vocab([chr(c) for c in range(300)], "utf-8")  # uint16 ids: 6 bytes is 3 ids, fine
    (tmp_path / "odd.ids").write_bytes(b"\x00\x00\x01")
    with pytest.raises(DataError, match="not a multiple"):
        load_encoded(tmp_path / "odd.ids", big)


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
def test_file_errors_name_the_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    expected = {"missing": "no such file", "directory": "is a directory", "empty": "is empty"}[kind]
    for call in (
        lambda: encode_file(path, tmp_path / "out.ids"),
        lambda: read_text(path, "utf-8"),
        lambda: load_encoded(path, encode_text("a")[0]),
    ):
        with pytest.raises(DataError) as e:
            call()
        msg = one_line(e)
        assert str(path) in msg and expected in msg


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.txt", "x")
    path.chmod(0)
    with pytest.raises(DataError, match="permission denied"):
        read_text(path, "utf-8")


def test_output_may_not_overwrite_the_source(tmp_path: Path) -> None:
    src = write(tmp_path / "t.txt", "hello")
    with pytest.raises(DataError, match="overwrite"):
        encode_file(src, src)
    assert src.read_text() == "hello"


def test_unknown_encoding_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="latin-1"):
        encode_file(write(tmp_path / "t.txt", "x"), tmp_path / "t.ids", encoding="latin-1")


# -- split -----------------------------------------------------------------------------------------


def test_validation_is_the_last_part_and_disjoint() -> None:
    train, val = split_train_val(1000, 0.1)
    assert val is not None
    assert (train.start, train.stop) == (0, 900)
    assert (val.start, val.stop) == (900, 1000)
    assert not set(train) & set(val)
    assert len(train) + len(val) == 1000


def test_zero_val_frac_means_no_validation() -> None:
    train, val = split_train_val(10, 0.0)
    assert val is None and train == range(0, 10)


@pytest.mark.parametrize("frac", [-0.1, 0.51, 1.0, float("nan"), True, "0.1"])
def test_val_frac_out_of_range(frac: object) -> None:
    with pytest.raises(ConfigError, match="val_frac"):
        split_train_val(1000, frac)  # type: ignore[arg-type]


def test_split_too_short_names_the_minimum() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        split_train_val(15, 0.1)  # 1 validation token
    with pytest.raises(ConfigError, match="at least 2"):
        split_train_val(1, 0.0)


# -- batching --------------------------------------------------------------------------------------


def epoch_positions(batcher: Batcher, ids: np.ndarray) -> list[int]:
    """Run one epoch; check every window's targets; return the global position of every input."""
    B, L = batcher.batch_size, batcher.stream_len
    seen: list[int] = []
    for k in range(batcher.windows_per_epoch):
        x, y, reset = batcher.next_batch()
        assert reset == (k == 0)
        assert x.dtype == np.int64 and y.dtype == np.int64
        assert x.shape == y.shape and x.shape[0] == B and 1 <= x.shape[1] <= batcher.seq_len
        start = k * batcher.seq_len
        for s in range(B):
            pos = s * L + start + np.arange(x.shape[1])
            np.testing.assert_array_equal(x[s], ids[pos])
            np.testing.assert_array_equal(y[s], ids[pos + 1])  # targets: inputs shifted by one
            seen.extend(pos.tolist())
    return seen


@pytest.mark.parametrize(
    ("n", "B", "T"), [(101, 4, 7), (100, 3, 11), (50, 1, 49), (50, 1, 100), (1000, 16, 8), (9, 8, 3)]
)
def test_batcher_covers_each_training_token_once_per_epoch(n: int, B: int, T: int) -> None:
    ids = np.random.default_rng(n).integers(0, 50, size=n).astype(np.uint8)
    batcher = Batcher(ids, B, T)
    L = (n - 1) // B
    assert batcher.stream_len == L and batcher.windows_per_epoch == -(-L // T)
    for epoch in range(2):
        assert batcher.epoch == epoch
        seen = epoch_positions(batcher, ids)
        assert sorted(seen) == list(range(B * L))  # every one exactly once
        assert n - B * L <= B  # what is left over is less than one token per stream, plus the last target


def test_batcher_reads_from_a_memmap_slice(tmp_path: Path) -> None:
    text = "abcdefghij" * 30
    enc = encode_file(write(tmp_path / "t.txt", text), tmp_path / "t.ids")
    train, _ = split_train_val(len(enc), 0.1)
    view = enc.ids[train.start : train.stop]
    batcher = Batcher(view, 3, 10)
    x, y, reset = batcher.next_batch()
    assert reset and type(x) is np.ndarray
    assert enc.vocab.decode(x[0]) == text[:10] and enc.vocab.decode(y[0]) == text[1:11]
    L = (len(train) - 1) // 3
    assert enc.vocab.decode(x[1]) == text[L : L + 10]


def test_reset_only_at_epoch_starts() -> None:
    batcher = Batcher(np.arange(40, dtype=np.int32), 2, 5)
    flags = [batcher.next_batch()[2] for _ in range(3 * batcher.windows_per_epoch)]
    W = batcher.windows_per_epoch
    assert W == 4  # L = 19: windows of 5, 5, 5, 4
    assert flags == ([True] + [False] * (W - 1)) * 3
    assert batcher.epoch == 3 and batcher.progress == 3.0


def test_state_dict_round_trip_continues_identically() -> None:
    ids = np.random.default_rng(1).integers(0, 30, size=257).astype(np.uint16)
    a = Batcher(ids, 4, 10)
    for _ in range(9):  # into the second epoch (7 windows each)
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))
    assert state["epoch"] == 1 and state["window"] == 2
    b = Batcher(ids, 4, 10)
    b.load_state_dict(state)
    for _ in range(20):
        xa, ya, ra = a.next_batch()
        xb, yb, rb = b.next_batch()
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert ra == rb
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(window=99),
        lambda d: d.update(epoch=-1),
        lambda d: d.update(epoch=1.5),
        lambda d: d.update(window=True),
        lambda d: d.update(batch_size=5),
        lambda d: d.update(n_tokens=1),
        lambda d: d.pop("epoch"),
        lambda d: d.update(extra=0),
    ],
)
def test_load_state_dict_validates(mutate) -> None:
    batcher = Batcher(np.arange(100), 4, 10)
    batcher.next_batch()
    state = batcher.state_dict()
    mutate(state)
    with pytest.raises(CheckpointError):
        batcher.load_state_dict(state)
    assert batcher.window == 1 and batcher.epoch == 0  # unchanged
    with pytest.raises(CheckpointError):
        batcher.load_state_dict([1, 2])


def test_batcher_too_short_names_the_minimum() -> None:
    with pytest.raises(ConfigError, match="at least 9") as e:
        Batcher(np.arange(8), 8, 4)
    one_line(e)
    Batcher(np.arange(9), 8, 4)  # the minimum itself is fine


@pytest.mark.parametrize(("B", "T"), [(0, 4), (4, 0), (2.0, 4), (True, 4)])
def test_batcher_rejects_bad_shape(B: object, T: object) -> None:
    with pytest.raises(ConfigError):
        Batcher(np.arange(100), B, T)  # type: ignore[arg-type]


def test_fit_batch_shape() -> None:
    assert fit_batch_shape(10**6, 64, 100) == (64, 100, None)
    B, T, msg = fit_batch_shape(1000, 64, 100)
    assert (B, T) == (9, 100) and msg is not None and "64 -> 9" in msg
    B, T, msg = fit_batch_shape(12, 64, 100)
    assert (B, T) == (1, 11) and msg is not None and "seq_len 100 -> 11" in msg
    assert fit_batch_shape(2, 1, 1) == (1, 1, None)
    for n in (3, 12, 1000, 5000):
        B, T, _ = fit_batch_shape(n, 64, 100)
        batcher = Batcher(np.arange(n), B, T)
        assert batcher.next_batch()[0].shape == (B, T)  # the first window is a full one
    with pytest.raises(DataError, match="at least 2"):
        fit_batch_shape(1, 64, 100)


def test_a_run_on_a_text_with_a_byte_order_mark_trains_without_it_and_resumes(tmp_path: Path) -> None:
    from charrnn import load

    text = write(tmp_path / "bom.txt", "\ufeff" + SONNET * 4)
    run = tmp_path / "run"
    tiny = ["--hidden-size", "8", "--seq-len", "16", "--batch-size", "2", "--eval-every", "2", "--sample-every", "0",
            "--quiet"]
    assert charrnn("train", text, "--out", run, "--steps", "2", *tiny).returncode == 0
    assert "\ufeff" not in load(run).vocab.symbols
    # resuming re-encodes the text (its tokens gone) and finds it the same by its recorded hashes
    (run / "tokens.bin").unlink()
    proc = charrnn("train", "--resume", run, "--steps", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (run / "tokens.bin").stat().st_size == len(SONNET * 4)  # one byte per id, and no id for the mark
