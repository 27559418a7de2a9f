"""The whole training step in one compiled call, where that is what makes training fast.

    step = FusedStep.for_model(model, optimizer, clip_value=0.2, clip_norm=0.0)   # or None
    loss, grad_norm, h_last, status = step(x, y, h, lr)

For a one-layer model on one stream (B=1, H up to tuning.FUSED_MAX_HIDDEN: the seed's H=100
above all) of a cell that has such a kernel (its FUSED_STEP: the tanh RNN's, core/rnn_fused.py),
a window's arithmetic takes less time than the Python calls that drive it, so forward, BPTT,
clipping and the optimizer's update run as one compiled call. It computes what the NumPy
path computes (model.loss_and_grads, optim's clip_grad_value_ / clip_grad_norm_, the optimizer's
step) and tests/train/test_fused_step.py holds the two together; the numbers differ by float rounding only
(sums in another order). It needs numba, and CHARRNN_JIT=0 turns it off with the other compiled
code. Only what the kernel implements is taken: SGD without momentum, Adagrad, Adam (not AdamW,
amsgrad or maximize), no weight decay, no dropout; anything else returns None from `for_model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import _jit, tuning
from ..core._jit import ADAGRAD, ADAM, SGD as SGD_CODE
from ..model import CharRNN
from ..model.params import HEAD_BIAS, HEAD_WEIGHT, layer_names
from ..model.stack import PLAIN
from ..optim import SGD, Adagrad, Adam, AdamW, Optimizer


class FusedStep:
    """One compiled training step of `model` with `optimizer` (see the module docstring)."""

    def __init__(self, model: CharRNN, optimizer: Optimizer, clip_value: float = 0.0, clip_norm: float = 0.0,
                 single_bias: bool = False) -> None:
        self.model, self.optimizer = model, optimizer
        self.clip_value, self.clip_norm, self.single_bias = float(clip_value), float(clip_norm), bool(single_bias)
        # the kernel takes the layer's parameters in its table's order, then the head's
        self.names = (*layer_names(model.cell, 0), HEAD_WEIGHT, HEAD_BIAS)
        self.code = {SGD: SGD_CODE, Adagrad: ADAGRAD, Adam: ADAM}[type(optimizer)]
        self.kernel = model.cell_module.fused_step_kernel()

    @classmethod
    def for_model(cls, model: CharRNN, optimizer: Optimizer, batch_size: int, clip_value: float = 0.0,
                  clip_norm: float = 0.0, single_bias: bool = False) -> "FusedStep | None":
        """A FusedStep when the kernel implements this model, optimizer and batch; else None."""
        if not supports(model, optimizer, batch_size):
            return None
        return cls(model, optimizer, clip_value, clip_norm, single_bias)

    def __call__(self, x: np.ndarray, y: np.ndarray, h: np.ndarray, lr: float) -> tuple[float, float, np.ndarray, int]:
        """Train on the window x -> y (B, T) from state h (1, B, H) at learning rate lr.

        Returns (loss, grad_norm before clipping, h_last (1, B, H), status): status 0 the update
        was applied; 1 the loss or gradient was not finite and nothing changed; 2 the update made
        a parameter non-finite (the caller restores its last good state)."""
        p, opt = self.model.params, self.optimizer
        B, T = x.shape
        H = self.model.hidden_size
        opt.lr = lr
        opt.step_count += 1
        hyper = self._hyper(opt)
        h0 = np.ascontiguousarray(np.asarray(h)[0], dtype=self.model.dtype)
        h_out = np.empty((1, B, H), self.model.dtype)
        slots = [opt.state[n] for n in self.names]
        first = "sum" if self.code == ADAGRAD else "exp_avg_sq"
        s = [sl[first] for sl in slots] if self.code != SGD_CODE else [p[n] for n in self.names]  # unused
        m = [sl["exp_avg"] for sl in slots] if self.code == ADAM else s
        loss, norm, status = self.kernel(
            np.ascontiguousarray(x, dtype=np.intp), np.ascontiguousarray(y, dtype=np.intp), h0, h_out[0],
            *(p[n] for n in self.names), *s, *m, self.code, hyper,
            self.clip_value, self.clip_norm, self.single_bias)
        if status == 1:
            opt.step_count -= 1  # nothing was applied
        return float(loss), float(norm), h_out, int(status)

    def _hyper(self, opt: Optimizer) -> np.ndarray:
        """(lr, eps, eps_inside_sqrt, beta1, beta2, step_size, bias_correction2_sqrt) for this step,
        computed in Python as optim.py computes them."""
        if self.code == ADAGRAD:
            clr = opt.lr / (1 + (opt.step_count - 1) * opt.lr_decay)
            return np.array([clr, opt.eps, float(opt.eps_inside_sqrt), 0, 0, 0, 0], dtype=np.float64)
        if self.code == ADAM:
            beta1, beta2 = opt.betas
            step = opt.step_count
            return np.array([opt.lr, opt.eps, 0, beta1, beta2, opt.lr / (1 - beta1**step),
                             (1 - beta2**step) ** 0.5], dtype=np.float64)
        return np.array([opt.lr, 0, 0, 0, 0, 0, 0], dtype=np.float64)


def supports(model: CharRNN, optimizer: Any, batch_size: int) -> bool:
    """Whether FusedStep implements this training (module docstring)."""
    if not (_jit.available() and model.cell_module.FUSED_STEP and model.num_layers == 1 and not model.dropout
            and model.stack == PLAIN):  # the fused kernel computes the plain stack only
        return False
    if model.dtype not in (np.float32, np.float64) or batch_size != 1 or model.hidden_size > tuning.FUSED_MAX_HIDDEN:
        return False
    kind = type(optimizer)
    if kind is SGD:
        return not (optimizer.momentum or optimizer.weight_decay or getattr(optimizer, "maximize", False))
    if kind is Adagrad:
        return not optimizer.weight_decay
    if kind is Adam and kind is not AdamW:
        return not (optimizer.weight_decay or optimizer.amsgrad or getattr(optimizer, "maximize", False))
    return False
