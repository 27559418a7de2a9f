"""Runs of models with the stack's options (--residual, --layer-norm): a real SIGTERM and a resume
are the run that never stopped, the options cannot change on resume, fine-tuning keeps the
source's, and a run saved before the options existed resumes as it was."""

import json

import numpy as np

from charrnn.io.checkpoint import LATEST, load_checkpoint
from conftest import error_line, rewrite_metadata, run_cli
from test_signals import COMMON, SELF_SIGNAL, assert_loadable, assert_same_run, records, start

OPTIONS = ["--residual", "--layer-norm", "--num-layers", "2", "--dropout", "0.2", "--cell", "gru"]


def test_sigterm_and_resume_is_the_uninterrupted_run(tmp_path, sonnet_file):
    run, ref, driver = tmp_path / "run", tmp_path / "ref", tmp_path / "driver.py"
    driver.write_text(SELF_SIGNAL)
    flags = [*COMMON, *OPTIONS, "--eval-every", "0"]
    proc = start(driver, 6, "train", sonnet_file, "--out", run, *flags, "--steps", "1000000")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert assert_loadable(run / LATEST) == 6
    assert run_cli("train", "--resume", run, "--steps", 11).returncode == 0
    assert run_cli("train", sonnet_file, "--out", ref, *flags, "--steps", 11).returncode == 0
    assert_same_run(run, ref)
    assert records(run) == records(ref)
    config = json.loads((run / "config.json").read_text())
    assert config["residual"] is True and config["layer_norm"] is True
    model = load_checkpoint(run / LATEST).model
    assert model.residual and model.layer_norm and "norm_l1.weight" in model.params


def test_a_changed_option_is_refused_on_resume_and_fine_tuning_keeps_the_sources(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, *COMMON, "--residual", "--steps", 2).returncode == 0
    before = (run / LATEST).read_bytes()
    for flag, name in (("--layer-norm", "--layer-norm"), ("--no-residual", "--residual")):
        line = error_line(run_cli("train", "--resume", run, "--steps", 4, flag), "train")
        assert f"cannot change {name} when resuming" in line
    assert (run / LATEST).read_bytes() == before
    tuned = tmp_path / "tuned"
    proc = run_cli("train", sonnet_file, "--init-from", run, "--out", tuned, "--steps", 2, "--quiet")
    assert proc.returncode == 0, proc.stderr
    m = load_checkpoint(tuned / LATEST).model
    assert m.residual and not m.layer_norm
    line = error_line(run_cli("train", sonnet_file, "--init-from", run, "--out", tmp_path / "no", "--layer-norm",
                              "--steps", 2), "train")
    assert "--init-from keeps the model of" in line and "--layer-norm" in line
    assert not (tmp_path / "no").exists()


def test_a_run_from_before_the_options_resumes_and_samples(tmp_path, sonnet_file):
    run, ref = tmp_path / "run", tmp_path / "ref"
    for d in (run, ref):
        assert run_cli("train", sonnet_file, "--out", d, *COMMON, "--num-layers", "2", "--steps", 2).returncode == 0

    def strip(meta):  # the model's configuration and the run's, as written before the options
        for part in ("model", "config"):
            if isinstance(meta.get(part), dict):
                meta[part].pop("residual", None)
                meta[part].pop("layer_norm", None)

    rewrite_metadata(run / LATEST, strip)
    config = json.loads((run / "config.json").read_text())
    del config["residual"], config["layer_norm"]
    (run / "config.json").write_text(json.dumps(config))
    assert "residual" not in json.dumps(json.loads((run / "config.json").read_text()))
    old = load_checkpoint(run / LATEST).model
    assert not (old.residual or old.layer_norm)
    assert run_cli("train", "--resume", run, "--steps", 4).returncode == 0
    assert run_cli("train", "--resume", ref, "--steps", 4).returncode == 0
    a, b = load_checkpoint(run / LATEST), load_checkpoint(ref / LATEST)
    assert all(np.array_equal(a.model.params[k], b.model.params[k]) for k in b.model.params)
    proc = run_cli("sample", run, "--length", "20", "--seed", "1")
    assert proc.returncode == 0 and proc.stdout == run_cli("sample", ref, "--length", "20", "--seed", "1").stdout
