"""Checking the analytic BPTT gradients against finite differences, in float64.

Each checked element x of a parameter (or of h0) is nudged and the loss re-evaluated with the
fourth-order central difference

    dL/dx ~ (-L(x+2e) + 8 L(x+e) - 8 L(x-e) + L(x-2e)) / (12 e)

whose truncation error is O(e^4), so with e = 1e-3 the estimate is good to ~1e-12 and any
real error in the backward pass stands out by many orders of magnitude.

Relative error of one element: |analytic - numeric| / max(|analytic|, |numeric|, FLOOR).
The floor keeps elements whose true gradient is ~0 from turning round-off into huge ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .model import CharRNN

STEP = 1e-3
FLOOR = 1e-6
# Above this error the check reports failure; well-formed float64 BPTT sits near 1e-9 or below.
TOLERANCE = 1e-6


@dataclass
class GradcheckResult:
    name: str
    max_rel_error: float
    max_abs_error: float
    checked: int
    size: int

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= TOLERANCE


def numeric_gradient(
    f: Callable[[], float], x: np.ndarray, indices: np.ndarray, step: float = STEP
) -> np.ndarray:
    """dF/dx at the flat `indices` of `x` (edited in place and restored) by the 4th-order stencil."""
    flat = x.reshape(-1)  # a view: nudging it nudges x, which f reads
    out = np.empty(len(indices))
    for j, i in enumerate(indices):
        orig = flat[i]
        values = []
        for delta in (2 * step, step, -step, -2 * step):
            flat[i] = orig + delta
            values.append(f())
        flat[i] = orig
        out[j] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step)
    return out


def compare(analytic: np.ndarray, numeric: np.ndarray) -> tuple[float, float]:
    """(max relative error, max absolute error) between two gradient estimates."""
    diff = np.abs(analytic - numeric)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), FLOOR)
    return float((diff / scale).max(initial=0.0)), float(diff.max(initial=0.0))


def gradcheck(
    model: CharRNN,
    inputs: np.ndarray,
    targets: np.ndarray,
    h0: Any,
    max_per_param: int | None = None,
    rng: np.random.Generator | None = None,
    step: float = STEP,
) -> list[GradcheckResult]:
    """Check every parameter's gradient and dL/dh0 (and dL/dc0 for LSTM) for one window; float64
    models only. With dropout on, every evaluation uses the same masks (the generator is rewound).

    max_per_param: check at most this many randomly chosen elements of each array (all if None).
    step: the finite difference's step (a layer norm over few units curves sharply: a smaller one).
    """
    if model.dtype != np.float64:
        raise ValueError("finite differences need a float64 model")
    rng = rng or np.random.default_rng(0)
    state = [np.array(part, dtype=np.float64) for part in model.check_state(h0, np.shape(inputs)[0])]
    masks_from = model.dropout_rng.bit_generator.state

    def loss_now() -> float:
        model.dropout_rng.bit_generator.state = masks_from
        return model.forward(inputs, targets, model.public_state(tuple(state)))[0]

    loss_now()
    model.dropout_rng.bit_generator.state = masks_from
    loss, cache = model.forward(inputs, targets, model.public_state(tuple(state)))
    grads, dstate = model.backward(cache)
    dstate = model.check_state(dstate, np.shape(inputs)[0])

    results = []
    targets_to_check = [(name, model.params[name], grads[name]) for name in model.params]
    targets_to_check += [(f"{part}0", x, g) for part, x, g in zip(model.state_parts, state, dstate)]
    for name, x, g in targets_to_check:
        idx = np.arange(x.size)
        if max_per_param is not None and x.size > max_per_param:
            idx = np.sort(rng.choice(x.size, size=max_per_param, replace=False))
        num = numeric_gradient(loss_now, x, idx, step)
        rel, ab = compare(g.reshape(-1)[idx], num)
        results.append(GradcheckResult(name, rel, ab, len(idx), x.size))
    return results


def random_problem(
    vocab_size: int, hidden_size: int, num_layers: int, batch_size: int, seq_len: int, seed: int = 0,
    cell: str = "rnn", dropout: float = 0.0, residual: bool = False, layer_norm: bool = False,
) -> tuple[CharRNN, np.ndarray, np.ndarray, Any]:
    """A float64 model with non-trivial weights, random windows and a random h0 (and c0), for checking."""
    rng = np.random.default_rng(seed)
    model = CharRNN(vocab_size, hidden_size, num_layers, dtype="float64", seed=seed, cell=cell, dropout=dropout,
                    residual=residual, layer_norm=layer_norm)
    # Larger-than-default weights so tanh leaves its linear range and every term matters.
    for p in model.params.values():
        p[...] = rng.uniform(-0.8, 0.8, size=p.shape)
    inputs = rng.integers(0, vocab_size, size=(batch_size, seq_len))
    targets = rng.integers(0, vocab_size, size=(batch_size, seq_len))
    state = tuple(rng.uniform(-0.9, 0.9, size=(num_layers, batch_size, hidden_size)) for _ in model.state_parts)
    return model, inputs, targets, model.public_state(state)
