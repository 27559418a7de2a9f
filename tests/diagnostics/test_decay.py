"""The learned decay of the cells whose recurrence is an element-wise linear filter (the optional
`decay` of the cell contract: minGRU's 1 - z, minLSTM's f'): what it is measured against, how it
is summarised, and how `charrnn diagnose` shows it beside the gradient against lag."""

import json

import numpy as np
import pytest

from charrnn.core import CELLS
from charrnn.diagnostics import gradflow
from charrnn.model import CharRNN

from conftest import run_cli

WITH_DECAY = [name for name, m in CELLS.items() if getattr(m, "decay", None) is not None]


def test_the_cells_with_a_decay_are_found():
    assert {"mingru", "minlstm"} <= set(WITH_DECAY)


@pytest.mark.parametrize("cell", list(CELLS))
def test_diagnose_reports_a_decay_exactly_for_the_cells_that_declare_one(cell):
    model = CharRNN(6, 4, 2, dtype="float64", seed=1, cell=cell)
    ids = np.random.default_rng(2).integers(0, 6, size=14)
    d = gradflow.diagnose(model, ids, 4)
    got = [r.decay for r in d.layers]
    assert d.to_json()["decay"] == got
    if cell in WITH_DECAY:
        assert all(r is not None and sum(r["histogram"]) == 13 * 4 for r in got)
        assert all(0 < r["p10"] <= r["p50"] <= r["p90"] < 1 for r in got)
        assert all("keeps a fraction" in line for line in d.reading())
    else:
        assert got == [None, None]


@pytest.mark.parametrize("cell", WITH_DECAY)
def test_the_decay_is_the_diagonal_state_jacobian(cell):
    """The state Jacobian from the cell's own backward is diag(a_t): the decay is what the
    gradient is multiplied by per step, measured independently of the cell's `decay`."""
    model = CharRNN(5, 4, 2, dtype="float64", seed=3, cell=cell)
    ids = np.random.default_rng(0).integers(0, 5, size=9)
    traj = gradflow.run_trajectory(model, ids)
    for l in range(2):
        a = gradflow.learned_decay(model, traj, l)
        assert a.shape == (8, 4)
        for s in range(8):
            J = gradflow.state_jacobian(model, traj, l, s)
            np.testing.assert_allclose(J, np.diag(a[s]), rtol=1e-12, atol=1e-15)


def test_the_summary_of_a_known_decay():
    a = np.array([[0.5, 0.9, 1.0], [0.5, 0.9, 1.0]])  # half-lives 1, log 0.5 / log 0.9, none
    s = gradflow.decay_summary(a)
    assert s["half_life_by_unit"][0] == pytest.approx(1.0) and s["half_life_by_unit"][2] is None
    assert s["half_life_by_unit"][1] == pytest.approx(np.log(0.5) / np.log(0.9))
    assert s["half_life_max"] == pytest.approx(np.log(0.5) / np.log(0.9))
    assert s["histogram"] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 4] and s["mean"] == pytest.approx(0.8)


@pytest.mark.parametrize("cell", WITH_DECAY)
def test_charrnn_diagnose_shows_the_learned_decay(cell, tmp_path, sonnet_file):
    run = tmp_path / "run"
    proc = run_cli("train", sonnet_file, "--out", run, "--cell", cell, "--hidden-size", "8", "--seq-len", "12",
                   "--batch-size", "4", "--steps", "10", "--sample-every", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("diagnose", run, "--text", sonnet_file, "--window", "60", "--warmup", "10", "--max-lag", "20")
    assert proc.returncode == 0, proc.stderr
    assert "learned decay a_t" in proc.stdout and "decay histogram" in proc.stdout
    assert "W_hh" not in proc.stdout  # no recurrent weight: no spectrum to show
    proc = run_cli("diagnose", run, "--text", sonnet_file, "--window", "60", "--warmup", "10", "--max-lag", "20",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    (decay,) = json.loads(proc.stdout)["decay"]
    # the window's 60 characters are 59 steps, of 8 units each
    assert sum(decay["histogram"]) == 59 * 8 and len(decay["half_life_by_unit"]) == 8
