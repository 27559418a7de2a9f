"""Labelled data for the task models: reading it (every bad line named by file and line), the
character and label sets, the stratified validation split and length-bucketed batches.

Formats (UTF-8, a byte order mark at the start dropped):
    classify  TSV, one example per line: text<TAB>label. The text is everything before the last
              tab (it may hold tabs), the label what follows it; lines that are entirely empty
              are skipped (a file's last newline, spacing between blocks).
    tag       JSON Lines, one object per line: {"text": "...", "tags": ["...", ...]}, one tag
              per character (code point) of the text; empty lines are skipped.

A label (or tag) is printed as one field of a line, so it may not be empty or hold a control
character (a tab or a newline would break the TSV and the reports); and two labels that print alike
(equal once compatibility forms are folded, NFKC, and invisible format characters removed) would be
two classes no one can tell apart, so they are refused by name.

Characters: id 0 stands for any character not seen in training; the trainer keeps its input
weights at zero, so such a character reaches the network as no input at all.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CheckpointError, DataError, show_path
from ..io.readers import MAX_DATA_BYTES, open_regular, parse_json, read_text, reader

UNKNOWN = 0  # the id of a character unseen in training


@dataclass
class Example:
    text: str
    label: Any  # classify: the label (str); tag: the list of tags, one per character
    line: int  # 1-based line in its file


def _lines(path: str | os.PathLike[str]):
    # a regular file only (a FIFO is refused, never waited on), strict UTF-8, its byte order mark dropped
    text = read_text(path, DataError, "data file", MAX_DATA_BYTES)
    # split on \n only: a text may legitimately hold other line separators (U+2028, \r, ...)
    for n, line in enumerate(text.split("\n"), start=1):
        yield n, line[:-1] if line.endswith("\r") else line


def label_problem(name: str) -> str | None:
    """Why `name` cannot be a label or tag, or None: empty, printing as nothing, or holding a control
    character, a line separator or a lone surrogate (each would break the one line it is printed on)."""
    if not name.strip():
        return "is empty"
    for c in name:
        if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp"):
            return f"holds {c!r}, which a label cannot hold"
    if not label_key(name).strip():
        return "holds only invisible characters"
    return None


def label_key(name: str) -> str:
    """What a label looks like printed: its NFKC form without invisible format characters (zero
    widths, direction marks, soft hyphens); two labels of one key print alike."""
    return "".join(c for c in unicodedata.normalize("NFKC", name) if unicodedata.category(c) != "Cf")


def _check_labels(first_line: dict[str, int], where: str, what: str) -> None:
    """Each distinct label (with the line it first appears on): usable, and none printing as another."""
    seen: dict[str, str] = {}
    for name, n in first_line.items():
        problem = label_problem(name)
        if problem is not None:
            raise DataError(f"{where}:{n}: {what} {name!r} {problem}")
        other = seen.setdefault(label_key(name), name)
        if other != name:
            raise DataError(f"{where}:{n}: {what}s {other!r} (line {first_line[other]}) and {name!r} print alike: "
                            "they differ only by invisible or compatibility characters; use one spelling")


@reader("classify data", "tsv")
def read_classify(path: str | os.PathLike[str]) -> list[Example]:
    """text<TAB>label lines; a line without a tab, with an empty text or a bad label is a DataError."""
    where = show_path(path)
    out: list[Example] = []
    first_line: dict[str, int] = {}
    for n, line in _lines(path):
        if not line:
            continue
        if "\t" not in line:
            raise DataError(f"{where}:{n}: no tab: each line must be text<TAB>label")
        text, label = line.rsplit("\t", 1)
        if not text:
            raise DataError(f"{where}:{n}: empty text before the tab")
        if not label.strip():
            raise DataError(f"{where}:{n}: empty label after the tab")
        label = label.strip()
        first_line.setdefault(label, n)
        out.append(Example(text, label, n))
    if not out:
        raise DataError(f"{where}: no examples (expected lines of text<TAB>label)")
    _check_labels(first_line, where, "label")
    return out


@reader("tag data", "json lines")
def read_tag(path: str | os.PathLike[str]) -> list[Example]:
    """{"text": ..., "tags": [...]} lines; malformed JSON, a missing key, an empty text, a bad tag or
    a tag count other than the text's length is a DataError naming the line."""
    where = show_path(path)
    out: list[Example] = []
    first_line: dict[str, int] = {}
    for n, line in _lines(path):
        if not line.strip():
            continue
        obj = parse_json(line, f"{where}:{n}", DataError)
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not isinstance(obj.get("tags"), list):
            raise DataError(f'{where}:{n}: expected {{"text": "...", "tags": [...]}}')
        text, tags = obj["text"], obj["tags"]
        if not text:
            raise DataError(f"{where}:{n}: empty text")
        if not all(isinstance(t, str) and t for t in tags):
            raise DataError(f"{where}:{n}: every tag must be a non-empty string")
        if len(tags) != len(text):
            raise DataError(f"{where}:{n}: {len(tags)} tags for a text of {len(text)} characters")
        for t in tags:
            first_line.setdefault(t, n)
        out.append(Example(text, tags, n))
    if not out:
        raise DataError(f"{where}: no examples (expected JSON lines with text and tags)")
    _check_labels(first_line, where, "tag")
    return out


def read_examples(task: str, path: str | os.PathLike[str]) -> list[Example]:
    return read_classify(path) if task == "classify" else read_tag(path)


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a data file: a resumed run must train on the very same data."""
    h = hashlib.sha256()
    with open_regular(path, DataError, "data file") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Symbols:
    """The characters of the training texts; id 0 is any other character."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = list(chars)
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def of(cls, examples: list[Example]) -> "Symbols":
        return cls(sorted(set().union(*(set(e.text) for e in examples))))

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(c, UNKNOWN) for c in text), dtype=np.intp, count=len(text))

    def unknown_in(self, texts: list[str]) -> set[str]:
        return {c for t in texts for c in t if c not in self.index}

    @classmethod
    def from_json(cls, value: Any, source: str) -> "Symbols":
        if not isinstance(value, list) or not all(isinstance(c, str) and len(c) == 1 for c in value) \
                or len(set(value)) != len(value):
            raise CheckpointError(f"{source}: malformed character set")
        return cls(value)


class Labels:
    """The label (or tag) names, sorted; a label's id is its position."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}

    @property
    def size(self) -> int:
        return len(self.names)

    def encode(self, name: str, path: Any, line: int, what: str = "label") -> int:
        i = self.index.get(name)
        if i is None:
            shown = ", ".join(self.names[:10]) + (", ..." if self.size > 10 else "")
            raise DataError(f"{path}:{line}: {what} {name!r} was not seen in training (known: {shown})")
        return i

    @classmethod
    def from_json(cls, value: Any, source: str) -> "Labels":
        if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c for c in value) \
                or len(set(value)) != len(value) or any(label_problem(c) is not None for c in value):
            raise CheckpointError(f"{source}: malformed label set")
        return cls(value)


def label_set(task: str, examples: list[Example], path: Any) -> Labels:
    """The labels of the training examples; fewer than two is a DataError (nothing to learn)."""
    names = sorted({e.label for e in examples} if task == "classify" else {t for e in examples for t in e.label})
    if len(names) < 2:
        what = "class" if task == "classify" else "tag"
        raise DataError(f"{path}: only one {what} ({names[0]!r}) in the training data: there is nothing to "
                        f"learn; at least 2 are needed")
    return Labels(names)


@dataclass
class Encoded:
    """Examples as ids: inputs[i] (len_i,) and targets (n,) class ids or targets[i] (len_i,) tags."""

    inputs: list[np.ndarray]
    targets: Any
    lengths: np.ndarray
    lines: list[int]
    n_unknown: int = 0  # characters outside the training characters (read as no input)

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, idx: np.ndarray) -> "Encoded":
        t = self.targets[idx] if isinstance(self.targets, np.ndarray) else [self.targets[i] for i in idx]
        return Encoded([self.inputs[i] for i in idx], t, self.lengths[idx], [self.lines[i] for i in idx])

    def batch(self, idx: np.ndarray) -> tuple[list[np.ndarray], Any]:
        t = self.targets[idx] if isinstance(self.targets, np.ndarray) else [self.targets[i] for i in idx]
        return [self.inputs[i] for i in idx], t


def encode(task: str, examples: list[Example], symbols: Symbols, labels: Labels, path: Any) -> Encoded:
    inputs = [symbols.encode(e.text) for e in examples]
    if task == "classify":
        targets: Any = np.array([labels.encode(e.label, path, e.line) for e in examples], dtype=np.intp)
    else:
        targets = [np.array([labels.encode(t, path, e.line, "tag") for t in e.label], dtype=np.intp) for e in examples]
    n_unknown = int(sum(int((x == UNKNOWN).sum()) for x in inputs))
    return Encoded(inputs, targets, np.array([len(x) for x in inputs], dtype=np.intp), [e.line for e in examples],
                   n_unknown)


def stratified_split(task: str, examples: list[Example], frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a seeded random `frac` of the examples, of each class alike for
    classification (a class of one example stays in training). Sorted, so file order is kept."""
    rng = np.random.default_rng([seed, 5])
    n = len(examples)
    if task == "classify":
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            groups.setdefault(e.label, []).append(i)
        val = []
        for name in sorted(groups):
            members = np.array(groups[name])
            k = int(round(len(members) * frac)) if len(members) > 1 else 0
            val.extend(rng.permutation(members)[:k].tolist())
        val_idx = np.array(sorted(val), dtype=np.intp)
    else:
        val_idx = np.sort(rng.permutation(n)[: int(round(n * frac))]).astype(np.intp)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


# Batches are cut from runs of this many batches' worth of shuffled examples sorted by length:
# texts of similar length share a batch (little padding) while the order stays random.
BUCKET_BATCHES = 50


class BucketBatcher:
    """Epochs of batches of example indices. Epoch e's order is a function of (seed, e) alone,
    so the position (epoch, batch) is all a checkpoint needs to resume exactly.

    weights: per-example sampling weights (balanced sampling: 1 / the size of its class); each
    epoch then draws n examples with replacement in proportion to them."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, weights: np.ndarray | None = None) -> None:
        self.lengths = lengths
        self.n = len(lengths)
        self.batch_size = min(batch_size, self.n)
        self.seed = seed
        self.weights = None if weights is None else weights / weights.sum()
        self.epoch = 0
        self.position = 0
        self._order: list[np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, 4, epoch])
        if self.weights is not None:
            idx = rng.choice(self.n, size=self.n, p=self.weights)
        else:
            idx = rng.permutation(self.n)
        span = BUCKET_BATCHES * self.batch_size
        batches = []
        for lo in range(0, self.n, span):
            chunk = idx[lo : lo + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def next_batch(self) -> np.ndarray:
        if self._order is None:
            self._order = self._epoch_batches(self.epoch)
        if self.position >= len(self._order):
            self.epoch += 1
            self.position = 0
            self._order = self._epoch_batches(self.epoch)
        batch = self._order[self.position]
        self.position += 1
        return batch

    @property
    def progress(self) -> float:
        return self.epoch + self.position / max(1, self.batches_per_epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, d: Any, source: str) -> None:
        if not isinstance(d, dict) or any(type(d.get(k)) is not int or d[k] < 0 for k in ("epoch", "position")):
            raise CheckpointError(f"{source}: malformed data position")
        self.epoch, self.position, self._order = d["epoch"], d["position"], None


def eval_batches(lengths: np.ndarray, batch_size: int = 64) -> list[np.ndarray]:
    """Index batches of similar length for evaluation, covering every example once."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
