"""Built-in data for the task models, made offline on first use and cached as plain files.

wordlang (classify): the language of a word. The word lists are those of the PyPI package
    ``wordfreq==3.1.1`` (its "small" lists, read from its data files without importing it), for ten
    languages written in the Latin script, so the script gives nothing away. Only words made of
    Latin letters are kept, lower-cased; a word found in the list of more than one of the ten
    languages is dropped (and counted: `meta.json`), so every word has one answer. Each
    language keeps its WORDS_PER_LANGUAGE most frequent remaining words, split 80/10/10 into
    train / validation / test by word with a fixed seed, in each language alike.

pytokens (tag): the token type of every character of Python source. The files are a fixed list of
    the standard library's own modules (present in every Python from 3.11 on), labelled with
    `tokenize` into tags that do not change between Python versions:
        NAME, KEYWORD (the 35 hard keywords, fixed here), OP, NUMBER,
        STRING (f-strings whole: from 3.12 on tokenize splits them into parts, folded back here),
        COMMENT, SPACE (spaces, tabs, newlines, indentation), OTHER (line continuations, errors)
    An example is a run of whole lines of at most CHUNK_CHARS characters, never cut inside a
    string that spans lines. Train, validation and test are different files. The tags come from
    the running Python's tokenize, so its version is recorded in `meta.json` beside the files.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import sys
import sysconfig
import tokenize
import unicodedata
from pathlib import Path

import numpy as np

from .shakespeare import default_cache_dir
from ..errors import DataError
from ..io.writer import atomic_write_bytes

WORDFREQ_PACKAGE = "wordfreq==3.1.1"
LANGUAGES = ("de", "en", "es", "fi", "fr", "it", "nl", "pl", "pt", "sv")
WORDS_PER_LANGUAGE = 4000
SPLIT = (0.8, 0.1, 0.1)
_FORMAT_VERSION = 1

PY_TRAIN = ("base64", "bisect", "calendar", "colorsys", "contextlib", "copy", "csv", "fnmatch", "fractions",
            "getopt", "gettext", "glob", "heapq", "hmac", "numbers", "operator", "queue", "quopri", "random",
            "sched", "secrets", "shlex", "string", "textwrap", "timeit", "tokenize", "weakref")
PY_VAL = ("pprint", "netrc")
PY_TEST = ("abc", "wave", "tabnanny", "zipapp")
PY_TAGS = ("NAME", "KEYWORD", "OP", "NUMBER", "STRING", "COMMENT", "SPACE", "OTHER")
# Python's hard keywords, fixed so the tags cannot change with keyword.kwlist's version
KEYWORDS = frozenset("False None True and as assert async await break class continue def del elif else except "
                     "finally for from global if import in is lambda nonlocal not or pass raise return try while "
                     "with yield".split())
CHUNK_CHARS = 256


def dataset_files(name: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """{"train", "val", "test", "meta"}: the files of built-in data `name`, made on first use."""
    build = {"wordlang": _build_wordlang, "pytokens": _build_pytokens}
    if name not in build:
        raise DataError(f"unknown built-in data {name!r}; available: {', '.join(build)}")
    key = _wordfreq_version() if name == "wordlang" else f"py{sys.version_info[0]}.{sys.version_info[1]}"
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    d = d / f"{name}-{key}-v{_FORMAT_VERSION}"
    ext = "tsv" if name == "wordlang" else "jsonl"
    files = {part: d / f"{part}.{ext}" for part in ("train", "val", "test")} | {"meta": d / "meta.json"}
    if not all(p.is_file() for p in files.values()):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create {d}: {e.strerror or e}") from None
        parts, meta = build[name]()
        for part, data in parts.items():
            atomic_write_bytes(files[part], data.encode("utf-8"))
        atomic_write_bytes(files["meta"], (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return files


# ------------------------------------------------------------------------------------------------
# wordlang


def _wordfreq_dir() -> Path:
    # found without importing wordfreq: its import pulls in ftfy, which breaks in some environments
    try:
        spec = importlib.util.find_spec("wordfreq")
    except (ImportError, ValueError):
        spec = None
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        if (root / "data").is_dir():
            return root / "data"
    raise DataError(f"the wordlang data needs the wordfreq package: pip install {WORDFREQ_PACKAGE} "
                    "(or pip install 'charrnn[tasks]')")


def _wordfreq_version() -> str:
    try:
        return importlib.metadata.version("wordfreq")
    except importlib.metadata.PackageNotFoundError:
        _wordfreq_dir()  # says how to install it
        return "unknown"


def _ranked_words(lang: str) -> list[str]:
    """A language's word list, most frequent first (wordfreq's cBpack: a header, then one list of
    words per centibel of frequency, loudest first)."""
    import msgpack

    path = _wordfreq_dir() / f"small_{lang}.msgpack.gz"
    try:
        with gzip.open(path, "rb") as f:
            packed = msgpack.load(f, raw=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}; reinstall {WORDFREQ_PACKAGE}") from None
    if not (isinstance(packed, list) and packed and isinstance(packed[0], dict) and packed[0].get("format") == "cB"):
        raise DataError(f"{path}: not a wordfreq word list; reinstall {WORDFREQ_PACKAGE}")
    return [w for bucket in packed[1:] for w in bucket]


def _latin_word(w: str) -> bool:
    return len(w) >= 2 and all(c.isalpha() and unicodedata.name(c, "").startswith("LATIN") for c in w)


def _build_wordlang() -> tuple[dict[str, str], dict]:
    lists = {lang: [w for w in dict.fromkeys(x.lower() for x in _ranked_words(lang)) if _latin_word(w)]
             for lang in LANGUAGES}
    seen: dict[str, int] = {}
    for words in lists.values():
        for w in words:
            seen[w] = seen.get(w, 0) + 1
    shared = {w for w, n in seen.items() if n > 1}
    rng = np.random.default_rng(20240511)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    kept = {}
    for lang in LANGUAGES:
        words = [w for w in lists[lang] if w not in shared][:WORDS_PER_LANGUAGE]
        kept[lang] = len(words)
        order = rng.permutation(len(words))
        a, b = int(SPLIT[0] * len(words)), int((SPLIT[0] + SPLIT[1]) * len(words))
        for part, idx in (("train", order[:a]), ("val", order[a:b]), ("test", order[b:])):
            parts[part] += [f"{words[i]}\t{lang}" for i in sorted(idx)]
    meta = {"source": WORDFREQ_PACKAGE, "wordfreq_version": _wordfreq_version(), "languages": list(LANGUAGES),
            "words_per_language": kept, "dropped_in_several_languages": len(shared),
            "examples": {k: len(v) for k, v in parts.items()}}
    return {k: "\n".join(v) + "\n" for k, v in parts.items()}, meta


# ------------------------------------------------------------------------------------------------
# pytokens


def python_file_tags(source: str) -> list[str]:
    """The tag (PY_TAGS) of every character of `source`."""
    lines = source.splitlines(keepends=True)
    starts = np.cumsum([0] + [len(x) for x in lines])
    tags = ["SPACE" if c.isspace() else "OTHER" for c in source]

    def offset(pos: tuple[int, int]) -> int:
        row, col = pos
        return int(starts[row - 1]) + col if row - 1 < len(lines) else len(source)

    fstring_depth, fstring_from = 0, 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tokenize.tok_name[tok.type]
        lo, hi = offset(tok.start), offset(tok.end)
        if name == "FSTRING_START":
            if fstring_depth == 0:
                fstring_from = lo
            fstring_depth += 1
            continue
        if name == "FSTRING_END":
            fstring_depth -= 1
            if fstring_depth == 0:
                tags[fstring_from:hi] = ["STRING"] * (hi - fstring_from)
            continue
        if fstring_depth or lo == hi:
            continue
        if name == "NAME":
            tag = "KEYWORD" if tok.string in KEYWORDS else "NAME"
        elif name in ("OP", "NUMBER", "STRING", "COMMENT"):
            tag = name
        elif name in ("NEWLINE", "NL", "INDENT"):
            tag = "SPACE"
        else:
            tag = "OTHER"
        if tag == "OTHER":  # an error token may be a stray space
            tags[lo:hi] = ["SPACE" if c.isspace() else "OTHER" for c in source[lo:hi]]
        else:
            tags[lo:hi] = [tag] * (hi - lo)
    return tags


def _chunks(source: str, tags: list[str]) -> list[dict]:
    """Runs of whole lines of at most CHUNK_CHARS characters (a longer line alone), cut only where
    no string spans the cut."""
    out, lo, pos = [], 0, 0
    for line in source.splitlines(keepends=True):
        end = pos + len(line)
        inside = 0 < pos < len(source) and tags[pos - 1] == "STRING" and tags[pos] == "STRING"
        if end - lo > CHUNK_CHARS and pos > lo and not inside:
            out.append({"text": source[lo:pos], "tags": tags[lo:pos]})
            lo = pos
        pos = end
    if pos > lo:
        out.append({"text": source[lo:pos], "tags": tags[lo:pos]})
    return [c for c in out if c["text"].strip()]


def _build_pytokens() -> tuple[dict[str, str], dict]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, digests = {}, {}
    for part, names in (("train", PY_TRAIN), ("val", PY_VAL), ("test", PY_TEST)):
        rows = []
        for name in names:
            path = stdlib / f"{name}.py"
            try:
                source = path.read_text(encoding="utf-8")
            except OSError as e:
                raise DataError(f"cannot read the standard library's {path}: {e.strerror or e}") from None
            digests[name] = hashlib.sha256(source.encode()).hexdigest()[:16]
            rows += [json.dumps(c, ensure_ascii=False) for c in _chunks(source, python_file_tags(source))]
        parts[part] = "\n".join(rows) + "\n"
    meta = {"python": sys.version.split()[0], "tags": list(PY_TAGS), "chunk_chars": CHUNK_CHARS,
            "files": {"train": list(PY_TRAIN), "val": list(PY_VAL), "test": list(PY_TEST)}, "sha256_16": digests,
            "examples": {k: v.count("\n") for k, v in parts.items()}}
    return parts, meta
