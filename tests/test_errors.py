"""An error is one line: paths and values holding control characters are shown with backslash escapes,
by the helper that names paths (show_path) and by the command line's last guard (one_line)."""

from __future__ import annotations

import pytest

from charrnn.cli import _common
from charrnn.errors import CharRNNError, one_line, show_path

from conftest import charrnn, error_line


@pytest.mark.parametrize("text, shown", [
    ("a\nb", "a\\nb"), ("tab\there", "tab\\there"), ("\x1b[31mred", "\\x1b[31mred"), ("cr\r", "cr\\r"),
    ("line\u2028sep", "line\\u2028sep"), ("para\u2029", "para\\u2029"), ("nel\x85", "nel\\x85"),
    ("\u202eevil", "\\u202eevil"), ("zero\u200bwidth", "zero\\u200bwidth"), ("lone \ud800", "lone \\ud800"),
    # printable text, a non-breaking space included, as it is
    ("Café 東京 🐈 \u00a0 é", "Café 東京 🐈 \u00a0 é"),
])
def test_one_line_escapes_what_hides_or_breaks_a_line(text, shown):
    assert one_line(text) == shown
    assert len(one_line(text).splitlines()) == 1


def test_show_path_quotes_a_path_only_when_it_holds_a_hidden_character(tmp_path):
    assert show_path(tmp_path / "plain name é.txt") == str(tmp_path / "plain name é.txt")
    assert show_path("new\nline.txt") == "'new\\nline.txt'"
    assert show_path(b"bytes.txt") == "bytes.txt"


def test_an_error_naming_a_path_with_a_newline_is_one_line(tmp_path):
    line = error_line(charrnn("plot", tmp_path / "a\nb"), "plot")
    assert "a\\nb" in line and "no such run directory" in line
    line = error_line(charrnn("train", tmp_path / "t.txt", "--config", tmp_path / "c\nd.toml"), "train")
    assert "c\\nd.toml': no such config file" in line


def test_the_last_guard_keeps_any_error_to_one_line(monkeypatch):
    def add(p):
        def run(a):
            raise CharRNNError("first\nsecond\x1b[2J")

        return run

    monkeypatch.setitem(_common.COMMANDS, "hello", ("a command whose error spans lines", add))
    proc = charrnn("hello")
    assert error_line(proc, "hello") == "charrnn hello: error: first\\nsecond\\x1b[2J"


def test_a_usage_error_is_one_line_too():
    proc = charrnn("hello", "--no\nsuch")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--no\\nsuch" in proc.stderr
