"""Generation one character at a time, with the state kept between calls.

    stepper = model.stepper(batch_size=1, h=h)   # h as model.initial_state gives it, or None
    logits = stepper(token_ids)                 # (B, V), valid until the next call
    stepper.h                                   # the current state, a copy

Each call runs the cell's `step` (core/, the same function for every use) through every layer,
with the stack's options (stack.py: the same methods as a window's), then the head. It reads the model's live parameters at every call, so it stays right while an
optimizer changes them. For one stream the token may be a plain int, which skips the checks
that cost more than a small model's arithmetic.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .. import threads
from ..errors import ConfigError
from .params import HEAD_BIAS, HEAD_WEIGHT, check_size
from .stack import State, layer_params


class Stepper:
    def __init__(self, model: Any, batch_size: int = 1, h: Any = None) -> None:
        self.model = model
        self.batch_size = check_size("batch_size", batch_size)
        self.state: State = tuple(part.copy() for part in model.check_state(h, self.batch_size))
        self._logits = np.empty((self.batch_size, model.vocab_size), dtype=model.dtype)
        self._one = np.zeros(1, dtype=np.intp)  # the token of one stream, reused
        threads.ensure_threads()

    @property
    def h(self) -> Any:
        return self.model.public_state(tuple(part.copy() for part in self.state))

    def reset(self, h: Any = None) -> None:
        self.state = tuple(part.copy() for part in self.model.check_state(h, self.batch_size))

    def __call__(self, tokens: Any) -> np.ndarray:
        model = self.model
        tok = None
        if self.batch_size == 1 and not isinstance(tokens, bool):
            try:
                index = operator.index(tokens)  # a Python or NumPy integer
            except TypeError:
                index = None
            if index is not None and 0 <= index < model.vocab_size:
                self._one[0] = index
                tok = self._one
        if tok is None:
            tok = np.asarray(tokens).reshape(-1)
            if tok.shape[0] != self.batch_size:
                raise ConfigError(f"tokens must have shape ({self.batch_size},), got {np.shape(tokens)}")
            tok = model.check_tokens(tok, "tokens", ndim=1)
        return self._step(tok)

    def _step(self, tok: np.ndarray) -> np.ndarray:
        model, p, cell = self.model, self.model.params, self.model.cell_module
        step, options = cell.step, model.stack
        x: np.ndarray = tok
        for k in range(model.num_layers):
            u, _ = options.norm_in(p, k, x)
            new = step(u, layer_params(cell, p, k), tuple(part[k] for part in self.state))
            for part, value in zip(self.state, new):
                part[k] = value
            x = options.join(k, x, new[0])
        x, _ = options.norm_top(p, x)
        np.matmul(x, p[HEAD_WEIGHT].T, out=self._logits)
        self._logits += p[HEAD_BIAS]
        return self._logits
