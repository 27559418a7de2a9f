"""The engine seam: what computes a training step, behind one small interface, so the loop is one.

An engine owns the arithmetic of a run; the objective (objective.py: the NumPy model, the NumPy
optimizer, the data, the counters) stays the record of where the run stands, and checkpoints are
written from it alone. Two engines implement the interface:

    NumpyEngine   (here)  the exact reference: charrnn's own forward, BPTT and optimizers in place
    TorchEngine   (torch_backend/engine.py)  nn.RNN / nn.LSTM / nn.GRU and torch.optim on a
                  device, data-parallel under torchrun; imported only when asked for

    initial_state(B)                  the zero state the loop carries after a reset
    train_step(batch, hidden, lr, record_norms=False)
                                      -> (loss, grad_norm, hidden): one batch of the objective,
                                      forward, backward, clipping and the update; when the loss or
                                      the gradient norm is not finite nothing is updated and the
                                      loop recovers from its last checkpoint; with record_norms,
                                      `grad_norms` holds every parameter's gradient norm before
                                      clipping (for the metrics; a synchronisation on a device)
    params_finite()                   False when an update overflowed a parameter
    inference_model()                 a model for evaluate_ids and generate (the live weights)
    pull(objective) -> hidden         the device's parameters and optimizer slots written into the
                                      NumPy model and optimizer; returns the carried state as NumPy
                                      arrays of all B streams (a collective under torchrun)
    push(objective)                   the reverse, after the objective was restored from a checkpoint
    agree(signum, out_of_time)        the stopping decision every process takes (under torchrun)
    eval_share                        (rank, processes): this process's part of a validation
    sum_across(values)                the values summed over the processes (a validation's parts)
    writes                            whether this process writes the run directory (rank 0 only)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..model import single_bias_frozen
from ..optim import clip_grad_norm_, clip_grad_value_, global_grad_norm


class NumpyEngine:
    """charrnn's own engine: the NumPy model and optimizer of the objective, updated in place."""

    name = "numpy"
    writes = True
    eval_share = (0, 1)  # one process scores all of a validation

    def __init__(self, objective: Any) -> None:
        self.objective = objective
        self.grad_norms: dict[str, float] | None = None  # of the last step that recorded them
        # the whole step in one compiled call where Python's per-call cost would dominate (one
        # stream of a small tanh RNN: train/fused.py); None elsewhere. It updates the same arrays.
        self.fused = objective.compiled_step()
        self._overflowed = False  # the fused step's report that its update made a parameter non-finite

    def initial_state(self, batch_size: int) -> Any:
        return self.objective.model.initial_state(batch_size)

    def train_step(self, batch: Any, hidden: Any, lr: float, record_norms: bool = False) -> tuple[float, float, Any]:
        o, cfg = self.objective, self.objective.cfg
        if self.fused is not None:  # no per-parameter norms there: the kernel keeps its gradients
            loss, grad_norm, h_last, status = self.fused(batch.x, batch.y, hidden, lr)
            self._overflowed = status == 2
            if status == 1:  # a loss or gradient that is not finite: nothing reached the parameters
                return loss, grad_norm if math.isfinite(loss) and not math.isfinite(grad_norm) else math.nan, hidden
            return loss, grad_norm, h_last
        loss, grads, h_last = o.loss_and_grads(batch, hidden)
        grad_norm = global_grad_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return loss, grad_norm, hidden  # nothing of this step reaches the parameters
        if record_norms:
            self.grad_norms = {k: float(np.linalg.norm(g)) for k, g in grads.items()}
        if getattr(cfg, "single_bias", False):  # one trained bias, as the seeds' b; bias_hh stays as initialised
            for k in range(cfg.num_layers):
                for name in single_bias_frozen(o.model.cell, k):
                    grads[name].fill(0.0)
        if cfg.clip_value:
            clip_grad_value_(grads, cfg.clip_value)
        if cfg.clip_norm:
            clip_grad_norm_(grads, cfg.clip_norm)
        o.optimizer.lr = lr
        o.optimizer.step(grads)
        return loss, grad_norm, h_last

    def params_finite(self) -> bool:
        if self.fused is not None:
            return not self._overflowed
        return all(np.isfinite(p).all() for p in self.objective.model.params.values())

    def inference_model(self) -> Any:
        return self.objective.model

    def pull(self, objective: Any) -> Any:
        return objective.hidden

    def push(self, objective: Any) -> None:
        pass

    def agree(self, signum: int | None, out_of_time: bool) -> tuple[int | None, bool]:
        return signum, out_of_time

    def sum_across(self, values: list[float]) -> list[float]:
        return values


def check_backend(backend: str, device: str, given: Any = None, resumed: Any = None) -> None:
    """Refuse a torch backend or device that is not there, or a cell it has no module for, before
    anything is written. The cell is the run's being resumed (`resumed`, a run directory or
    checkpoint), else the fine-tuned model's (the `init_from` given), else the `cell` given."""
    if backend == "torch":
        from ..core import cell_names
        from ..model.params import torch_module_name
        from ..torch_backend import resolve_device

        given = given or {}
        source = resumed if resumed is not None else given.get("init_from")
        cell = _cell_of(source) if source is not None else given.get("cell")
        if cell in cell_names():
            torch_module_name(cell)
        resolve_device(device)


def _cell_of(run: Any) -> Any:
    """The cell of the model in a run directory or checkpoint, from its header; None when it
    cannot be read (setting the run up then says why)."""
    from ..errors import CharRNNError
    from ..io.arrays import read_header
    from ..io.checkpoint import resolve_checkpoint

    try:
        meta, _ = read_header(resolve_checkpoint(run))
    except (CharRNNError, OSError):
        return None
    model = meta.get("model")
    return model.get("cell", None) if isinstance(model, dict) else None


def make_engine(objective: Any, world: Any = None) -> Any:
    """The engine the run's configuration names; the torch one is imported only here."""
    if getattr(objective.cfg, "backend", "numpy") == "torch":
        from ..torch_backend import import_torch

        import_torch()  # one line saying how to install it, when it is not
        if objective.kind == "lm":
            from ..torch_backend.engine import TorchEngine

            return TorchEngine(objective, world)
        from ..torch_backend.tasks import TorchTaskEngine

        return TorchTaskEngine(objective, world)
    return NumpyEngine(objective)
