"""Every reader of a file charrnn is given, against the same hostile files.

`READERS` (charrnn/io/readers.py) names every function that reads a file; importing the whole package
fills it. Each reader meets a FIFO (no hang), a symlink to /dev/zero, a directory, an empty path, a
path holding a NUL, a missing and an empty file; the JSON, JSON Lines and TOML readers also meet a
document nested 100,000 deep, duplicate keys, lone surrogates, NaN and Infinity, numbers beyond a
float, a byte order mark (accepted); and every reader meets the wrong types and ranges of the fields
it reads. Each case is one line naming the file, in Python and with exit status 2 through the command
that reads it, or the reader's documented tolerance. A reader added later is found in `READERS` and
must be given its command and fields here (CASES), or `test_every_reader_has_its_cases` fails; one
that parses JSON or TOML any other way fails `test_no_other_parser_of_json_or_toml`.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shutil
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

import charrnn
from charrnn.core import cell_names
from charrnn.errors import CharRNNError
from charrnn.io.readers import READERS, MAX_DEPTH

from conftest import SONNET, charrnn as cli, error_line

TINY = ["--hidden-size", "16", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
        "--sample-every", "2", "--sample-length", "20", "--lr-schedule", "constant", "--log-every", "1", "--quiet"]
PACKAGE = Path(charrnn.__file__).parent


def import_everything() -> None:
    """Import every module of the package, so that every reader has registered itself."""
    for m in pkgutil.walk_packages(charrnn.__path__, "charrnn."):
        if m.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(m.name)
        except ImportError:  # an optional extra that is not installed (torch, keras)
            pass


import_everything()  # READERS, full, parametrizes the tests below


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run with metrics, samples, config.json, tokens and checkpoints."""
    base = tmp_path_factory.mktemp("readers")
    text = base / "sonnet.txt"
    text.write_text(SONNET * 6, encoding="utf-8")
    proc = cli("train", text, "--out", base / "run", *TINY)
    assert proc.returncode == 0, proc.stderr
    return base / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(trained, d)
    return d


# ------------------------------------------------------------------------------------------------
# The hostile documents, per syntax: (content, what the message says)

DEEP = 100_000
JSON_DOCUMENTS = {
    "nested 100,000 deep": ("[" * DEEP + "]" * DEEP, f"nested deeper than {MAX_DEPTH} levels"),
    "objects nested 100,000 deep": ('{"a":' * DEEP + "1" + "}" * DEEP, "nested deeper"),
    "duplicate keys": ('{"step": 1, "step": 2}', "duplicate key 'step'"),
    "a lone surrogate in a string": ('{"text": "ab\\ud800"}', "lone surrogate U+D800"),
    "a lone surrogate in a key": ('{"\\udfff": 1}', "lone surrogate U+DFFF"),
    "NaN": ('{"step": NaN}', "NaN"),
    "-Infinity": ('[-Infinity]', "Infinity"),
    "a number beyond a float": ('{"step": 1e400}', "beyond a float's range"),
    "a 5,000-digit integer": ('{"step": 1' + "0" * 4999 + "}", "5,000 digits"),
}
TOML_DOCUMENTS = {
    "nested 100,000 deep": ("a = " + "[" * DEEP + "]" * DEEP, f"nested deeper than {MAX_DEPTH} levels"),
    "inline tables nested 100,000 deep": ("a = " + "{b = " * DEEP + "1" + "}" * DEEP, "nested deeper"),
    "a key of 100,000 parts": ("a" + ".a" * DEEP + " = 1", "more than 64 dotted parts"),
    "a table of 100,000 parts": ("[" + ".".join("a" * DEEP) + "]\nx = 1", "more than 64 dotted parts"),
    "duplicate keys": ("seed = 1\nseed = 2\n", "not valid TOML"),
    "a lone surrogate": ('text = "a\\ud800"', "not valid TOML"),
    "nan": ("lr = nan", "nan is not a number"),
    "-inf": ("lr = -inf", "-inf is not a number"),
    "a number beyond a float": ("lr = 1e400", "beyond a float's range"),
    "a 5,000-digit integer": ("seed = 1" + "0" * 4999, "beyond a float's range"),
    "a 400-digit integer": ("seed = 1" + "0" * 399, "beyond a float's range"),
}


# ------------------------------------------------------------------------------------------------
# Every reader: a valid file, the fields it reads, and the command that reads it


@dataclass
class Case:
    valid: bytes  # a small valid file (the byte order mark goes in front of it)
    # files of the right syntax whose fields have the wrong type or range: (content, the message)
    fields: list[tuple[bytes, str]]
    target: Callable[[Path, Path], Path]  # (a fresh folder, a copy of a run) -> where the file goes
    command: Callable[[Path, Path, Any], list[Any]]  # (folder, run, the file's path) -> the command's arguments
    path_given: bool = True  # the command takes the path as given (so an empty one can be given)
    empty_ok: bool = False  # an empty file is read as nothing (a log before its first line)
    # what a tolerant reader does with a damaged file's content, through its command: exit status
    # and a word of its output (None: the command refuses it like any other reader)
    tolerated: tuple[int, str] | None = None
    refuses: bool = True  # False: reads whatever it is given as "nothing" (the lock record names no one)
    suffixes: dict[str, str] = field(default_factory=dict)  # syntax -> the suffix of its files
    # fields that the reader passes on and the command refuses (a setting's type, checked with the flags')
    command_fields: list[tuple[bytes, str]] = field(default_factory=list)


def _text(tmp: Path) -> Path:
    t = tmp / "sonnet.txt"
    if not t.exists():
        t.write_text(SONNET * 6, encoding="utf-8")
    return t


def _line(**record: Any) -> bytes:
    return (json.dumps(record) + "\n").encode()


METRIC_LINE = _line(step=1, train_loss=2.5, lr=0.01, grad_norm=1.0)


def _index(**change: Any) -> bytes:
    """A shipped models index (models.json) of one model, with `change` made to its entry."""
    entry = {"name": "poems", "file": "poems.safetensors", "sha256": "0" * 64, "bytes": 100, "parameters": 10,
             "data": "poems", "licence": "public domain", "val_nats_per_char": 1.5, "passage": "Shall I",
             "passage_nats_per_char": 1.6, "command": "charrnn train poems.txt", "time_budget_s": 60, "threads": 1,
             "steps": 100} | change
    return json.dumps({"format": "charrnn.models", "version": 1, "models": [entry]}).encode()


CASES: dict[str, Case] = {
    "config file (--config)": Case(
        valid=b'{"hidden_size": 8, "text": "poem.txt"}',
        fields=[(b'{"text": "a\\u0000b"}', "text holds the control character '\\x00'"),
                (b'{"text": ""}', "text is empty"),
                (b'{"init_from": "r\\nun"}', "init_from holds the control character '\\n'"),
                (b'{"init_from": "\\u001b[31m"}', "init_from holds the control character '\\x1b'"),
                (b"[1, 2]", "must be an object")],
        command_fields=[(b'{"text": 5}', "text must be a string"),
                        (b'{"seq_len": 1e308}', "seq_len must be an integer"),
                        (b'{"hidden_size": "big"}', "hidden_size must be an integer"),
                        (b'{"lr": "fast"}', "lr must be a finite number"),
                        (b'{"val_frac": 1e308}', "val_frac must be in [0, 0.5]"),
                        (b'{"steps": -1}', "steps must be >= 0"),
                        (b'{"batch_size": -4}', "batch_size must be >= 1"),
                        (b'{"dropout": true}', "dropout must not be true or false")],
        target=lambda tmp, run: tmp / "cfg.json",
        command=lambda tmp, run, p: ["train", _text(tmp), "--config", p, "--out", tmp / "out"],
        suffixes={"toml": ".toml", "json": ".json"},
    ),
    "run configuration (config.json)": Case(
        valid=b'{"cell": "lstm", "hidden_size": 16}',
        fields=[(b'{"cell": 5}', f"cell must be one of {', '.join(cell_names())}, got 5"),
                (b'{"cell": ["lstm"]}', "cell must be one of"),
                (b'{"cell": "x\\ny"}', "cell must be one of"),
                (b'[1, 2]', "must be a JSON object"),
                (b'"lstm"', "must be a JSON object")],
        target=lambda tmp, run: run / "config.json",
        command=lambda tmp, run, p: ["plot", run, "--out", tmp / "c.png"],
        path_given=False,
    ),
    "metrics log (metrics.jsonl)": Case(
        valid=METRIC_LINE,
        fields=[(_line(step="5"), "skipped"), (_line(step=-1), "skipped"), (_line(step=1.5), "skipped"),
                (_line(step=True), "skipped"), (_line(step=2**60), "skipped"), (b"[1, 2]\n", "skipped"),
                (_line(step=2, train_loss="x"), "skipped"), (_line(step=2, train_loss=-1), "skipped"),
                (_line(step=2, val_nats_per_char=1e308), "skipped"), (_line(step=2, lr=[1]), "skipped"),
                (_line(step=2, smoothed_loss=True), "skipped"), (_line(step=2, grad_norm={}), "skipped"),
                (_line(step=2, val_nats_per_char=1.0), "skipped"),
                (_line(step=2, grad_norms=[1]), "skipped"), (_line(step=2, grad_norms={"w": "x"}), "skipped"),
                (_line(step=2, grad_norms={"w": -1.0}), "skipped"), (_line(step=2, spectral_radius=5), "skipped"),
                (_line(step=2, spectral_radius=[["x"]]), "skipped"), (_line(step=2, spectral_radius=[[]]), "skipped"),
                (_line(step=2, spectral_radius=[[1e308]]), "skipped"), (_line(step=2, spectral_radius=[[1]] * 5000),
                                                                        "skipped"),
                (b'{"step": 2, "train_loss": 1' + b"0" * 5000 + b"}\n", "skipped"),
                (b"x" * (2**20 + 10) + b"\n", "skipped"), (b'{"step": 2, "lr": 0.1', "skipped")],
        target=lambda tmp, run: run / "metrics.jsonl",
        command=lambda tmp, run, p: ["plot", run, "--out", tmp / "c.png"],
        path_given=False, empty_ok=True, tolerated=(0, "skipped: not a valid record"),
    ),
    "samples (samples.txt)": Case(
        valid=b"---- step 2 ----\nhello\n",
        fields=[(b"---- step 1" + b"0" * 5000 + b" ----\nhello\n", "no samples"),
                (b"---- step 2 ----\nhel\xff\xfe\n", "\ufffd")],
        target=lambda tmp, run: run / "samples.txt",
        command=lambda tmp, run, p: ["report", run, "--out", tmp / "r.html"],
        path_given=False, empty_ok=True,
    ),
    "tag data": Case(
        valid=b'{"text": "ab", "tags": ["X", "Y"]}\n{"text": "b", "tags": ["Y"]}\n',
        fields=[(b'{"text": 5, "tags": []}', "expected"),
                (b'{"text": "ab", "tags": "XY"}', "expected"),
                (b'{"text": "ab", "tags": ["X", 5]}', "every tag must be a non-empty string"),
                (b'{"text": "ab", "tags": ["X", 1e308]}', "every tag must be a non-empty string"),
                (b'{"text": "ab", "tags": ["X"]}', "1 tags for a text of 2 characters"),
                (b'{"text": "ab", "tags": ["X", "a\\tb"]}', "tag 'a\\tb' holds '\\t'"),
                (b'{"text": "ab", "tags": ["X", "a\\nb"]}', "tag 'a\\nb' holds '\\n'"),
                (b'{"text": "ab", "tags": ["X", "a\\u2028"]}', "holds '\\u2028'"),
                (b'{"text": "ab", "tags": ["X", " "]}', "tag ' ' is empty"),
                (b'{"text": "ab", "tags": ["X", "\\u200b"]}', "holds only invisible characters"),
                (b'{"text": "ab", "tags": ["X", "Y\\u200b"]}', "tags 'Y' (line 1) and 'Y\\u200b' print alike"),
                (b'{"text": "ab", "tags": ["X", "\\uff39"]}', "print alike")],
        target=lambda tmp, run: tmp / "data.jsonl",
        command=lambda tmp, run, p: ["tag", "train", p, "--out", tmp / "out"],
        path_given=False,  # the trainer names the path (see the report)
    ),
    "classify data": Case(
        valid=b"abc\tA\nabd\tB\n",
        fields=[(b"abc\tA\nabd\tB\x1b\n", "label 'B\\x1b' holds '\\x1b'"),
                (b"abc\tA\nabd\tB\xe2\x80\xa8C\n", "holds '\\u2028'"),
                (b"abc\tA\nabd\tA\xe2\x80\x8b\n", "labels 'A' (line 1) and 'A\\u200b' print alike"),
                (b"abc\tfi\nabd\t\xef\xac\x81\n", "print alike"),
                (b"abc\tA\nabd\t\xe2\x80\x8b\n", "holds only invisible characters"),
                (b"abc\tA\nabd\t\xc2\xa0\n", "empty label"),
                (b"abc\tA\nabd\tB\xed\xa0\x80\n", ":2: not valid UTF-8"),
                (b"abc\tA\nabd\n", ":2: no tab")],
        target=lambda tmp, run: tmp / "data.tsv",
        command=lambda tmp, run, p: ["classify", "train", p, "--out", tmp / "out"],
        path_given=False,
    ),
    "Keras vocabulary (--vocab)": Case(
        valid=b'["\\n", "a", "b"]',
        fields=[(b'["a", "bc"]', "single characters"), (b"[1, 256]", "outside 0..255"), (b"[-1, 2]", "outside 0..255"),
                (b"[1e308]", "single characters"), (b"[]", "non-empty"), (b'["b", "a"]', "sorted"),
                (b"[true, false]", "must all be integers"), (b'{"encoding": "utf-8"}', "expected keys"),
                (b'{"encoding": "utf-8", "symbols": "ab"}', "non-empty list"), (b"5", "expected an object")],
        target=lambda tmp, run: tmp / "vocab.json",
        command=lambda tmp, run, p: ["import", _keras_file(tmp), "--vocab", p, "--out", tmp / "out"],
    ),
    "lock record (.lock)": Case(
        valid=b'{"host": "elsewhere", "pid": 1, "since": 0}\n',
        fields=[(b'{"host": "h", "pid": 100000000000000000000000}', "taken over"),
                (b'{"host": 5, "pid": 1}', "taken over"), (b'{"host": "h", "pid": "1"}', "taken over"),
                (b'{"host": "h", "pid": -1}', "taken over")],
        target=lambda tmp, run: run / ".lock",
        command=lambda tmp, run, p: ["train", "--resume", run],
        path_given=False, empty_ok=True, tolerated=(0, "resuming"), refuses=False,
    ),
    "checkpoint or model file": Case(
        valid=b"",  # the run's own checkpoint: see _valid
        fields=[(b'{"format": 5, "version": 1}', "unknown format 5"),
                (b'{"format": "charrnn.model", "version": "2"}', "bad format version '2'"),
                (b'{"format": "charrnn.model", "version": 1e308}', "bad format version"),
                (b'{"format": "charrnn.model", "version": -1}', "bad format version -1"),
                (b"[1]", "must be a JSON object")],
        target=lambda tmp, run: tmp / "model.safetensors",
        command=lambda tmp, run, p: ["sample", p, "--length", "3"],
        path_given=False,  # `sample ''`: load_checkpoint names the path (see the report)
    ),
    "shipped models index (models.json)": Case(
        valid=_index(),
        fields=[(_index(name="Poems/x"), "is not a plain lowercase word"), (_index(name=5), "name must be"),
                (_index(file="../poems.safetensors"), "a file name in the index's folder"),
                (_index(sha256="0" * 63), "64 lowercase hex digits"), (_index(bytes=-1), "bytes of 'poems'"),
                (_index(bytes=1e308), "bytes of 'poems'"), (_index(steps=True), "steps of 'poems'"),
                (_index(val_nats_per_char="1.5"), "val_nats_per_char of 'poems'"),
                (_index(val_nats_per_char=1e308), "val_nats_per_char of 'poems'"),
                (_index(passage=""), "passage must be"),
                (b'{"format": "charrnn.models", "version": 2, "models": []}', "not a charrnn.models index"),
                (b'{"format": "charrnn.models", "version": 1, "models": {}}', "models must be a list"),
                (b'{"format": "charrnn.models", "version": 1, "models": [5]}', "every model must be an object"),
                (b"[1]", "must be a JSON object")],
        target=lambda tmp, run: tmp / "shipped" / "models.json",
        command=lambda tmp, run, p: ["models"],
        path_given=False,  # the index is found, not given
    ),
    "text": Case(
        valid=b"Shall I",
        fields=[(b"Shall \xff I", "not valid UTF-8"), (b"Shall \xed\xa0\x80", "not valid UTF-8")],
        target=lambda tmp, run: tmp / "prime.txt",
        command=lambda tmp, run, p: ["sample", run, "--prime-file", p, "--length", "3"],
    ),
    "training text": Case(
        valid=SONNET.encode(),
        fields=[(b"abc\xffdef", "byte offset 3"), (b"ab\xed\xa0\x80cd", "not valid UTF-8")],
        target=lambda tmp, run: tmp / "text.txt",
        command=lambda tmp, run, p: ["train", p, "--out", tmp / "out", *TINY],
        path_given=False,  # `train ''`: the trainer names the path (see the report)
    ),
}


@pytest.fixture(autouse=True)
def shipped_models_folder(tmp_path, monkeypatch) -> None:
    """The folder where `charrnn models` looks for its index: the one the index case writes."""
    (tmp_path / "shipped").mkdir()
    monkeypatch.setenv("CHARRNN_MODELS", str(tmp_path / "shipped"))


def _keras_file(tmp: Path) -> Path:
    p = tmp / "model.keras"  # never opened: the vocabulary is read (and refused) first
    p.write_bytes(b"PK")
    return p


# ------------------------------------------------------------------------------------------------
# Building the files


def with_metadata(blob: bytes, text: str) -> bytes:
    """A safetensors file's bytes with its charrnn metadata replaced by `text`."""
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8: 8 + n])
    header["__metadata__"]["charrnn"] = text
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n:]


def document_file(name: str, doc: str, run: Path) -> bytes:
    """The bytes of a file of reader `name` that holds the document `doc`."""
    fmt = READERS[name].format
    if fmt == "json lines":
        return CASES[name].valid + doc.encode() + b"\n"
    if fmt == "safetensors":
        return with_metadata((run / "best.safetensors").read_bytes(), doc)
    return doc.encode()


def valid_file(name: str, run: Path) -> bytes:
    if READERS[name].format == "safetensors":
        return (run / "best.safetensors").read_bytes()
    return CASES[name].valid


def with_bom(name: str, run: Path) -> bytes:
    if READERS[name].format == "safetensors":
        blob = (run / "best.safetensors").read_bytes()
        n = struct.unpack("<Q", blob[:8])[0]
        return with_metadata(blob, "\ufeff" + json.loads(blob[8: 8 + n])["__metadata__"]["charrnn"])
    return "\ufeff".encode() + CASES[name].valid


def field_file(name: str, content: bytes, run: Path) -> bytes:
    fmt = READERS[name].format
    if fmt == "json lines":
        return CASES[name].valid + content
    if fmt == "safetensors":
        return with_metadata((run / "best.safetensors").read_bytes(), content.decode())
    return content


def documents(name: str) -> dict[str, tuple[str, str, str]]:
    """The hostile documents that reader `name` meets: label -> (suffix, content, message)."""
    out = {}
    fmt = READERS[name].format
    if fmt in ("json", "json lines", "toml or json", "safetensors"):
        suffix = CASES[name].suffixes.get("json", "")
        out |= {f"JSON {k}": (suffix, doc, msg) for k, (doc, msg) in JSON_DOCUMENTS.items()}
    if fmt == "toml or json":
        out |= {f"TOML {k}": (CASES[name].suffixes["toml"], doc, msg) for k, (doc, msg) in TOML_DOCUMENTS.items()}
    return out


def place(path: Path, data: bytes) -> Path:
    """Write `data` at `path`, in place of whatever is there (a FIFO written to would block)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data)
    return path


def special(kind: str, path: Path) -> Path:
    """Put a FIFO, a link to /dev/zero or a directory at `path`."""
    place(path, b"")
    path.unlink()
    if kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    return path


SPECIAL = {"a FIFO": ("FIFO", "empty or truncated"), "a symlink to /dev/zero": ("is a device", "empty or truncated"),
           "a directory": ("is a directory",)}


def in_thread(fn: Callable[[], Any]) -> Any:
    """fn() run in a thread: a reader that waits on a FIFO fails the test instead of hanging it."""
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(("value", fn()))
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            result.append(("error", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the reader hung"
    kind, value = result[0]
    if kind == "error":
        raise value
    return value


def refused(name: str, path: Any, *phrases: str) -> str:
    """Reader `name` on `path`: one CharRNNError line naming the file and saying one of `phrases`."""
    with pytest.raises(CharRNNError) as e:
        in_thread(lambda: READERS[name].read(path))
    message = str(e.value)
    assert "\n" not in message and message
    if os.fspath(path):
        assert os.fspath(path) in message or repr(os.fspath(path)) in message, message
    assert not phrases or any(p in message for p in phrases), message
    return message


# ------------------------------------------------------------------------------------------------
# The registry and the source


def test_every_reader_has_its_cases():
    assert set(READERS) == set(CASES), "a reader without its cases here, or cases of a reader that is gone"
    formats = ("json", "json lines", "toml or json", "tsv", "text", "safetensors")
    assert all(r.format in formats for r in READERS.values())


# Parsers of JSON that read what charrnn's own processes wrote, never a user's file: the benchmark's
# side processes talking to it.
OWN_PROCESS = {"bench/protocol.py", "bench/__init__.py"}


def test_no_other_parser_of_json_or_toml():
    """JSON and TOML are parsed by io/readers.py alone, so that no file escapes its limits."""
    pattern = re.compile(r"\bjson\.loads?\(|\btomllib\b|\bJSONDecoder\b")
    found = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if pattern.search(p.read_text(encoding="utf-8"))}
    assert found - OWN_PROCESS == {"io/readers.py"}


# ------------------------------------------------------------------------------------------------
# Each reader in Python

NAMES = sorted(READERS)


@pytest.mark.parametrize("name", NAMES)
def test_files_that_are_not_regular_files(name, run, tmp_path):
    case, target = CASES[name], CASES[name].target(tmp_path, run)
    for kind, phrases in SPECIAL.items():
        special(kind, target)
        if case.refuses:
            refused(name, target, *phrases)
        else:
            assert in_thread(lambda: READERS[name].read(target)) is None, kind
    others = {"an empty path": ("", ("path is empty",)), "a NUL in the path": (str(tmp_path / "a\0b"), ("NUL",)),
              "a missing file": (tmp_path / "missing", ("no such",))}
    for label, (path, phrases) in others.items():
        if case.refuses:
            refused(name, path, *phrases)
        else:
            assert READERS[name].read(path) is None, label


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_file(name, run, tmp_path):
    case = CASES[name]
    path = place(case.target(tmp_path, run), b"")
    if not case.refuses:
        assert READERS[name].read(path) is None
    elif case.empty_ok:
        result = READERS[name].read(path)
        assert (result.records, result.skipped) == ([], 0) if hasattr(result, "records") else result == []
    else:
        refused(name, path, "is empty", "empty or truncated")


@pytest.mark.parametrize("name", NAMES)
def test_a_byte_order_mark_is_dropped(name, run, tmp_path):
    read = READERS[name].read
    plain = read(place(CASES[name].target(tmp_path, run), valid_file(name, run)))
    marked = read(place(CASES[name].target(tmp_path, run), with_bom(name, run)))
    if READERS[name].format == "safetensors":
        plain, marked = plain[0], marked[0]
    if hasattr(plain, "records"):
        plain, marked = (plain.records, plain.skipped), (marked.records, marked.skipped)
    if isinstance(plain, list) and plain and hasattr(plain[0], "text"):  # labelled examples
        plain, marked = [(e.text, e.label) for e in plain], [(e.text, e.label) for e in marked]
    assert plain and marked == plain
    assert "\ufeff" not in repr(marked)


@pytest.mark.parametrize("name", [n for n in NAMES if documents(n)])
def test_hostile_documents(name, run, tmp_path):
    case = CASES[name]
    for label, (suffix, doc, message) in documents(name).items():
        target = case.target(tmp_path, run)
        path = place(target.with_suffix(suffix) if suffix else target, document_file(name, doc, run))
        if not case.refuses:
            assert READERS[name].read(path) is None, label
        elif READERS[name].tolerant:  # the log's line is skipped and counted
            result = READERS[name].read(path)
            assert (len(result.records), result.skipped) == (1, 1), label
        else:
            line = refused(name, path, message)
            if READERS[name].format == "json lines":  # the line after the valid ones is named
                assert f"{path}:{len(case.valid.splitlines()) + 1}:" in line, label


@pytest.mark.parametrize("name", NAMES)
def test_fields_of_the_wrong_type_or_range(name, run, tmp_path):
    for content, message in CASES[name].fields:
        path = place(CASES[name].target(tmp_path, run), field_file(name, content, run))
        if message in ("skipped", "taken over", "no samples", "\ufffd"):
            result = READERS[name].read(path)
            expected = {"skipped": lambda r: (len(r.records), r.skipped) == (1, 1), "taken over": lambda r: r is None,
                        "no samples": lambda r: r == [], "\ufffd": lambda r: r == [(2, "hel\ufffd\ufffd")]}
            assert expected[message](result), content[:80]
        else:
            refused(name, path, message)


# ------------------------------------------------------------------------------------------------
# Each reader through its command


def hostile_files(name: str, run: Path) -> list[tuple[str, bytes, str]]:
    """(suffix, content, the message) of every hostile document and field of reader `name`."""
    case = CASES[name]
    out = [(suffix, document_file(name, doc, run), message) for suffix, doc, message in documents(name).values()]
    fields = case.fields + case.command_fields
    return out + [("", field_file(name, content, run), message) for content, message in fields
                  if message not in ("no samples", "\ufffd")]


def hostile_log(name: str, run: Path) -> tuple[bytes, int]:
    """A JSON Lines file of all the hostile lines of reader `name`, each after a valid one, the torn
    one (without its newline) last; and their number."""
    valid = CASES[name].valid
    lines = [data[len(valid):].rstrip(b"\n") for _, data, _ in hostile_files(name, run)]
    torn = [line for line in lines if not line.endswith((b"}", b"]"))]
    whole = [line for line in lines if line not in torn]
    return valid + b"".join(line + b"\n" + valid for line in whole) + b"\n".join(torn), len(lines)


def through(name: str, tmp: Path, run: Path, path: Any):
    return in_thread(lambda: cli(*CASES[name].command(tmp, run, path)))


@pytest.mark.parametrize("name", NAMES)
def test_through_the_command(name, run, tmp_path):
    """Every hostile file through the command that reads it: one line and exit 2, or the reader's
    tolerance; a refused training leaves no run behind."""
    case = CASES[name]
    cmd, target = str(case.command(tmp_path, run, "X")[0]), case.target(tmp_path, run)
    for kind in SPECIAL:
        special(kind, target)
        line = error_line(through(name, tmp_path, run, target), cmd)
        assert str(target) in line or (not case.refuses and "cannot lock" in line), line
    if case.path_given:
        assert "path is empty" in error_line(through(name, tmp_path, run, ""), cmd)
    hostile = hostile_files(name, run)
    if READERS[name].tolerant and READERS[name].format == "json lines":
        # one log of every hostile line between valid ones: drawn once, each line skipped and counted
        data, n = hostile_log(name, run)
        hostile = [("", data, f"{n:,} line(s) of")]
    for suffix, data, message in hostile:
        path = place(target.with_suffix(suffix) if suffix else target, data)
        proc = through(name, tmp_path, run, path)
        if case.tolerated is not None:
            status, word = case.tolerated
            assert proc.returncode == status and word in proc.stderr, (data[:80], proc.stderr)
        else:
            line = error_line(proc, cmd)
            assert message in line, (data[:80], line)
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [*SPECIAL, "ids of another vocabulary", "an empty file"])
def test_the_runs_text_for_novelty(kind, run, tmp_path):
    """tokens.bin, read (memory-mapped, so not through READERS) by `sample --novelty` and `report`."""
    tokens = run / "tokens.bin"
    if kind in SPECIAL:
        special(kind, tokens)
    else:
        place(tokens, bytes([250]) * 100 if kind.startswith("ids") else b"")
    line = error_line(in_thread(lambda: cli("sample", run, "--novelty", "--length", "3")), "sample")
    assert str(tokens) in line


def test_a_damaged_metrics_log_in_the_report(run, tmp_path):
    name = "metrics log (metrics.jsonl)"
    data, n = hostile_log(name, run)
    place(run / "metrics.jsonl", data)
    proc = in_thread(lambda: cli("report", run, "--out", tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"{n} unreadable line(s) skipped" in page
