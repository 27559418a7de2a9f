"""Gate saturation: the fractions of steps each sigmoid gate of each unit spends below 0.1 and
above 0.9, counted from the cell's own gate values, for every gated cell."""

import numpy as np
import pytest

from charrnn.diagnostics import saturation
from charrnn.diagnostics.gradflow import run_trajectory
from charrnn.errors import ConfigError
from charrnn.model import CharRNN


def bias_ih(model, layer):
    return next(v for k, v in model.params.items() if k.endswith(f"bias_ih_l{layer}"))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fractions_count_the_gate_values(cell):
    model = CharRNN(7, 6, 2, dtype="float64", seed=3, cell=cell)
    ids = np.random.default_rng(0).integers(0, 7, size=40)
    names, sigmoid = saturation.cell_gates(model)
    assert sigmoid and set(sigmoid) < set(names)
    sats = saturation.gate_saturation(model, ids)
    assert [(s.layer, s.gate) for s in sats] == [(l, g) for l in range(2) for g in sigmoid]
    for s in sats:
        values = saturation.gate_values(model, ids, s.layer)[:, names.index(s.gate)]  # (N, H)
        assert values.shape == (40, 6)
        for u in range(6):
            assert s.left[u] == sum(v < 0.1 for v in values[:, u]) / 40
            assert s.right[u] == sum(v > 0.9 for v in values[:, u]) / 40


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_gate_forced_shut_or_open_is_saturated_all_the_time(cell):
    model = CharRNN(5, 4, 1, dtype="float64", seed=1, cell=cell)
    names, sigmoid = saturation.cell_gates(model)
    H = 4
    gate = sigmoid[-1]
    g = names.index(gate)
    b = bias_ih(model, 0)
    b[g * H + 0] = 40.0  # unit 0: always open
    b[g * H + 1] = -40.0  # unit 1: always shut
    ids = np.random.default_rng(2).integers(0, 5, size=30)
    s = next(s for s in saturation.gate_saturation(model, ids) if s.gate == gate)
    assert (s.right[0], s.left[0]) == (1.0, 0.0)
    assert (s.right[1], s.left[1]) == (0.0, 1.0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gate_values_are_the_gates_of_a_pass_over_the_whole_text(cell):
    """Every character is read (the last one too), from the given state."""
    model = CharRNN(5, 3, 1, dtype="float64", seed=4, cell=cell)
    ids = np.array([1, 2, 3, 4, 0, 1])
    state0 = model.logits(np.array([[3, 2, 1]]))[1]
    values = saturation.gate_values(model, ids, 0, state0)
    longer = saturation.gate_values(model, np.r_[ids, 2], 0, state0)
    assert values.shape[0] == 6
    np.testing.assert_array_equal(values, longer[:6])
    assert not np.allclose(values, saturation.gate_values(model, ids, 0))  # the state counts
    traj = run_trajectory(model, np.r_[ids, 0], state0)
    assert traj.steps == 6


def test_a_cell_without_sigmoid_gates_has_nothing_to_show():
    model = CharRNN(5, 3, 1, dtype="float64", cell="rnn")
    assert saturation.cell_gates(model)[1] == ()
    assert saturation.gate_saturation(model, np.array([1, 2, 3])) == []


def test_bad_input_is_refused():
    model = CharRNN(5, 3, 2, dtype="float64", cell="lstm")
    with pytest.raises(ConfigError, match="the text is empty"):
        saturation.gate_saturation(model, np.array([], dtype=int))
    with pytest.raises(ConfigError, match=r"layer must be in \[0, 1\], got 2"):
        saturation.gate_values(model, np.array([1, 2]), 2)


def test_the_figure_has_a_panel_per_layer_and_a_dot_per_unit():
    pytest.importorskip("matplotlib")
    model = CharRNN(5, 8, 2, dtype="float64", cell="lstm")
    sats = saturation.gate_saturation(model, np.random.default_rng(0).integers(0, 5, size=20))
    fig = saturation.saturation_figure(sats)
    assert len(fig.axes) == 2
    assert [len(c.get_offsets()) for c in fig.axes[0].collections] == [8, 8, 8]
