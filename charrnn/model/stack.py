"""L layers of one cell, with dropout, over a window: the model's forward and backward, as a pair.

    x^0_t = char_t (ids)      h^k = cell(x^k, state0^k)      x^{k+1} = dropout(h^k)
    o_t = V x^L_t + c         (the head, in lm.py)

Dropout follows PyTorch's `nn.LSTM(dropout=p)` between stacked layers and, as char-rnn does, also
on the last layer's output before the head; it is active only when a generator is given (training).

States are tuples with one (L, B, H) array per part of the cell's STATE: (h,) or (h, c).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from ..core.dropout import dropout_backward, dropout_forward, dropout_mask
from .params import cell_layer_names

State = tuple[np.ndarray, ...]


@dataclass
class StackCache:
    """What `stack_backward` needs from `stack_forward`: per layer, the cell's cache and the
    dropout mask applied to its output (None when dropout is off)."""

    cells: list = field(default_factory=list)
    masks: list = field(default_factory=list)


def layer_params(cell: ModuleType, params: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, ...]:
    """Layer k's parameters in the order of the cell's table, the tuple its functions take,
    looked up live (the optimizers update them in place)."""
    return tuple(params[n] for n in cell_layer_names(cell, k))


def stack_forward(
    cell: ModuleType,
    params: dict[str, np.ndarray],
    num_layers: int,
    tokens: np.ndarray,
    state0: State,
    dropout: float = 0.0,
    rng: np.random.Generator | None = None,
    need_cache: bool = True,
    forward: str = "forward",
    masks: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, State, StackCache | None]:
    """Every layer over the window. tokens: (T, B) ids; state0: tuple of (L, B, H).

    Returns (top (T, B, H): the input of the head, state_n: tuple of (L, B, H), cache).
    `forward` names the cell function to run ("forward_reference" for the plain path).
    `masks`: the dropout masks of every layer, (T, B, H) each, drawn beforehand (`draw_masks`)
    instead of from `rng`: a shard of a window takes its streams' part of the window's masks.
    """
    run = getattr(cell, forward)
    cache = StackCache() if need_cache else None
    x = tokens
    finals = []
    for k in range(num_layers):
        s0 = tuple(part[k] for part in state0)
        hs, s_n, c = run(x, layer_params(cell, params, k), s0, need_cache=need_cache)
        finals.append(s_n)
        mask = None
        if masks is not None:
            mask = masks[k]
        elif dropout and rng is not None:
            mask = dropout_mask(rng, hs.shape, dropout, hs.dtype)
        if mask is not None:
            hs = dropout_forward(hs, mask)
        if cache is not None:
            cache.cells.append(c)
            cache.masks.append(mask)
        x = hs
    state_n = tuple(np.stack([f[i] for f in finals]) for i in range(len(state0)))
    return x, state_n, cache


def draw_masks(rng: np.random.Generator, num_layers: int, shape: tuple[int, int, int], dropout: float,
               dtype: np.dtype) -> list[np.ndarray]:
    """The masks `stack_forward` would draw from rng for a window of `shape` (T, B, H), in its
    order: the same numbers, drawn before the window runs."""
    return [dropout_mask(rng, shape, dropout, dtype) for _ in range(num_layers)]


def stack_backward(
    cell: ModuleType,
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    cache: StackCache,
    dtop: np.ndarray,
    dstate_n: State | None = None,
    backward: str = "backward",
) -> State:
    """Mirror of `stack_forward`: from dL/d(top) (T, B, H), consumed, add every layer's gradients
    into `grads` and return dL/dstate0 (tuple of (L, B, H))."""
    run = getattr(cell, backward)
    num_layers = len(cache.cells)
    dh = dtop
    dstate0: list[State] = [()] * num_layers
    for k in range(num_layers - 1, -1, -1):
        if cache.masks[k] is not None:
            dh = dropout_backward(dh, cache.masks[k])
        d_n = tuple(part[k] for part in dstate_n) if dstate_n is not None else None
        dh, dstate0[k] = run(dh, cache.cells[k], layer_params(cell, params, k), layer_params(cell, grads, k),
                             dstate_n=d_n, need_dx=k > 0)
    return tuple(np.stack([d[i] for d in dstate0]) for i in range(len(dstate0[0])))
