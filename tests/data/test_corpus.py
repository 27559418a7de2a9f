"""A text made of several files (a folder, or files given one by one) or of strings in memory
(charrnn.fit(texts=...)): read in a documented order, joined by newlines, recorded and checked on
resume; training on it is training on its joined text."""

import numpy as np
import pytest

import charrnn
from charrnn import cli
from charrnn.data.corpus import expand
from charrnn.errors import ConfigError, DataError
from charrnn.io.checkpoint import LATEST, load_checkpoint
from conftest import SONNET, error_line, charrnn as run_charrnn

LINES = SONNET.splitlines(keepends=True)
TINY = ["--hidden-size", "8", "--seq-len", "8", "--batch-size", "2", "--steps", "6", "--quiet", "--sample-every", "0"]


def folder(tmp_path):
    d = tmp_path / "corpus"
    (d / "b").mkdir(parents=True)
    (d / ".git").mkdir()
    (d / "b" / "z.txt").write_text("".join(LINES[4:8]))
    (d / "a.txt").write_text("".join(LINES[:4]))
    (d / "c.txt").write_text("".join(LINES[8:]))
    (d / ".hidden.txt").write_text("never read")
    (d / ".git" / "config").write_text("never read")
    (d / "image.bin").write_bytes(b"\x89PNG\x00\x01")
    return d


def test_a_folder_is_read_recursively_in_path_order_without_hidden_or_binary_files(tmp_path):
    d = folder(tmp_path)
    c = expand(d)
    assert [p.relative_to(d).as_posix() for p in c.files] == ["a.txt", "b/z.txt", "c.txt"]
    assert (c.hidden, c.binary) == (2, 1) and len(c.notes()) == 2
    assert [p.name for p in expand(d, "bytes").files] == ["a.txt", "z.txt", "c.txt", "image.bin"]  # bytes are bytes
    assert [p.name for p in expand([d / "c.txt", d / "a.txt"]).files] == ["c.txt", "a.txt"]  # as given
    with pytest.raises(DataError, match="no such file or folder"):
        expand([d / "a.txt", d / "nope.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no file to train on"):
        expand(tmp_path / "empty")


def test_training_on_several_files_is_training_on_their_joined_text(tmp_path):
    """The files joined by one newline between two: the same tokens, the same run, bit for bit."""
    d = folder(tmp_path)
    joined = tmp_path / "joined.txt"
    joined.write_text("\n".join(p.read_text() for p in expand(d).files))
    assert cli.main(["train", str(d), "--out", str(tmp_path / "folder"), *TINY]) == 0
    files = [str(d / "a.txt"), str(d / "b" / "z.txt"), str(d / "c.txt")]
    assert cli.main(["train", *files, "--out", str(tmp_path / "files"), *TINY]) == 0
    assert cli.main(["train", str(joined), "--out", str(tmp_path / "one"), *TINY]) == 0
    a, b, c = (load_checkpoint(tmp_path / n / LATEST) for n in ("folder", "files", "one"))
    assert a.state["n_tokens"] == c.state["n_tokens"] and a.state["tokens_sha256"] == c.state["tokens_sha256"]
    for name in c.model.params:
        assert np.array_equal(a.model.params[name], c.model.params[name]), name
        assert np.array_equal(b.model.params[name], c.model.params[name]), name
    assert [f["size"] for f in a.state["files"]] == [len(open(f, "rb").read()) for f in files]


def test_a_resume_checks_the_files_it_recorded(tmp_path):
    d = folder(tmp_path)
    run = tmp_path / "run"
    assert cli.main(["train", str(d), "--out", str(run), *TINY]) == 0
    (d / "b" / "new.txt").write_text("another file")
    line = error_line(run_charrnn("train", "--resume", run, "--steps", 8), "train")
    assert "new.txt was not part of this run's text" in line
    (d / "b" / "new.txt").unlink()
    with open(d / "c.txt", "a") as f:
        f.write("one more line\n")
    line = error_line(run_charrnn("train", "--resume", run, "--steps", 8), "train")
    assert "c.txt has changed" in line
    (d / "c.txt").write_text("".join(LINES[8:]))
    (run / "tokens.bin").unlink()  # encoded again from the files, checked by the content hash
    assert cli.main(["train", "--resume", str(run), "--steps", "8", "--quiet"]) == 0
    assert load_checkpoint(run / LATEST).state["step"] == 8


def test_fit_trains_on_strings_and_keeps_them(tmp_path):
    names = ["emma", "olivia", "ava", "mia", "luna"] * 40
    joined = tmp_path / "names.txt"
    joined.write_text("\n".join(names))
    opts = dict(hidden_size=8, seq_len=8, batch_size=2, steps=6, sample_every=0, quiet=True)
    a = charrnn.fit(texts=names, out=tmp_path / "mem", **opts)
    b = charrnn.fit(joined, out=tmp_path / "file", **opts)
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
    assert (tmp_path / "mem" / "text.txt").read_text() == joined.read_text()
    (tmp_path / "mem" / "tokens.bin").unlink()  # the kept text encodes again on resume
    charrnn.fit(resume=tmp_path / "mem", steps=8, quiet=True)
    assert load_checkpoint(tmp_path / "mem" / LATEST).state["step"] == 8
    with pytest.raises(DataError, match=r"is no file or folder: .*charrnn\.fit\(texts=\[\.\.\.\]\)"):
        charrnn.fit("emma\nolivia\nava\n", out=tmp_path / "x", **opts)
    for bad in ("emma olivia", ["emma", 3], []):
        with pytest.raises(ConfigError, match="texts must be"):
            charrnn.fit(texts=bad, out=tmp_path / "y", **opts)
    with pytest.raises(ConfigError, match="without a text file"):
        charrnn.fit(joined, texts=names, out=tmp_path / "z", **opts)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
