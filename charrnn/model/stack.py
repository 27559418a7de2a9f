"""L layers of one cell, with dropout, over a window: the model's forward and backward, as a pair.

    x^0_t = char_t (ids)      h^k = cell(x^k, state0^k)      x^{k+1} = dropout(h^k)
    o_t = V x^L_t + c         (the head, in lm.py)

Dropout follows PyTorch's `nn.LSTM(dropout=p)` between stacked layers and, as char-rnn does, also
on the last layer's output before the head; it is active only when a generator is given (training).

Two options of the stack (`StackOptions`), for every cell, both off by default; layer 0 reads the
characters and is never changed by them, so they act from layer 1 up (k = 1..L-1):

    --residual      x^{k+1} = x^k + dropout(h^k)
    --layer-norm    h^k = cell(LN_k(x^k), state0^k)          (pre-norm: the layer's input)
                    top = LN_out(x^L)                        (the head reads the normed top)
                    LN(x) = g * (x - mean(x)) / sqrt(var(x) + 1e-5) + beta over the H units
                    (nn.LayerNorm(H); core/norm.py), parameters norm_l{k}.* and norm_out.*
    both            x^{k+1} = x^k + dropout(cell(LN_k(x^k))),  top = LN_out(x^L)

so with L = 1 --residual changes nothing and --layer-norm adds only the top's norm. The residual
stream carries the layers' sum unnormalised, as pre-norm stacks do; the final norm gives the head
an input of fixed scale whatever the depth.

States are tuples with one (L, B, H) array per part of the cell's STATE: (h,) or (h, c).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from ..core.dropout import dropout_backward, dropout_forward, dropout_mask
from ..core.norm import NormCache, layer_norm_backward, layer_norm_forward
from ..errors import ConfigError
from .params import NORM_OUT, cell_layer_names, norm_names

State = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class StackOptions:
    """The stack's options (module docstring); every path through the layers (a window, its
    shards, one generation step, the diagnostics' steps) asks these methods, so all compute the
    same equations. Arrays are (..., H): a window's (T, B, H) or a step's (B, H)."""

    residual: bool = False
    layer_norm: bool = False

    def norm_in(self, params: dict[str, np.ndarray], k: int, x: np.ndarray) -> tuple[np.ndarray, NormCache | None]:
        """Layer k's cell input from its stack input x^k: LN_k(x^k), or x^k itself."""
        if k == 0 or not self.layer_norm:
            return x, None
        w, b = norm_names(k)
        return layer_norm_forward(x, params[w], params[b])

    def norm_in_backward(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], k: int,
                         du: np.ndarray, cache: NormCache | None) -> np.ndarray:
        """Mirror of `norm_in`: dL/dx^k from dL/d(cell input) (consumed)."""
        if cache is None:
            return du
        w, b = norm_names(k)
        return layer_norm_backward(du, cache, params[w], grads[w], grads[b])

    def join(self, k: int, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """x^{k+1} from layer k's input x^k and its (dropped-out) output h."""
        return x + h if self.residual and k > 0 else h

    def norm_top(self, params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, NormCache | None]:
        """The head's input from x^L: LN_out(x^L), or x^L itself."""
        if not self.layer_norm:
            return x, None
        w, b = norm_names(NORM_OUT)
        return layer_norm_forward(x, params[w], params[b])

    def norm_top_backward(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], dtop: np.ndarray,
                          cache: NormCache | None) -> np.ndarray:
        """Mirror of `norm_top`."""
        if cache is None:
            return dtop
        w, b = norm_names(NORM_OUT)
        return layer_norm_backward(dtop, cache, params[w], grads[w], grads[b])

    def config(self) -> dict[str, bool]:
        """As a model's configuration records them."""
        return {"residual": self.residual, "layer_norm": self.layer_norm}

    def plain_only(self, target: str) -> None:
        """Refuse in one line a stack with options where `target` builds the plain stack only."""
        on = [f"--{k.replace('_', '-')}" for k, v in self.config().items() if v]
        if on:
            raise ConfigError(f"{target} builds the plain layer stack; this model has {' and '.join(on)} "
                              "(export --format torch keeps them)")


PLAIN = StackOptions()


class Stacked:
    """A model of a stack: its options as `residual` and `layer_norm` (the settings' names)."""

    stack: StackOptions = PLAIN

    @property
    def residual(self) -> bool:
        return self.stack.residual

    @property
    def layer_norm(self) -> bool:
        return self.stack.layer_norm


@dataclass
class StackCache:
    """What `stack_backward` needs from `stack_forward`: per layer, the cell's cache, the
    dropout mask applied to its output (None when dropout is off) and its input norm's cache
    (None without one); the top norm's cache."""

    cells: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    top: NormCache | None = None
    options: StackOptions = PLAIN


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
    options: StackOptions = PLAIN,
) -> tuple[np.ndarray, State, StackCache | None]:
    """Every layer over the window. tokens: (T, B) ids; state0: tuple of (L, B, H).

    Returns (top (T, B, H): the input of the head, state_n: tuple of (L, B, H), cache).
    `forward` names the cell function to run ("forward_reference" for the plain path).
    `masks`: the dropout masks of every layer, (T, B, H) each, drawn beforehand (`draw_masks`)
    instead of from `rng`: a shard of a window takes its streams' part of the window's masks.
    `options`: the residual connections and layer norms (module docstring).
    """
    run = getattr(cell, forward)
    cache = StackCache(options=options) if need_cache else None
    x = tokens
    finals = []
    for k in range(num_layers):
        s0 = tuple(part[k] for part in state0)
        u, norm = options.norm_in(params, k, x)
        hs, s_n, c = run(u, layer_params(cell, params, k), s0, need_cache=need_cache)
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
            cache.norms.append(norm)
        x = options.join(k, x, hs)
    top, norm = options.norm_top(params, x)
    if cache is not None:
        cache.top = norm
    state_n = tuple(np.stack([f[i] for f in finals]) for i in range(len(state0)))
    return top, state_n, cache


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
    options = cache.options
    num_layers = len(cache.cells)
    dx = options.norm_top_backward(params, grads, dtop, cache.top)  # dL/dx^L
    dstate0: list[State] = [()] * num_layers
    for k in range(num_layers - 1, -1, -1):
        # dL/dx^{k+1} reaches x^k along the residual too: the cell's backward and the mask's
        # (which overwrite what they are given) get a copy then
        skip = options.residual and k > 0
        dh = dx.copy() if skip and cache.masks[k] is None else dx
        if cache.masks[k] is not None:
            dh = dh * cache.masks[k] if skip else dropout_backward(dh, cache.masks[k])
        d_n = tuple(part[k] for part in dstate_n) if dstate_n is not None else None
        du, dstate0[k] = run(dh, cache.cells[k], layer_params(cell, params, k), layer_params(cell, grads, k),
                             dstate_n=d_n, need_dx=k > 0)
        if k > 0:
            dxk = options.norm_in_backward(params, grads, k, du, cache.norms[k])
            dx = dxk + dx if skip else dxk
    return tuple(np.stack([d[i] for d in dstate0]) for i in range(len(dstate0[0])))
