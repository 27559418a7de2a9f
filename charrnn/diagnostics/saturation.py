"""Gate saturation: how often each gate of each unit is nearly shut or nearly open over a text
(Karpathy, Johnson and Fei-Fei 2015, "Visualizing and understanding recurrent networks", figure 3).

For every sigmoid gate of a gated cell (the LSTM's i, f, o; the GRU's r, z) and every unit, two
fractions of the text's steps: left-saturated, the gate below LEFT (it lets almost nothing
through), and right-saturated, above RIGHT (it lets almost everything through). Drawn as a scatter,
one dot per unit, a gate whose units sit near the top-left corner is always open (an LSTM's forget
gates that carry information far), one along the diagonal switches on and off with the text. A
cell without sigmoid gates (the tanh RNN) has nothing to show.

The gate values come from the cell's own equations (gradflow.gate_activations), recomputed from
the states of one step-by-step pass over the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .gradflow import gate_activations, run_trajectory

# the thresholds of Karpathy et al. 2015
LEFT = 0.1
RIGHT = 0.9


@dataclass
class GateSaturation:
    """One gate of one layer over a text."""

    layer: int
    gate: str  # the gate's name in its cell ("f", "z", ...)
    left: np.ndarray  # (H,) fraction of steps with the gate below LEFT, per unit
    right: np.ndarray  # (H,) fraction of steps with the gate above RIGHT, per unit

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "gate": self.gate, "left": [float(v) for v in self.left],
                "right": [float(v) for v in self.right]}


def cell_gates(model: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every gate block's name in row order, the names of the sigmoid ones) of the model's cell,
    from the cell's module (core/: GATE_NAMES, SIGMOID_GATES)."""
    cell = model.cell_module
    return tuple(cell.GATE_NAMES), tuple(cell.SIGMOID_GATES)


def gate_values(model: Any, ids: np.ndarray, layer: int, state0: Any = None) -> np.ndarray:
    """Layer `layer`'s gate blocks after their nonlinearities while reading each of ids (N,):
    (N, G, H), float64, in the order of cell_gates(model)[0]."""
    ids = np.asarray(ids, dtype=np.intp).reshape(-1)
    if ids.size == 0:
        raise ConfigError("the text is empty")
    if not 0 <= layer < model.num_layers:
        raise ConfigError(f"the layer must be in [0, {model.num_layers - 1}], got {layer}")
    # run_trajectory reads ids[:-1] (the last id is a target): one more id reads them all
    traj = run_trajectory(model, np.r_[ids, ids[-1:]], state0)
    return np.asarray(gate_activations(model, traj, layer), dtype=np.float64)


def gate_saturation(model: Any, ids: np.ndarray, state0: Any = None) -> list[GateSaturation]:
    """Every sigmoid gate of every layer over the text ids (N,), from state0: left- and
    right-saturated fractions per unit. Empty for a cell without sigmoid gates."""
    names, sigmoid = cell_gates(model)
    if not sigmoid:
        return []
    ids = np.asarray(ids, dtype=np.intp).reshape(-1)
    if ids.size == 0:
        raise ConfigError("the text is empty")
    traj = run_trajectory(model, np.r_[ids, ids[-1:]], state0)
    out = []
    for layer in range(model.num_layers):
        acts = np.asarray(gate_activations(model, traj, layer), dtype=np.float64)  # (N, G, H)
        for gate in sigmoid:
            a = acts[:, names.index(gate)]
            out.append(GateSaturation(layer, gate, (a < LEFT).mean(axis=0), (a > RIGHT).mean(axis=0)))
    return out


def saturation_figure(sats: list[GateSaturation]) -> Any:
    """The scatter of Karpathy et al.: one panel per layer, one colour per gate, a dot per unit
    at (fraction left-saturated, fraction right-saturated)."""
    from .plots import subplots

    layers = sorted({s.layer for s in sats})
    fig, axes = subplots(1, len(layers), figsize=(4.2 * len(layers), 4.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for s in (s for s in sats if s.layer == layer):
            ax.scatter(s.left, s.right, s=14, alpha=0.7, label=f"{s.gate} gate")
        ax.plot([0, 1], [1, 0], color="gray", lw=0.8, ls=":")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"fraction left-saturated (< {LEFT})")
        ax.set_ylabel(f"fraction right-saturated (> {RIGHT})")
        ax.set_title(f"layer {layer}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
