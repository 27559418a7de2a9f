"""The built-in task data: Python token tags from tokenize, cut into examples without splitting a
string, and the language-of-a-word lists (when wordfreq is installed)."""

import importlib.util
import json
import sys

import pytest

from charrnn.data.labelled import read_classify, read_tag
from charrnn.data.task_corpora import LANGUAGES, PY_TAGS, _chunks, dataset_files, python_file_tags

SOURCE = 'x = f"a{b}"  # c\nif 1:\n    y = """s\n t""" + 0x1F \\\n  - z\n'


def test_python_tags_of_every_character():
    tags = python_file_tags(SOURCE)
    assert len(tags) == len(SOURCE)
    runs = []
    for c, t in zip(SOURCE, tags):
        if runs and runs[-1][1] == t:
            runs[-1][0] += c
        else:
            runs.append([c, t])
    assert [tuple(r) for r in runs] == [
        ("x", "NAME"), (" ", "SPACE"), ("=", "OP"), (" ", "SPACE"), ('f"a{b}"', "STRING"), ("  ", "SPACE"),
        ("# c", "COMMENT"), ("\n", "SPACE"), ("if", "KEYWORD"), (" ", "SPACE"), ("1", "NUMBER"), (":", "OP"),
        ("\n    ", "SPACE"), ("y", "NAME"), (" ", "SPACE"), ("=", "OP"), (" ", "SPACE"), ('"""s\n t"""', "STRING"),
        (" ", "SPACE"), ("+", "OP"), (" ", "SPACE"), ("0x1F", "NUMBER"), (" ", "SPACE"), ("\\", "OTHER"),
        ("\n  ", "SPACE"), ("-", "OP"), (" ", "SPACE"), ("z", "NAME"), ("\n", "SPACE"),
    ]


def test_chunks_keep_strings_whole():
    source = "".join(f"a{i} = 1\n" for i in range(40)) + 'doc = """' + "line\n" * 80 + '"""\nb = 2\n'
    tags = python_file_tags(source)
    chunks = _chunks(source, tags)
    assert "".join(c["text"] for c in chunks) == source
    assert all(c["tags"] == tags[source.index(c["text"]):][: len(c["text"])] for c in chunks[:1])
    string = [c for c in chunks if '"""' in c["text"]]
    assert len(string) == 1 and string[0]["text"].count('"""') == 2  # the long string is one example
    assert all(len(c["text"]) <= 256 for c in chunks if c not in string)


def test_pytokens_files(tmp_path):
    files = dataset_files("pytokens", cache_dir=tmp_path)
    meta = json.loads(files["meta"].read_text())
    assert meta["python"] == sys.version.split()[0] and meta["tags"] == list(PY_TAGS)
    for part in ("train", "val", "test"):
        examples = read_tag(files[part])
        assert examples and {t for e in examples for t in e.label} <= set(PY_TAGS)
    assert dataset_files("pytokens", cache_dir=tmp_path) == files  # made once, then reused


@pytest.mark.skipif(importlib.util.find_spec("wordfreq") is None, reason="needs pip install wordfreq==3.1.1")
def test_wordlang_files(tmp_path):
    files = dataset_files("wordlang", cache_dir=tmp_path)
    meta = json.loads(files["meta"].read_text())
    parts = {p: read_classify(files[p]) for p in ("train", "val", "test")}
    words = {p: {e.text for e in ex} for p, ex in parts.items()}
    assert not (words["train"] & words["val"]) and not (words["train"] & words["test"]) and not (words["val"] & words["test"])
    every = [e for ex in parts.values() for e in ex]
    assert len({e.text for e in every}) == len(every)  # no word in two languages
    assert {e.label for e in every} == set(LANGUAGES) and len(LANGUAGES) >= 8
    assert meta["dropped_in_several_languages"] > 0
    assert all(e.text.isalpha() and e.text == e.text.lower() for e in every)
    assert sum(meta["examples"].values()) == len(every)


@pytest.mark.parametrize("task,name", [("tag", "pytokens"), ("classify", "wordlang")])
def test_one_line_commands_on_built_in_data(tmp_path, monkeypatch, task, name):
    if name == "wordlang" and importlib.util.find_spec("wordfreq") is None:
        pytest.skip("needs pip install wordfreq==3.1.1")
    from conftest import charrnn

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tmp_path / "run"
    extra = ["--output-recurrence"] if task == "tag" else []
    proc = charrnn(task, "train", "--dataset", name, "--out", run, "--steps", 2, "--hidden-size", 4,
                   "--batch-size", 4, "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    proc = charrnn(task, "eval", run, "--dataset", name, "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0.0 <= json.loads(proc.stdout)["accuracy"] <= 1.0
