"""Training every cell through the command line: exact resume with dropout, validation and
sampling on; sample, eval and export for every cell; fine-tuning with --init-from and
--extend-vocab; one-line errors that leave an existing run untouched."""

import json

import numpy as np
import pytest

from charrnn.io.checkpoint import CONFIG, LATEST, METRICS, SAMPLES, load_checkpoint
from charrnn.core import cell_names

from conftest import SONNET, run_cli, torch_twin_class
from conftest import parts

CELLS = cell_names()  # the built-in cells, as registered when the tests are collected

TINY = ["--hidden-size", "16", "--seq-len", "12", "--batch-size", "4", "--eval-every", "10",
        "--sample-every", "10", "--sample-length", "30", "--log-every", "5"]


def metrics(run):
    drop = {"chars_per_s", "elapsed"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run / METRICS).read_text().splitlines()]


@pytest.mark.parametrize("cell", CELLS)
def test_exact_resume_with_dropout_validation_and_samples(cell, tmp_path, sonnet_file):
    """40 steps in one go == 20 steps, then --resume to 40, with two layers and dropout on."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = [*TINY, "--cell", cell, "--num-layers", "2", "--dropout", "0.3", "--lr-schedule", "constant"]
    assert run_cli("train", sonnet_file, "--out", one, "--steps", "40", *common).returncode == 0
    assert run_cli("train", sonnet_file, "--out", two, "--steps", "20", *common).returncode == 0
    proc = run_cli("train", "--resume", two, "--steps", "40")
    assert proc.returncode == 0, proc.stderr
    a, b = load_checkpoint(one / LATEST), load_checkpoint(two / LATEST)
    assert a.model.cell == cell and a.model.dropout == 0.3
    assert all(np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)
    assert all(np.array_equal(x, y) for x, y in zip(parts(a.hidden), parts(b.hidden)))
    assert len(parts(a.hidden)) == (2 if cell == "lstm" else 1)
    assert a.state["dropout_rng"] == b.state["dropout_rng"]
    assert metrics(one) == metrics(two)
    assert (one / SAMPLES).read_text() == (two / SAMPLES).read_text()
    # the dropout generator matters: a run without dropout ends elsewhere
    three = tmp_path / "three"
    assert run_cli("train", sonnet_file, "--out", three, "--steps", "40", *TINY, "--cell", cell,
                   "--num-layers", "2").returncode == 0
    assert not np.array_equal(load_checkpoint(three / LATEST).model.params["head.weight"], a.model.params["head.weight"])


@pytest.mark.parametrize("cell", CELLS)
def test_sample_eval_and_export_for_every_cell(cell, tmp_path, sonnet_file, torch):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "20", *TINY, "--cell", cell,
                   "--num-layers", "2").returncode == 0
    a = run_cli("sample", run, "--prime", "Shall", "--length", "40", "--seed", "3")
    assert a.returncode == 0 and a.stdout.startswith("Shall")
    assert a.stdout == run_cli("sample", run, "--prime", "Shall", "--length", "40", "--seed", "3").stdout
    ev = run_cli("eval", run, sonnet_file, "--json")
    assert ev.returncode == 0, ev.stderr
    nats = json.loads(ev.stdout)["nats_per_char"]
    out = tmp_path / "model.safetensors"
    assert run_cli("export", run, "--format", "torch", out).returncode == 0
    # the export loads into the torch module of the cell and scores the text as eval does
    from safetensors.torch import load_file

    state = load_file(out)
    c = load_checkpoint(run)
    V, H = c.model.vocab_size, c.model.hidden_size
    rnn = torch_twin_class(cell)(V, H, 2)
    head = torch.nn.Linear(H, V)
    rnn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    ids = torch.from_numpy(c.vocab.encode(sonnet_file.read_text()).astype(np.int64))
    with torch.no_grad():
        out_seq, _ = rnn(torch.nn.functional.one_hot(ids[:-1], V).float()[:, None])
        want = torch.nn.functional.cross_entropy(head(out_seq[:, 0]), ids[1:]).item()
    assert abs(want - nats) <= 1e-4 * nats


def test_resume_and_fine_tune_refuse_a_different_model(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "10", *TINY, "--cell", "gru").returncode == 0
    before = (run / LATEST).read_bytes(), (run / CONFIG).read_text(), (run / METRICS).read_text()
    proc = run_cli("train", "--resume", run, "--cell", "lstm", "--steps", "20")
    assert proc.returncode == 2 and "--cell" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("train", "--resume", run, "--dropout", "0.5", "--steps", "20")
    assert proc.returncode == 2 and "--dropout" in proc.stderr
    other = tmp_path / "other.txt"
    other.write_text(SONNET.upper())
    proc = run_cli("train", other, "--init-from", run, "--cell", "lstm", "--out", tmp_path / "ft")
    assert proc.returncode == 2 and "--cell lstm" in proc.stderr and not (tmp_path / "ft").exists()
    assert before == ((run / LATEST).read_bytes(), (run / CONFIG).read_text(), (run / METRICS).read_text())


@pytest.mark.parametrize("args,message", [
    (["--cell", "lstm2"], "--cell"), (["--cell", ""], "--cell"), (["--dropout", "1"], "--dropout"),
    (["--dropout", "-0.1"], "--dropout"), (["--dropout", "nan"], "--dropout"), (["--dropout", "x"], "--dropout"),
    (["--extend-vocab"], "--extend-vocab needs --init-from"),
])
def test_bad_cell_and_dropout_values(args, message, tmp_path, sonnet_file):
    proc = run_cli("train", sonnet_file, "--out", tmp_path / "run", "--steps", "5", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_fine_tuning_keeps_the_model_and_extends_the_vocabulary(tmp_path, sonnet_file):
    base = tmp_path / "base"
    assert run_cli("train", sonnet_file, "--out", base, "--steps", "30", *TINY, "--cell", "lstm").returncode == 0
    src = load_checkpoint(base)
    new_text = tmp_path / "new.txt"
    extra = "Zebras quizzed 12 jumping foxes!\n"
    new_text.write_text(SONNET + extra)
    # unseen characters are refused by name, and nothing is made
    proc = run_cli("train", new_text, "--init-from", base, "--out", tmp_path / "ft", "--steps", "5")
    assert proc.returncode == 2 and "'Z'" in proc.stderr and "--extend-vocab" in proc.stderr
    assert not (tmp_path / "ft").exists()
    # with --extend-vocab: the old symbols keep their weights, the new get fresh slices
    proc = run_cli("train", new_text, "--init-from", base, "--extend-vocab", "--out", tmp_path / "ft",
                   "--steps", "1", "--eval-every", "0", "--sample-every", "0", "--lr", "1e-12")
    assert proc.returncode == 0, proc.stderr
    ft = load_checkpoint(tmp_path / "ft" / LATEST)
    assert ft.model.cell == "lstm" and ft.model.hidden_size == src.model.hidden_size
    at = src.vocab.positions_in(ft.vocab)
    assert ft.vocab.size == src.vocab.size + len(set(extra) - set(src.vocab.symbols)) > src.vocab.size
    w_old, w_new = src.model.params["rnn.weight_ih_l0"], ft.model.params["rnn.weight_ih_l0"]
    assert np.allclose(w_new[:, at], w_old, atol=1e-6)
    assert np.allclose(ft.model.params["rnn.weight_hh_l0"], src.model.params["rnn.weight_hh_l0"], atol=1e-6)
    fresh = np.setdiff1d(np.arange(ft.vocab.size), at)
    assert fresh.size and not np.allclose(w_new[:, fresh], 0)
    # the optimizer starts fresh and the config records the source
    assert json.loads((tmp_path / "ft" / CONFIG).read_text())["init_from"] == str(base)
    assert ft.state["step"] == 1
    # a text within the vocabulary fine-tunes without --extend-vocab, and starts where the source is
    ft2 = tmp_path / "ft2"
    proc = run_cli("train", sonnet_file, "--init-from", base, "--out", ft2, "--steps", "1", "--eval-every", "0",
                   "--sample-every", "0", "--lr", "1e-12")
    assert proc.returncode == 0, proc.stderr
    e_src = json.loads(run_cli("eval", base, sonnet_file, "--json").stdout)["nats_per_char"]
    e_ft = json.loads(run_cli("eval", ft2 / LATEST, sonnet_file, "--json").stdout)["nats_per_char"]
    assert abs(e_src - e_ft) <= 1e-4 * e_src


@pytest.mark.parametrize("bad", ["missing-run", "text"])
def test_init_from_something_that_is_not_a_checkpoint(bad, tmp_path, sonnet_file):
    source = tmp_path / "nothing" if bad == "missing-run" else sonnet_file
    proc = run_cli("train", sonnet_file, "--init-from", source, "--out", tmp_path / "ft", "--steps", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ft").exists()


def test_checkpoints_written_before_the_cells_still_load_and_resume(tmp_path, sonnet_file):
    """A version-1 run (no cell, dropout or dropout generator recorded) is a tanh RNN: it loads,
    samples and resumes; a file claiming a newer version is refused."""
    from conftest import rewrite_metadata

    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "10", "--cell", "rnn", *TINY).returncode == 0

    def as_version_1(meta):
        meta["version"] = 1
        for key in ("cell", "dropout"):
            meta["model"].pop(key)
        for key in ("cell", "dropout", "init_from", "extend_vocab"):
            meta["config"].pop(key)
        meta["state"].pop("dropout_rng")

    for name in (LATEST, "best.safetensors"):
        rewrite_metadata(run / name, as_version_1)
    old = load_checkpoint(run / LATEST)
    assert old.model.cell == "rnn" and old.model.dropout == 0.0 and old.config.cell == "rnn"
    assert run_cli("sample", run, "--length", "20", "--seed", "1").returncode == 0
    proc = run_cli("train", "--resume", run, "--steps", "20")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(run / LATEST).state["step"] == 20
    rewrite_metadata(run / LATEST, lambda m: m.update(version=3))
    proc = run_cli("train", "--resume", run, "--steps", "30")
    assert proc.returncode == 2 and "newer charrnn" in proc.stderr



def test_gradcheck_command_for_every_cell_and_its_bad_values():
    proc = run_cli("gradcheck", "--cell", "lstm", "--dropout", "0.3", "--num-layers", "2", "--seq-len", "3")
    assert proc.returncode == 0 and "PASS" in proc.stdout and "c0" in proc.stdout, proc.stderr
    proc = run_cli("gradcheck", "--cell", "gru", "--seq-len", "2")
    assert proc.returncode == 0 and "PASS" in proc.stdout
    for args in (["--cell", "tanh"], ["--dropout", "1.5"], ["--dropout", "nan"], ["--dropout", "x"]):
        proc = run_cli("gradcheck", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_defaults_are_chosen_by_cell_and_an_explicit_default_is_still_seen(tmp_path, sonnet_file):
    """No --cell: the measured default cell with its init and learning rate; --cell rnn: the tanh
    RNN's own; explicit values win. Asking for the default cell by name is still a request:
    fine-tuning a tanh RNN with --cell lstm is refused, and without --cell keeps the RNN."""
    from charrnn.core import cell
    from charrnn.settings import DEFAULT_CELL

    def config_of(run, *args):
        proc = run_cli("train", sonnet_file, "--out", run, "--steps", "2", *TINY, *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads((run / CONFIG).read_text())

    cfg = config_of(tmp_path / "default")
    assert (cfg["cell"], cfg["init"], cfg["lr"]) == (DEFAULT_CELL, cell(DEFAULT_CELL).DEFAULT_INIT,
                                                     cell(DEFAULT_CELL).DEFAULT_LR)
    for name in CELLS:
        cfg = config_of(tmp_path / name, "--cell", name)
        assert (cfg["init"], cfg["lr"]) == (cell(name).DEFAULT_INIT, cell(name).DEFAULT_LR)
    cfg = config_of(tmp_path / "explicit", "--cell", "gru", "--init", "normal", "--lr", "0.01")
    assert (cfg["init"], cfg["lr"]) == ("normal", 0.01)
    proc = run_cli("train", sonnet_file, "--init-from", tmp_path / "rnn", "--cell", DEFAULT_CELL,
                   "--out", tmp_path / "ft", "--steps", "2")
    assert proc.returncode == 2 and f"--cell {DEFAULT_CELL}" in proc.stderr and not (tmp_path / "ft").exists()
    cfg = config_of(tmp_path / "ft", "--init-from", tmp_path / "rnn")
    assert (cfg["cell"], cfg["lr"]) == ("rnn", cell("rnn").DEFAULT_LR)
    assert load_checkpoint(tmp_path / "ft").model.cell == "rnn"


def test_a_setting_given_at_its_default_value_is_still_a_request(tmp_path, sonnet_file):
    """The command line says which settings it was given: `--patience 0` on a resume turns early
    stopping off although 0 is the default, `--dropout 0` fine-tunes a dropout model without it,
    and `--eval-every 500` (the default) is kept by the time-budget plan, which would validate by the clock."""
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "4", "--patience", "3", "--dropout", "0.3",
                   *TINY).returncode == 0
    assert json.loads((run / CONFIG).read_text())["patience"] == 3
    assert run_cli("train", "--resume", run, "--steps", "6", "--patience", "0").returncode == 0
    assert json.loads((run / CONFIG).read_text())["patience"] == 0
    proc = run_cli("train", sonnet_file, "--init-from", run, "--dropout", "0", "--out", tmp_path / "ft", "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(tmp_path / "ft").model.dropout == 0.0
    proc = run_cli("train", sonnet_file, "--out", tmp_path / "auto", "--eval-every", "500", "--hidden-size", "8",
                   "--seq-len", "8", "--batch-size", "2", "--cell", "rnn", "--sample-every", "0", "--eval-max-chars", "64", "--time-budget", "2")
    cfg = json.loads((tmp_path / "auto" / CONFIG).read_text())
    assert proc.returncode == 0 and cfg["eval_every"] == 500 and cfg["eval_seconds"] == 0 and cfg["plan"]
