"""The plain path: the model computed with every cell's reference functions and the textbook
softmax (time-major, fresh arrays, no column form, no compiled loops). CharRNN's tuned methods
must give the same numbers; tests/core/test_tuned_vs_reference.py checks it in float64 over random shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.loss import softmax_cross_entropy_reference
from .params import HEAD_BIAS, HEAD_WEIGHT
from .stack import stack_backward, stack_forward


def reference_loss_and_grads(
    model: Any, inputs: np.ndarray, targets: np.ndarray, h0: Any = None, dropout_rng: np.random.Generator | None = None
) -> tuple[float, dict[str, np.ndarray], Any, Any]:
    """(loss, grads, h_last, dh0) of one window, computed the plain way. inputs, targets: (B, T).
    With `dropout_rng`, the model's dropout is applied with masks drawn from it."""
    p, H = model.params, model.hidden_size
    x = np.asarray(inputs).T  # (T, B)
    T, B = x.shape
    state0 = model.check_state(h0, B)
    top, state_n, cache = stack_forward(model.cell_module, p, model.num_layers, x, state0, model.dropout, dropout_rng,
                                        forward="forward_reference", options=model.stack)
    flat = top.reshape(T * B, H)
    logits = flat @ p[HEAD_WEIGHT].T + p[HEAD_BIAS]
    loss, dlogits = softmax_cross_entropy_reference(logits, np.asarray(targets).T.reshape(-1))
    grads = {name: np.zeros_like(a) for name, a in p.items()}
    grads[HEAD_WEIGHT] += dlogits.T @ flat
    grads[HEAD_BIAS] += dlogits.sum(axis=0)
    dtop = (dlogits @ p[HEAD_WEIGHT]).reshape(T, B, H)
    dstate0 = stack_backward(model.cell_module, p, grads, cache, dtop, backward="backward_reference")
    return loss, grads, model.public_state(state_n), model.public_state(dstate0)


def reference_step(model: Any, tokens: np.ndarray, h: Any) -> tuple[np.ndarray, Any]:
    """One generation step the plain way: a window of one step through the reference functions."""
    tok = np.asarray(tokens).reshape(1, -1)  # (T=1, B)
    state = model.check_state(h, tok.shape[1])
    top, state_n, _ = stack_forward(model.cell_module, model.params, model.num_layers, tok, state,
                                    need_cache=False, forward="forward_reference", options=model.stack)
    logits = top[0] @ model.params[HEAD_WEIGHT].T + model.params[HEAD_BIAS]
    return logits, model.public_state(state_n)


