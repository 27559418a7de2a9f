"""Text in, token ids out: the vocabulary, streaming file encoding, the train/validation split and
the batcher that feeds truncated-BPTT windows to the trainer.

Two encodings exist. ``"utf-8"``: a token is one Unicode code point (a character is never split
into bytes). ``"bytes"``: a token is one byte value, for binary data or text of unknown encoding.

A corpus is encoded once into a raw little-endian array of ids on disk and memory-mapped from then
on, so a text much larger than RAM is never held in memory as a Python string; the batcher reads
only the (B, T) window it is about to hand out.

A UTF-8 byte order mark (U+FEFF) at the very start of a file is dropped, as every reader of a file
drops it (io/readers.py): it says how the file is encoded, it is not text. Anywhere else U+FEFF is an
ordinary character. The content hash of a text (`EncodedText.text_sha256`) stays the hash of the
file's bytes as they are, mark included, so a run resumes on the very file it was trained on. In
bytes mode nothing is dropped: bytes are bytes.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from ..settings import ENCODINGS
from .corpus import SEPARATOR, Corpus
from ..errors import CheckpointError, ConfigError, DataError, show_path
from ..io.readers import BOM, check_path, open_regular, read_file, reader
from ..io.writer import replace_durably

__all__ = [
    "ENCODINGS",
    "MIN_SPLIT_TOKENS",
    "Batcher",
    "EncodedText",
    "Vocab",
    "encode_file",
    "encode_text",
    "fit_batch_shape",
    "load_encoded",
    "min_tokens_for",
    "read_text",
    "split_train_val",
]

# One input and the target it predicts: the least text that yields a single training example.
MIN_SPLIT_TOKENS = 2
# Large enough that the per-call overhead of a chunk is negligible, small enough that the
# temporaries of one chunk (its str and UTF-32 copy, about 9x the bytes) stay modest.
DEFAULT_CHUNK_BYTES = 1 << 22
# Unknown symbols named in an error message; the rest are only counted.
_MAX_NAMED = 10
_MAX_CODE_POINT = 0x10FFFF

Unknown = Literal["error", "skip"]


def _canonical_encoding(encoding: str) -> str:
    if isinstance(encoding, str):
        e = encoding.strip().lower()
        if e in ("utf-8", "utf8"):
            return "utf-8"
        if e == "bytes":
            return "bytes"
    raise ConfigError(f"unknown encoding {encoding!r}: use 'utf-8' (one token per character) or 'bytes'")


def _check_unknown_mode(unknown: str) -> None:
    if unknown not in ("error", "skip"):
        raise ConfigError(f"unknown={unknown!r}: use 'error' or 'skip'")


def _describe_symbol(value: int, encoding: str) -> str:
    if encoding == "bytes":
        return f"0x{value:02X}"
    return f"{chr(value)!r} (U+{value:04X})"


def name_symbols(values: Sequence[int], encoding: str) -> str:
    """The first few symbols (code points or byte values) by name, and how many more there are."""
    named = ", ".join(_describe_symbol(int(v), encoding) for v in list(values)[:_MAX_NAMED])
    extra = len(values) - _MAX_NAMED
    return named + (f", and {extra} more" if extra > 0 else "")


def _unknown_message(counts: dict[int, int], encoding: str, where: str = "") -> str:
    """One line naming the first few unknown symbols (in order of first appearance) and counting all."""
    kind = "bytes" if encoding == "bytes" else "characters"
    named = name_symbols(list(counts), encoding)
    total = sum(counts.values())
    prefix = f"{where}: " if where else ""
    return (
        f"{prefix}{kind} not in the model's vocabulary: {named} "
        f"({len(counts)} distinct, {total} occurrence{'s' if total != 1 else ''})"
    )


def _utf8_error(err: UnicodeDecodeError, offset: int, where: str) -> DataError:
    bad = err.object[err.start : err.start + 1]
    byte = f" (byte 0x{bad[0]:02X})" if bad else ""
    return DataError(
        f"{where} is not valid UTF-8: the first bad byte is at byte offset {offset}{byte}; "
        f"for binary data or another text encoding use --encoding bytes"
    )


def _code_points(text: str, where: str = "text") -> np.ndarray:
    """Shape (len(text),) uint32: one code point per character, without a Python-level loop."""
    try:
        raw = text.encode("utf-32-le")
    except UnicodeEncodeError as e:
        # Only a lone surrogate gets here; it cannot come from decoding valid UTF-8.
        raise DataError(
            f"{where} holds a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}, "
            "which is not valid Unicode"
        ) from None
    return np.frombuffer(raw, dtype="<u4")


def _strict_utf8(data: bytes, where: str = "text") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(e, e.start, where) from None


class Vocab:
    """The model's symbols; a symbol's id is its index in the sorted symbol list.

    ``symbols`` is a strictly increasing list of single characters (``encoding="utf-8"``, sorted by
    code point) or of byte values 0..255 (``encoding="bytes"``). Building it from a text (the
    distinct symbols seen there) is `encode_text` / `encode_file`'s job.
    """

    __slots__ = ("_encoding", "_values", "_lut", "_dtype")

    def __init__(self, symbols: Sequence[str] | Sequence[int], encoding: str = "utf-8") -> None:
        self._encoding = _canonical_encoding(encoding)
        values = self._symbol_values(symbols, self._encoding)
        self._values = values
        self._values.setflags(write=False)
        self._lut: np.ndarray | None = None
        n = len(values)
        self._dtype = np.dtype("<u1" if n <= 1 << 8 else "<u2" if n <= 1 << 16 else "<u4")

    @staticmethod
    def _symbol_values(symbols: Sequence[str] | Sequence[int], encoding: str) -> np.ndarray:
        if isinstance(symbols, (str, bytes)):
            # A string is iterable too, but accepting one would hide a caller passing the raw text.
            raise TypeError("symbols must be a list of single characters or byte values, not a string")
        symbols = list(symbols)
        if not symbols:
            raise ValueError("a vocabulary needs at least one symbol")
        values: list[int] = []
        for s in symbols:
            if encoding == "bytes":
                if type(s) is not int and not isinstance(s, np.integer):
                    raise TypeError(f"bytes-mode symbols must be ints 0..255, got {s!r}")
                v = int(s)
                if not 0 <= v <= 255:
                    raise ValueError(f"bytes-mode symbol {v} is outside 0..255")
            else:
                if not isinstance(s, str) or len(s) != 1:
                    raise TypeError(f"utf-8 symbols must be single characters, got {s!r}")
                v = ord(s)
                if 0xD800 <= v <= 0xDFFF:
                    raise ValueError(f"U+{v:04X} is a surrogate, not a character")
            values.append(v)
        arr = np.array(values, dtype=np.uint32)
        if arr.size > 1 and not np.all(arr[1:] > arr[:-1]):
            raise ValueError("symbols must be distinct and sorted by code point / byte value")
        return arr

    # -- properties ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return int(self._values.size)

    def __len__(self) -> int:
        return self.size

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def id_dtype(self) -> np.dtype:
        """The narrowest unsigned dtype holding every id: uint8 up to 256 symbols, uint16 up to 65536, else uint32."""
        return self._dtype

    @property
    def symbols(self) -> list[str] | list[int]:
        if self._encoding == "bytes":
            return [int(v) for v in self._values]
        return [chr(v) for v in self._values]

    @property
    def code_points(self) -> np.ndarray:
        """Shape (size,) uint32, read-only: the code point / byte value of each id."""
        return self._values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._encoding == other._encoding and np.array_equal(self._values, other._values)

    def __hash__(self) -> int:
        return hash((self._encoding, self._values.tobytes()))

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, encoding={self._encoding!r})"

    # -- encoding --------------------------------------------------------------------------------

    def _table(self) -> np.ndarray:
        # A dense value -> id table makes mapping one gather instead of a binary search per symbol.
        # Its last slot (-1) absorbs every value above the largest symbol, after clipping.
        if self._lut is None:
            # Bytes mode covers all 256 values so a uint8 array indexes it directly.
            size = 256 if self._encoding == "bytes" else int(self._values[-1]) + 2
            lut = np.full(size, -1, dtype=np.int32)
            lut[self._values] = np.arange(self.size, dtype=np.int32)
            self._lut = lut
        return self._lut

    def map_values(self, values: np.ndarray) -> np.ndarray:
        """Code points / byte values, shape (N,) -> ids, shape (N,) int32, with -1 where unknown."""
        lut = self._table()
        if self._encoding == "bytes":
            return lut[values]
        return lut[np.minimum(values, np.uint32(lut.size - 1))]

    def _values_of(self, text: str | bytes | bytearray | memoryview) -> np.ndarray:
        if self._encoding == "bytes":
            if isinstance(text, str):
                # Convenience for in-memory text: the bytes a UTF-8 file of it would hold.
                text = text.encode("utf-8", errors="surrogatepass")
            if not isinstance(text, (bytes, bytearray, memoryview)):
                raise TypeError(f"expected bytes or str, got {type(text).__name__}")
            return np.frombuffer(bytes(text), dtype=np.uint8)
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = _strict_utf8(bytes(text))
        if not isinstance(text, str):
            raise TypeError(f"expected str or bytes, got {type(text).__name__}")
        return _code_points(text)

    def encode_counting(
        self, text: str | bytes, *, unknown: Unknown = "error"
    ) -> tuple[np.ndarray, int, list[str] | list[int]]:
        """Text -> (ids shape (N,) of `id_dtype`, number of unknown occurrences dropped, the distinct
        unknown symbols in order of first appearance).

        ``unknown="error"`` raises DataError naming the unknown symbols; ``"skip"`` drops them.
        In bytes mode a str is taken as its UTF-8 bytes; in utf-8 mode bytes are decoded strictly.
        """
        _check_unknown_mode(unknown)
        ids, counts = self._encode_values(self._values_of(text))
        if counts and unknown == "error":
            raise DataError(_unknown_message(counts, self._encoding))
        return ids, sum(counts.values()), self._as_symbols(counts)

    def encode(self, text: str | bytes, *, unknown: Unknown = "error") -> np.ndarray:
        """Text -> ids, shape (N,) of `id_dtype`. See `encode_counting` for ``unknown``."""
        return self.encode_counting(text, unknown=unknown)[0]

    def _encode_values(self, values: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        mapped = self.map_values(values)
        bad = mapped < 0
        if not bad.any():
            return mapped.astype(self._dtype), {}
        return mapped[~bad].astype(self._dtype), _first_seen_counts(values[bad])

    def _as_symbols(self, counts: dict[int, int]) -> list[str] | list[int]:
        if self._encoding == "bytes":
            return list(counts)
        return [chr(v) for v in counts]

    # -- decoding --------------------------------------------------------------------------------

    def _values_for(self, ids: Any) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.size == 0:
            return np.zeros(0, dtype=np.uint32)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
        arr = arr.reshape(-1)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self.size:
            bad = lo if lo < 0 else hi
            raise DataError(f"token id {bad} is outside the vocabulary of {self.size} symbols")
        return self._values[arr]

    def decode(self, ids: Any) -> str:
        """Ids (any shape, flattened) -> text. Bytes mode decodes UTF-8 with errors="replace", for display."""
        values = self._values_for(ids)
        if self._encoding == "bytes":
            return values.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        return values.astype("<u4").tobytes().decode("utf-32-le")

    def decode_bytes(self, ids: Any) -> bytes:
        """Ids -> the exact bytes (bytes mode) or the text's UTF-8 bytes (utf-8 mode)."""
        values = self._values_for(ids)
        if self._encoding == "bytes":
            return values.astype(np.uint8).tobytes()
        return values.astype("<u4").tobytes().decode("utf-32-le").encode("utf-8")

    def union(self, other: "Vocab") -> "Vocab":
        """The vocabulary of both symbol sets (same encoding), sorted as every vocabulary is."""
        if other.encoding != self._encoding:
            raise ConfigError(f"cannot join a {other.encoding} vocabulary to a {self._encoding} one")
        values = np.union1d(self._values, other._values)
        return Vocab([int(v) for v in values] if self._encoding == "bytes" else [chr(v) for v in values],
                     self._encoding)

    def missing_from(self, other: "Vocab") -> np.ndarray:
        """The symbols (code points or byte values) of this vocabulary that `other` lacks."""
        return np.setdiff1d(self._values, other._values)

    def positions_in(self, other: "Vocab") -> np.ndarray:
        """For each of this vocabulary's symbols, its id in `other` (which must hold them all)."""
        at = np.searchsorted(other._values, self._values)
        if at.size and (at.max() >= other.size or not np.array_equal(other._values[at], self._values)):
            raise ValueError("the other vocabulary does not hold every symbol of this one")
        return at

    # -- serialisation ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """``{"encoding": "utf-8", "symbols": ["\\n", " ", "a", ...]}`` or, in bytes mode, symbols as ints."""
        return {"encoding": self._encoding, "symbols": self.symbols}

    @classmethod
    def from_json(cls, d: Any) -> Vocab:
        """Inverse of `to_json`. The dict comes from a checkpoint, an untrusted file, so every part is
        checked and any problem raises CheckpointError."""
        if not isinstance(d, dict):
            raise CheckpointError(f"vocabulary: expected an object, got {type(d).__name__}")
        if set(d) != {"encoding", "symbols"}:
            raise CheckpointError(f"vocabulary: expected keys 'encoding' and 'symbols', got {sorted(map(str, d))}")
        encoding, symbols = d["encoding"], d["symbols"]
        if encoding not in ENCODINGS:
            raise CheckpointError(f"vocabulary: unknown encoding {encoding!r}")
        if not isinstance(symbols, list) or not symbols:
            raise CheckpointError("vocabulary: 'symbols' must be a non-empty list")
        if encoding == "bytes":
            # bool is an int subclass; a JSON `true` among byte values is corruption, not 1.
            if not all(type(s) is int for s in symbols):
                raise CheckpointError("vocabulary: bytes-mode symbols must all be integers")
        elif not all(type(s) is str and len(s) == 1 for s in symbols):
            raise CheckpointError("vocabulary: utf-8 symbols must all be single characters")
        try:
            return cls(symbols, encoding)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"vocabulary: {e}") from None


def _first_seen_counts(values: np.ndarray) -> dict[int, int]:
    """Distinct values -> occurrence count, in order of first appearance."""
    uniq, first, counts = np.unique(values, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return {int(uniq[i]): int(counts[i]) for i in order}


def _merge_counts(into: dict[int, int], new: dict[int, int]) -> None:
    for k, v in new.items():
        into[k] = into.get(k, 0) + v


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def _open_for_reading(path: Any) -> Any:
    """Open a text (or ids) file in binary mode: a regular file only (`open_regular`: a FIFO would be
    consumed by the first of the passes a text needs, or hang with no writer, and a device may
    never end), and not an empty one. Every problem is a one-line DataError."""
    f = open_regular(path)
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError as e:
        f.close()
        raise DataError(f"cannot read {show_path(path)}: {e.strerror or e}") from None
    if size == 0:
        f.close()
        raise DataError(f"{show_path(path)} is empty")
    return f


def _chunks(f: Any, chunk_bytes: int, where: str) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, bytes) pieces of an open binary file."""
    offset = 0
    while True:
        try:
            b = f.read(chunk_bytes)
        except OSError as e:
            raise DataError(f"cannot read {where}: {e.strerror or e}") from None
        if not b:
            return
        yield offset, b
        offset += len(b)


def _decoded_values(path: Any, encoding: str, chunk_bytes: int, digest: Any = None) -> Iterator[np.ndarray]:
    """Stream a file (or a corpus of files, joined by newlines: data/corpus.py) as arrays of code
    points (utf-8) or byte values (bytes), chunk by chunk.

    UTF-8 is decoded incrementally, so a character split across a chunk boundary is reassembled;
    invalid UTF-8 raises DataError with the absolute byte offset of the first bad byte. `digest`
    (a hashlib object), when given, is fed every byte read (and the separators of a corpus).
    """
    if isinstance(path, Corpus):
        for i, f in enumerate(path.files):
            if i:
                if digest is not None:
                    digest.update(SEPARATOR)
                yield np.frombuffer(SEPARATOR, dtype=np.uint8).astype("<u4" if encoding != "bytes" else np.uint8)
            yield from _decoded_values(f, encoding, chunk_bytes, digest)
        return
    where = show_path(path)
    with _open_for_reading(path) as f:
        if encoding == "bytes":
            for _, b in _chunks(f, chunk_bytes, where):
                if digest is not None:
                    digest.update(b)
                yield np.frombuffer(b, dtype=np.uint8)
            return
        dec = codecs.getincrementaldecoder("utf-8")(errors="strict")
        end = 0
        first = True  # the next character decoded is the file's first: a byte order mark there is dropped
        for offset, b in _chunks(f, chunk_bytes, where):
            if digest is not None:
                digest.update(b)
            # Bytes held back from the previous chunk (an unfinished character) lead this decode,
            # so the error position is relative to where they started.
            pending = len(dec.getstate()[0])
            try:
                s = dec.decode(b)
            except UnicodeDecodeError as e:
                raise _utf8_error(e, offset - pending + e.start, where) from None
            end = offset + len(b)
            if s and first:
                first = False
                s = s[1:] if s.startswith(BOM) else s
            if s:
                yield _code_points(s, where)
        pending = len(dec.getstate()[0])
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError as e:
            raise _utf8_error(e, end - pending + e.start, where) from None


def _check_chunk_bytes(chunk_bytes: int) -> None:
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ConfigError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")


@reader("training text", "text")
def collect_vocab(path: Any, encoding: str = "utf-8") -> Vocab:
    """The distinct symbols of a text file (one streaming pass), as a vocabulary."""
    return _collect_vocab(path, _canonical_encoding(encoding), DEFAULT_CHUNK_BYTES)


def _collect_vocab(path: Any, encoding: str, chunk_bytes: int) -> Vocab:
    # A flag per value seen; grown on demand so ASCII text never pays for the whole Unicode range.
    seen = np.zeros(256, dtype=bool)
    for values in _decoded_values(path, encoding, chunk_bytes):
        if values.size == 0:
            continue
        top = int(values.max())
        if top >= seen.size:
            grown = np.zeros(min(1 << top.bit_length(), _MAX_CODE_POINT + 1), dtype=bool)
            grown[: seen.size] = seen
            seen = grown
        seen[values] = True
    present = np.flatnonzero(seen)
    if present.size == 0:
        raise DataError(f"{show_path(path)} holds no characters")
    if encoding == "bytes":
        return Vocab([int(v) for v in present], "bytes")
    return Vocab([chr(v) for v in present], "utf-8")


@dataclass(eq=False)
class EncodedText:
    """A text's token ids on disk, memory-mapped read-only.

    ``ids``: np.memmap, shape (N,), dtype ``vocab.id_dtype`` (little-endian). ``n_unknown`` and
    ``unknown_symbols`` report what ``unknown="skip"`` dropped while encoding (0 and [] otherwise,
    and for a re-opened file).
    """

    vocab: Vocab
    path: Path
    ids: np.memmap
    n_unknown: int = 0
    unknown_symbols: list[Any] = field(default_factory=list)
    # SHA-256 (hex) of the text file's bytes and of the ids file, as `encode_file` wrote them
    # (None for a re-opened file: see `ids_digest`)
    text_sha256: str | None = None
    ids_sha256: str | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def encode_file(
    path: Any,
    out_path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    vocab: Vocab | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    unknown: Unknown = "error",
) -> EncodedText:
    """Encode a text file (or a Corpus of files, data/corpus.py) to token ids in `out_path` (a raw
    little-endian array) and memory-map it.

    `encoding` defaults to "utf-8", or to the vocabulary's encoding when `vocab` is given.
    Without `vocab`, a first pass collects the symbols seen (sorted) and a second writes the ids.
    With `vocab` (resuming, evaluating) one pass maps through it; symbols outside it raise DataError
    naming them, or with ``unknown="skip"`` are dropped and reported on the result. The file is read
    `chunk_bytes` at a time and the ids are written to a temporary file, fsynced and renamed, so a
    crash never leaves a truncated `out_path`. The result's ``ids`` has shape (N,).
    """
    # "" is not "."
    src = path if isinstance(path, Corpus) else Path(check_path(path, DataError, "text file"))
    dst = Path(out_path)
    _check_chunk_bytes(chunk_bytes)
    _check_unknown_mode(unknown)
    if vocab is None:
        encoding = _canonical_encoding(encoding or "utf-8")
    else:
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab must be a Vocab, got {type(vocab).__name__}")
        # The vocabulary fixes the encoding; a conflicting explicit one is the caller's mistake.
        if encoding is not None and _canonical_encoding(encoding) != vocab.encoding:
            raise ConfigError(f"encoding {encoding!r} does not match the model's vocabulary ({vocab.encoding!r})")
        encoding = vocab.encoding
    where = src.describe() if isinstance(src, Corpus) else show_path(src)
    if any(_same_file(f, dst) for f in (src.files if isinstance(src, Corpus) else (src,))):
        raise DataError(f"the encoded output {show_path(dst)} would overwrite the text file itself")

    fixed_vocab = vocab
    if vocab is None:
        vocab = _collect_vocab(src, encoding, chunk_bytes)
    dtype = vocab.id_dtype

    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    except OSError as e:
        raise DataError(f"cannot write {show_path(dst)}: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    unknown_counts: dict[int, int] = {}
    n_written = 0
    text_digest, ids_digest_ = hashlib.sha256(), hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for values in _decoded_values(src, encoding, chunk_bytes, text_digest):
                ids, counts = vocab._encode_values(values)
                if counts:
                    if fixed_vocab is None:
                        # Pass 1 saw every symbol; a new one means the file changed under us.
                        raise DataError(f"{where} changed while it was being encoded; try again")
                    _merge_counts(unknown_counts, counts)
                    if unknown == "error":
                        continue  # keep scanning only to name every unknown symbol at once
                if not unknown_counts or unknown == "skip":
                    data = ids.astype(dtype, copy=False).tobytes()
                    ids_digest_.update(data)
                    out.write(data)
                    n_written += int(ids.size)
            if unknown_counts and unknown == "error":
                raise DataError(_unknown_message(unknown_counts, encoding, where))
            if n_written == 0:
                raise DataError(f"{where}: none of its characters are in the model's vocabulary")
            out.flush()
            os.fsync(out.fileno())
        replace_durably(tmp, dst)
    except OSError as e:
        _discard(tmp)
        raise DataError(f"cannot write {show_path(dst)}: {e.strerror or e}") from None
    except BaseException:
        _discard(tmp)
        raise
    ids_map = np.memmap(dst, dtype=dtype, mode="r", shape=(n_written,))
    unknown_symbols = [chr(v) for v in unknown_counts] if encoding == "utf-8" else list(unknown_counts)
    return EncodedText(vocab, dst, ids_map, sum(unknown_counts.values()), unknown_symbols,
                       text_digest.hexdigest(), ids_digest_.hexdigest())


def _discard(p: Path) -> None:
    """Remove a temporary file after a failure, never raising over the failure itself."""
    try:
        p.unlink(missing_ok=True)
    except OSError:
        pass


def load_encoded(path: str | os.PathLike[str], vocab: Vocab, *, check: bool = True) -> EncodedText:
    """Re-open ids written by `encode_file` under the same `vocab`. With `check`, every id is
    verified to be inside the vocabulary (one chunked pass), so a stale or foreign file is caught."""
    p = Path(check_path(path, DataError, "ids file"))
    where = show_path(p)
    dtype = vocab.id_dtype
    f = _open_for_reading(p)  # for its clean errors on missing/directory/empty files
    with f:
        size = os.fstat(f.fileno()).st_size
    if size % dtype.itemsize:
        raise DataError(
            f"{where} is not an encoded text for this vocabulary "
            f"(size {size} is not a multiple of {dtype.itemsize})"
        )
    try:
        ids = np.memmap(p, dtype=dtype, mode="r", shape=(size // dtype.itemsize,))
    except OSError as e:
        raise DataError(f"cannot read {where}: {e.strerror or e}") from None
    if check:
        step = 1 << 22
        for start in range(0, ids.shape[0], step):
            top = int(ids[start : start + step].max())
            if top >= vocab.size:
                raise DataError(
                    f"{where} holds token id {top}, outside this vocabulary of {vocab.size} symbols: "
                    "it was encoded for another vocabulary"
                )
    return EncodedText(vocab, p, ids)


def ids_digest(ids: np.ndarray) -> tuple[str, int]:
    """(SHA-256 hex of the ids' bytes as stored, the largest id) in one chunked pass, so that a
    memory map is never read whole. An empty array's largest id is -1."""
    digest, top, step = hashlib.sha256(), -1, 1 << 22
    for start in range(0, len(ids), step):
        chunk = np.ascontiguousarray(ids[start : start + step])
        digest.update(chunk.tobytes())
        top = max(top, int(chunk.max()))
    return digest.hexdigest(), top


def encode_text(
    text: str | bytes, encoding: str = "utf-8", vocab: Vocab | None = None, *, unknown: Unknown = "error"
) -> tuple[Vocab, np.ndarray]:
    """In-memory text -> (vocab, ids shape (N,) of ``vocab.id_dtype``). For small texts; use
    `encode_file` for corpora. Without `vocab` one is built from the symbols seen in `text`."""
    if vocab is not None:
        return vocab, vocab.encode(text, unknown=unknown)
    encoding = _canonical_encoding(encoding)
    if encoding == "bytes":
        data = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else bytes(text)
        values = np.frombuffer(data, dtype=np.uint8)
    else:
        s = _strict_utf8(bytes(text)) if isinstance(text, (bytes, bytearray, memoryview)) else text
        if not isinstance(s, str):
            raise TypeError(f"expected str or bytes, got {type(text).__name__}")
        values = _code_points(s)
    if values.size == 0:
        raise DataError("the text is empty")
    present = np.unique(values)
    if encoding == "bytes":
        vocab = Vocab([int(v) for v in present], "bytes")
    else:
        vocab = Vocab([chr(v) for v in present], "utf-8")
    return vocab, vocab.map_values(values).astype(vocab.id_dtype)


@reader("text", "text")
def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str | bytes:
    """Read a whole (small) file for priming or evaluation: str in utf-8 mode (a leading byte order
    mark dropped), bytes in bytes mode. Missing, directory, special (FIFO, device), empty, unreadable
    or (utf-8) invalid files raise DataError."""
    encoding = _canonical_encoding(encoding)
    data = read_file(path)
    if encoding == "bytes":
        return data
    text = _strict_utf8(data, show_path(path))
    return text[1:] if text.startswith(BOM) else text


# ------------------------------------------------------------------------------------------------
# Splitting and batching
# ------------------------------------------------------------------------------------------------


def split_train_val(n_tokens: int, val_frac: float) -> tuple[range, range | None]:
    """Token index ranges (train, validation). Validation is the last ``floor(n_tokens * val_frac)``
    tokens, one contiguous block after the training part (as nanoGPT does), so the two never
    overlap; ``val_frac=0`` gives no validation (None). Each part needs MIN_SPLIT_TOKENS tokens."""
    if isinstance(val_frac, bool) or not isinstance(val_frac, (int, float)) or not math.isfinite(val_frac):
        raise ConfigError(f"val_frac must be a number in [0, 0.5], got {val_frac!r}")
    if not 0 <= val_frac <= 0.5:
        raise ConfigError(f"val_frac must be in [0, 0.5], got {val_frac}")
    n = int(n_tokens)
    n_val = int(n * val_frac) if val_frac > 0 else 0
    n_train = n - n_val
    if val_frac > 0 and n_val < MIN_SPLIT_TOKENS:
        raise ConfigError(
            f"val_frac={val_frac} of a {n}-token text leaves {n_val} token(s) for validation; "
            f"at least {MIN_SPLIT_TOKENS} are needed (use a longer text, a larger val_frac or val_frac=0)"
        )
    if n_train < MIN_SPLIT_TOKENS:
        raise ConfigError(
            f"a {n}-token text leaves {n_train} token(s) for training; at least {MIN_SPLIT_TOKENS} are needed"
        )
    return range(0, n_train), (range(n_train, n) if n_val else None)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def min_tokens_for(batch_size: int) -> int:
    """The shortest text `Batcher` accepts for `batch_size` streams: each stream needs one input
    character and the character after it, and consecutive streams share that boundary."""
    return batch_size + 1


def fit_batch_shape(n_tokens: int, batch_size: int, seq_len: int) -> tuple[int, int, str | None]:
    """Shrink (batch_size, seq_len) so a short text fills at least one full window per stream.

    Returns (B, T, message) where message says what changed, or None when nothing did. The batch
    shrinks first (a short text is better learned as a few long sequences than many tiny ones);
    seq_len shrinks only once a single stream cannot hold it. DataError below 2 tokens.
    """
    B0 = _positive_int("batch_size", batch_size)
    T0 = _positive_int("seq_len", seq_len)
    n = int(n_tokens)
    if n < MIN_SPLIT_TOKENS:
        raise DataError(f"the text has {n} token(s); training needs at least {MIN_SPLIT_TOKENS}")
    usable = n - 1  # the last token is only ever a target
    B = max(1, min(B0, usable // T0))
    T = min(T0, usable // B)
    if (B, T) == (B0, T0):
        return B, T, None
    changes = []
    if B != B0:
        changes.append(f"batch_size {B0} -> {B}")
    if T != T0:
        changes.append(f"seq_len {T0} -> {T}")
    return B, T, f"the training text has only {n} tokens, so {' and '.join(changes)}"


class Batcher:
    """B parallel contiguous streams over a token array, cut into windows for truncated BPTT.

    With n tokens, each stream s covers inputs ``ids[s*L : (s+1)*L]`` with ``L = (n-1)//B`` and
    targets one token later. Window k of an epoch is columns ``[k*T, min((k+1)*T, L))`` of every
    stream, so an epoch has ``ceil(L/T)`` windows and the last one may be shorter than T: every
    one of the first B*L tokens is an input exactly once per epoch (the remaining ``n - B*L`` tokens,
    at most B, serve only as targets or go unused). A seq_len longer than L is allowed: each window is
    then a whole stream. Stream s's hidden state carries from window k to k+1, which is why the
    trainer must zero it only when `next_batch` reports ``reset``.

    `ids` may be a memmap (or a slice of one): only the window being returned is read.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int) -> None:
        if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise TypeError("ids must be a 1-D integer array")
        B = _positive_int("batch_size", batch_size)
        T = _positive_int("seq_len", seq_len)
        n = int(ids.shape[0])
        if n < min_tokens_for(B):
            raise ConfigError(
                f"the training text has {n} tokens, too short for batch_size {B}: "
                f"it needs at least {min_tokens_for(B)} (use a smaller batch_size)"
            )
        self.batch_size, self.seq_len, self.n_tokens = B, T, n
        self.stream_len = L = (n - 1) // B
        # Reshapes of contiguous slices are views: nothing is read from disk here.
        self._inputs = ids[: B * L].reshape(B, L)
        self._targets = ids[1 : B * L + 1].reshape(B, L)
        self.windows_per_epoch = -(-L // T)
        self.epoch = 0  # epochs completed
        self.window = 0  # index of the next window within the current epoch

    @property
    def tokens_per_epoch(self) -> int:
        return self.batch_size * self.stream_len

    @property
    def progress(self) -> float:
        """Epochs completed, fractional: epoch + window / windows_per_epoch."""
        return self.epoch + self.window / self.windows_per_epoch

    def window_bounds(self, k: int) -> tuple[int, int]:
        """Column range [start, stop) of window k within each stream."""
        start = k * self.seq_len
        return start, min(start + self.seq_len, self.stream_len)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(inputs, targets, reset): int64 arrays of shape (B, T') with T' = T except possibly for
        an epoch's last window; targets[b, t] is the token after inputs[b, t]. ``reset`` is True on
        the first window of every epoch, when the trainer must zero the hidden state."""
        reset = self.window == 0
        a, b = self.window_bounds(self.window)
        inputs = np.array(self._inputs[:, a:b], dtype=np.int64, order="C")
        targets = np.array(self._targets[:, a:b], dtype=np.int64, order="C")
        self.window += 1
        if self.window == self.windows_per_epoch:
            self.window = 0
            self.epoch += 1
        return inputs, targets, reset

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
        """Endless: successive `next_batch` results."""
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, int]:
        """JSON-able position, plus the shape it is valid for."""
        return {
            "epoch": self.epoch,
            "window": self.window,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "n_tokens": self.n_tokens,
        }

    def load_state_dict(self, d: Any) -> None:
        """Continue exactly where `state_dict` was taken. The state comes from a checkpoint, so any
        malformed or mismatching state raises CheckpointError and leaves this batcher unchanged.
        After resuming mid-epoch the next window's ``reset`` is False: a trainer that did not save
        its hidden state must zero it itself."""
        keys = ("epoch", "window", "batch_size", "seq_len", "n_tokens")
        if not isinstance(d, dict) or set(d) != set(keys):
            raise CheckpointError(f"batcher state must be an object with keys {', '.join(keys)}")
        for k in keys:
            if type(d[k]) is not int or d[k] < 0:
                raise CheckpointError(f"batcher state: {k} must be a non-negative integer, got {d[k]!r}")
        saved = (d["batch_size"], d["seq_len"], d["n_tokens"])
        here = (self.batch_size, self.seq_len, self.n_tokens)
        if saved != here:
            raise CheckpointError(
                "batcher state was saved for batch_size={}, seq_len={} over {} training tokens; "
                "this run has batch_size={}, seq_len={} over {}".format(*saved, *here)
            )
        if d["window"] >= self.windows_per_epoch:
            raise CheckpointError(
                f"batcher state: window {d['window']} is past the {self.windows_per_epoch} windows of an epoch"
            )
        self.epoch, self.window = d["epoch"], d["window"]
