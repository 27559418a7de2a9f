"""The benchmark's rows on tiny models: every side runs in its own process and agrees with ours
before it is timed; bad options are refused."""

import pytest

from conftest import optional

optional("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]  # each row times real processes

from charrnn import bench  # noqa: E402
from charrnn.bench import Setting, compare  # noqa: E402

CELLS = bench.twin_cells()  # the built-in cells torch.nn also has, as registered when the tests are collected


@pytest.mark.parametrize("cell", CELLS)
def test_train_rows_of_every_cell_agree_and_time(cell, tmp_path):
    row = compare(Setting("train", cell, H=8, B=2, T=5), 2, 1, "matched", tmp_path)
    assert row.ours > 0 and row.theirs > 0 and "losses agree" in row.check
    assert set(row.samples) == {"ours", "onehot", "embedding"} and all(len(v) == 2 for v in row.samples.values())
    assert f"nn.{cell.upper()}" in row.baseline


@pytest.mark.parametrize("setting", [Setting("gen", "lstm", H=8, chars=5), Setting("eval", "gru", H=8, B=2, T=5),
                                     Setting("train", "rnn", H=8, B=1, T=5, seed_style=True)])
def test_generation_evaluation_and_seed_rows(setting, tmp_path):
    row = compare(setting, 1, 1, "default", tmp_path)
    assert row.ours > 0 and row.theirs > 0 and "agree" in row.check


def test_peak_row_and_bad_options(capsys):
    assert bench.main(["--rows", "peak", "--repeats", "1", "--threads", "1"]) == 0
    assert "GFLOP/s" in capsys.readouterr().out
    for bad in (["--rows", "nope"], ["--cells", "lstm,xyz"], ["--threads", "0"], ["--repeats", "0"],
                ["--baseline-threads", "all"]):
        assert bench.main(bad) == 2, bad


@pytest.mark.parametrize("setting", [Setting("train", "gru", H=8, B=2, T=5), Setting("gen", "lstm", H=8, chars=5)])
def test_torch_backend_rows(setting, tmp_path):
    row = compare(setting, 1, 1, "matched", tmp_path, backend="torch")
    assert row.ours > 0 and row.theirs > 0 and "agree" in row.check and "(torch backend)" in row.name
    assert compare(Setting("train", "rnn", H=8, B=1, T=5, seed_style=True), 1, 1, "matched", tmp_path,
                   backend="torch") is None


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cores_rows_compare_the_default_with_one_thread_and_blas_threads(cell, tmp_path):
    rows = bench.compare_cores(Setting("train", cell, H=8, B=4, T=5), 1, 2, tmp_path)
    assert len(rows) == 2 and all(r.ours > 0 and r.theirs > 0 and "losses agree" in r.check for r in rows)
    assert {r.baseline for r in rows} == {"charrnn, 1 thread", "charrnn, BLAS 2 threads"}
    assert all(r.name.startswith(f"cores {cell} H=8: 2 cores vs") for r in rows)


def test_sizes_rows_span_64_to_1024_for_every_chosen_cell():
    chosen = bench.settings(["train", "sizes"], ["lstm", "gru"], quick=False)
    hidden = {(s.cell, s.H) for s, _ in chosen if s.B == 64}
    assert hidden == {(c, H) for c in ("lstm", "gru") for H in (64, 128, 256, 512, 1024)}
    assert all(s.cell in ("lstm", "gru") for s, _ in chosen)
    assert not any(s.H == 1024 for s, _ in bench.settings(["train"], ["lstm"], quick=False))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_end_to_end_rows_time_the_real_commands(cell, tmp_path):
    row = bench.compare_cli(Setting("train", cell, H=8, B=2, T=5), (1, 3), 1, 1, tmp_path)
    assert "whole command" in row.setting
    # two tiny steps may take less time than the processes' start-up varies: then the row says so
    assert (row.ours > 0 and row.theirs > 0) or "too few to measure" in row.check
    assert (tmp_path / "cli-run" / "latest.safetensors").is_file() and (tmp_path / "cli-torch.safetensors").is_file()


def test_end_to_end_cores_rows_time_the_command_against_itself_on_one_thread(tmp_path):
    row = bench.compare_cli(Setting("train", "gru", H=8, B=4, T=5), (1, 3), 1, 2, tmp_path, against="1 thread")
    assert row.baseline == "charrnn train, 1 thread" and row.name.startswith("charrnn train, 2 cores vs 1 thread")
    assert (row.ours > 0 and row.theirs > 0) or "too few to measure" in row.check
    with pytest.raises(ValueError, match="against"):
        bench.compare_cli(Setting("train", "gru", H=8, B=4, T=5), (1, 3), 1, 2, tmp_path, against="tf")
