"""io/readers.py's parts: what the JSON and TOML parsers accept as well as what they refuse, files
read line by line and whole, and the paths they are given. (Every reader against the hostile files:
test_readers.py.)"""

from __future__ import annotations

import json
import math

import pytest

from charrnn.errors import ConfigError, DataError
from charrnn.io.readers import (MAX_DEPTH, check_path, parse_json, parse_toml, path_setting_problem, read_file,
                                read_text, text_lines)


@pytest.mark.parametrize("text, value", [
    ("[" * MAX_DEPTH + "]" * MAX_DEPTH, eval("[" * MAX_DEPTH + "]" * MAX_DEPTH)),  # as deep as allowed
    ('{"a": "' + "[{" * 500 + '"}', {"a": "[{" * 500}),  # brackets in a string do not nest
    ('["a\\"[[[[", "\\\\", "]]"]', ['a"[[[[', "\\", "]]"]),  # escaped quotes and backslashes end no string
    ('"\\ud83d\\ude00"', "\U0001F600"),  # a surrogate pair is one character
    ('"\\\\ud800"', "\\ud800"),  # a backslash, then letters: no surrogate
    ("[1e308, -1e308, 5e-324]", [1e308, -1e308, 5e-324]),
    # a generator's state is a 128-bit integer: far inside a float's range
    ('{"state": 340282366920938463463374607431768211455}', {"state": 2**128 - 1}),
    ("\ufeff[1]", [1]),
])
def test_json_that_is_accepted(text, value):
    assert parse_json(text, "x") == value


@pytest.mark.parametrize("text, message", [
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    ('"' + "[" * 100, "Unterminated string"),  # the brackets of an unterminated string are its own
    ("[" * 100 + '"' + '\\"' * 1000, "nested deeper"),
    ('{"a": {"b": 1, "b": 1}}', "duplicate key 'b'"),
    ('["\\ud800\\ud800"]', "lone surrogate U+D800"),
    ('["\\ude00\\ud83d"]', "lone surrogate"),  # a pair the wrong way round is two lone ones
    ("[1e309]", "beyond a float's range"),
    ("[-" + "9" * 309 + "]", "beyond a float's range"),
    ("[" + "9" * 400 + "]", "400 digits"),
    ("[NaN]", "NaN is not a number JSON allows"),
    ("", "not valid JSON"),
    (b"[\xff]", "not valid UTF-8"),
])
def test_json_that_is_refused_names_the_place(text, message):
    with pytest.raises(DataError) as e:
        parse_json(text, "data.jsonl:3")
    assert str(e.value).startswith("data.jsonl:3: ") and message in str(e.value)


def test_json_constants_for_charrnns_own_logs():
    value = parse_json('{"loss": NaN, "norm": Infinity}', "x", constants=True)
    assert math.isnan(value["loss"]) and value["norm"] == math.inf
    with pytest.raises(DataError, match="duplicate key"):  # the rest is as strict
        parse_json('{"a": NaN, "a": 1}', "x", constants=True)


def test_json_errors_are_the_callers_kind():
    with pytest.raises(ConfigError, match="cfg.json: duplicate key 'lr'"):
        parse_json('{"lr": 1, "lr": 2}', "cfg.json", ConfigError)


@pytest.mark.parametrize("text, value", [
    ("a = [" + ", ".join(["1.5"] * 200) + "]", {"a": [1.5] * 200}),  # many dots, no long key
    ('"a"."b" = 1\nc.d = 2', {"a": {"b": 1}, "c": {"d": 2}}),
    ("# " + "[" * 200 + "\na = 1", {"a": 1}),  # a comment's brackets
    ('a = """\n' + "[" * 200 + '\n"""', {"a": "[" * 200 + "\n"}),
    ("a = '" + "{" * 200 + "'", {"a": "{" * 200}),
    ('a = "x.y.z' + ".w" * 100 + '"', {"a": "x.y.z" + ".w" * 100}),  # dots in a string
    ("[[t]]\nx = 1\n[[t]]\nx = 2", {"t": [{"x": 1}, {"x": 2}]}),
    ("\ufeffa = 1", {"a": 1}),
])
def test_toml_that_is_accepted(text, value):
    assert parse_toml(text, "x") == value


@pytest.mark.parametrize("text, message", [
    ("a = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper"),
    ("a" + ".b" * MAX_DEPTH + " = 1", "nested deeper"),  # tables nested through a dotted key
    ("a" + ".b" * (MAX_DEPTH + 1) + " = 1", f"a key of more than {MAX_DEPTH} dotted parts"),
    ('"a"' + '."b"' * (MAX_DEPTH + 1) + " = 1", "dotted parts"),
    ("a = +nan", "+nan is not a number"),
    ("a = inf", "inf is not a number"),
    ("a = 1", None),
])
def test_toml_that_is_refused(text, message):
    if message is None:
        assert parse_toml(text, "x") == {"a": 1}
        return
    with pytest.raises(DataError) as e:
        parse_toml(text, "run.toml")
    assert str(e.value).startswith("run.toml: ") and message in str(e.value)


def test_lines_of_a_log(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_bytes("\ufeffone\n".encode() + b"two \xff\n" + b"x" * 50 + b"\nfour\xef\xbb\xbf\nlast")
    assert list(text_lines(p, max_line=20, strict=False)) == [(1, "one"), (2, None), (3, None), (4, "four\ufeff"),
                                                              (5, "last")]
    with pytest.raises(DataError, match=r"log.jsonl:2: not valid UTF-8 \(byte 0xFF"):
        list(text_lines(p, max_line=20))
    p.write_bytes(b"ok\n" + b"x" * 50 + b"\n")
    with pytest.raises(DataError, match="log.jsonl:2: a line longer than 20 bytes"):
        list(text_lines(p, max_line=20))
    p.write_bytes(b"")
    assert list(text_lines(p)) == []


def test_whole_files(tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(b"12345")
    assert read_file(p, limit=5) == b"12345"
    with pytest.raises(DataError, match="f.txt holds 5 bytes, more than the 4 a text file may have"):
        read_file(p, limit=4)
    p.write_bytes(b"")
    with pytest.raises(DataError, match="f.txt is empty"):
        read_file(p)
    assert read_file(p, allow_empty=True) == b""
    p.write_bytes(b"a\nb\n\xc3")
    with pytest.raises(ConfigError, match=r"f.txt:3: not valid UTF-8 \(byte 0xC3 at byte offset 4\)"):
        read_text(p, ConfigError)


@pytest.mark.parametrize("value, problem", [
    ("", "is empty"), ("a\0b", "'\\x00'"), ("a\nb", "'\\n'"), ("\x1b[31m", "'\\x1b'"), ("a\x85", "'\\x85'"),
    ("a\x7f", "'\\x7f'"), ("poem.txt", None), ("/data/ü 東京.txt", None),
])
def test_a_path_setting(value, problem):
    found = path_setting_problem(value)
    assert found is None if problem is None else problem in found


def test_a_path_given():
    with pytest.raises(DataError, match="the text file path is empty"):
        check_path("", DataError, "text file")
    with pytest.raises(ConfigError, match="a path cannot hold a NUL"):
        check_path("a\0b", ConfigError)
    with pytest.raises(DataError, match="must be a string, got int"):
        check_path(5)
    assert check_path(b"x.txt") == "x.txt"


def test_a_json_line_of_every_kind_of_value_round_trips():
    record = {"step": 3, "loss": 1.25, "none": None, "ok": True, "name": "Ωμέγα 🐈",
              "list": [[1, 2.5], {"k": "v"}]}
    assert parse_json(json.dumps(record), "x") == record
    assert parse_json(json.dumps(record, ensure_ascii=False).encode(), "x") == record
