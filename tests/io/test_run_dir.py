"""A run directory given as an empty path is refused in one place (`io.layout.run_dir_path`):
Path("") is the current folder, where a run would be written among the user's own files."""

import pytest

import charrnn
from conftest import SONNET, charrnn as cli
from charrnn.errors import ConfigError
from charrnn.io.layout import run_dir_path


def test_fit_refuses_an_empty_out_and_writes_nothing_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(SONNET * 4)
    # the API's own arguments are checked where every public function's are (charrnn.checks)
    with pytest.raises(ConfigError, match=r"^fit\(\): out must be a path \(a non-empty str or os.PathLike\)"):
        charrnn.fit("text.txt", out="", steps=2, hidden_size=8, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["text.txt"]


@pytest.mark.parametrize("flag", ["--out", "--resume"])
@pytest.mark.parametrize("command", [["train"], ["classify", "train"], ["tag", "train"]])
def test_every_training_command_refuses_an_empty_run_directory(tmp_path, monkeypatch, command, flag):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").write_text("ab\ta\n")
    proc = cli(*command, "data", flag, "")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"argument {flag}: an empty path names no run directory" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_run_directory_is_a_path():
    assert str(run_dir_path("runs/x")) == "runs/x"
    for bad in (5, None, True):
        with pytest.raises(ConfigError, match="a run directory is a path"):
            run_dir_path(bad)
