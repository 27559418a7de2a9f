"""The training loop's engine on torch (see train/engine.py for the interface it implements).

A step: forward through `TorchLM`, autograd's backward (under torchrun, DDP averages the
gradients of every process's share of the B streams), the global gradient norm, clipping, and
the update by the torch.optim class that charrnn's optimizer of the same name reproduces
(optim.py holds its formulas to torch's, step for step), so its slots are the same numbers under
the same names and move between the two unchanged. Loss and gradient norm come back together in
one synchronisation; when either is not finite, nothing is updated and the loop recovers.

The NumPy model and optimizer of the objective remain the run's record: `pull` copies the device's
parameters and slots into them before a checkpoint, a validation or a sample, `push` copies them
back after a restore. The carried state lives on the device as a tuple of (L, b, H) tensors, b
the streams of this process, and is gathered into all B streams when a checkpoint is written.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..model import single_bias_frozen
from ..optim import Optimizer
from . import resolve_device, torch_dtype
from .infer import TorchModel, raise_float64_on_mps
from .module import TorchLM

TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
                    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
# torch.nn.utils.clip_grad_norm_'s guard against 0/0, as optim.clip_grad_norm_ has it too
_CLIP_NORM_EPS = 1e-6


class TorchEngine:
    name = "torch"

    def __init__(self, objective: Any, world: Any = None) -> None:
        cfg, model = objective.cfg, objective.model
        self.objective, self.world = objective, world
        self.rank, self.size = (world.rank, world.size) if world is not None else (0, 1)
        self.writes = self.rank == 0
        self.grad_norms: dict[str, float] | None = None  # of the last step that recorded them
        if cfg.deterministic:
            deterministic()
        self.device = world.device if world is not None else resolve_device(cfg.device)
        if self.device.type == "mps" and model.dtype.name == "float64":
            raise_float64_on_mps()
        self.module, self.params = self._build(objective)  # the module, and charrnn's name -> its parameter
        self.trained = self.module
        if world is not None:  # gradients averaged over the processes while the backward runs
            self.trained = torch.nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        single = getattr(cfg, "single_bias", False)
        self.single_bias = ([self.params[n] for k in range(model.num_layers) for n in single_bias_frozen(model.cell, k)]
                            if single else [])
        self.optimizer = _torch_optimizer(objective.optimizer, list(self.params.values()))
        self._optimizer_in(objective.optimizer)
        self.generator = torch.Generator(device=self.device) if model.dropout else None

    def _build(self, objective: Any) -> tuple[Any, dict[str, torch.nn.Parameter]]:
        """The language model's module on the device, with the NumPy model's weights."""
        model = objective.model
        B = objective.batch_size
        if B % self.size:
            raise ConfigError(self.world.uneven_message(B))
        self.share = B // self.size  # streams of this process: rows [rank * share, (rank + 1) * share)
        module = TorchLM.of(model)
        module.to(device=self.device, dtype=torch_dtype(model.dtype.name))
        module.load_numpy(model.params)
        self.inference = TorchModel(module, self.device, model.hidden_size, model.num_layers, len(model.state_parts))
        return module, module.named_charrnn_parameters()

    # -- the carried state ---------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        return self.inference.initial_state(batch_size // self.size)

    def _local(self, hidden: Any) -> tuple[torch.Tensor, ...]:
        """The state as the loop holds it: this engine's tensors, or the NumPy arrays of all B
        streams that a fresh set-up or a restore put there, taken to the device (this share)."""
        if isinstance(hidden, tuple) and hidden and isinstance(hidden[0], torch.Tensor):
            return hidden
        parts = hidden if isinstance(hidden, tuple) else (hidden,)
        rows = slice(self.rank * self.share, (self.rank + 1) * self.share)
        return tuple(torch.from_numpy(np.ascontiguousarray(p[:, rows])).to(self.device) for p in parts)

    def _numpy_state(self, hidden: Any) -> Any:
        """All B streams' state as NumPy arrays in CharRNN's form ((h, c) for the LSTM, else h)."""
        parts = self._local(hidden)
        if self.size > 1:
            parts = tuple(torch.cat(self.world.all_gather(p), dim=1) for p in parts)
        out = tuple(p.detach().cpu().numpy() for p in parts)
        return out if len(out) > 1 else out[0]

    # -- a step --------------------------------------------------------------------------------

    def train_step(self, batch: Any, hidden: Any, lr: float, record_norms: bool = False) -> tuple[float, float, Any]:
        """One step, with one synchronisation: the loss, the gradient norm and whether every
        parameter is finite after the update are read together at the end, so the device never
        waits for the host in between. A step whose loss or norm is not finite has then already
        been applied, to parameters the loop is about to replace: it restores the last checkpoint
        (`push`), so, as with the NumPy engine, nothing of that step outlives it."""
        if self.generator is not None:  # masks from the run's dropout generator: a resume draws the same
            self.generator.manual_seed(int(self.objective.model.dropout_rng.integers(2**62)) + self.rank)
        self.module.train()
        with self._collective("a training step"):
            loss, state_n = self._loss(batch, hidden)
            loss_value, norm_value, finite_value = self._update(loss, lr, record_norms).tolist()
        self._finite = finite_value == 1.0
        self.lr = lr
        self.step_count += 1
        return loss_value, norm_value, state_n

    def _loss(self, batch: Any, hidden: Any) -> tuple[torch.Tensor, Any]:
        """The window's mean loss over this process's streams, and their final state (detached)."""
        state = self._local(hidden)
        rows = slice(self.rank * self.share, (self.rank + 1) * self.share)
        xt = torch.from_numpy(np.ascontiguousarray(batch.x[rows].T)).to(self.device, non_blocking=True)  # (T, b)
        yt = torch.from_numpy(np.ascontiguousarray(batch.y[rows].T)).to(self.device, non_blocking=True)
        logits, state_n = self.trained(xt, state, self.generator)
        return torch.nn.functional.cross_entropy(logits, yt.reshape(-1)), tuple(s.detach() for s in state_n)

    def _update(self, loss: torch.Tensor, lr: float, record_norms: bool) -> torch.Tensor:
        """Backward, the global norm (and each parameter's, when recorded), clipping and the
        optimizer's update: the stats (loss, norm before clipping, every parameter finite) as one
        device tensor, averaged over the processes."""
        cfg = self.objective.cfg
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()  # under torchrun, DDP averages the gradients on the way
        with torch.no_grad():
            grads = [p.grad for p in self.params.values()]
            norm = reported = _total_norm(grads)
            if record_norms:  # for the metrics line: one more synchronisation, on reporting steps only
                norms = torch.stack([torch.linalg.vector_norm(g) for g in grads]).tolist()
                self.grad_norms = dict(zip(self.params, norms))
            for b in self.single_bias:  # the seeds' one bias: bias_hh keeps its initial value
                b.grad.zero_()
            if cfg.clip_value:
                torch.nn.utils.clip_grad_value_(self.params.values(), cfg.clip_value)
                norm = _total_norm(grads)
            if cfg.clip_norm:  # as optim.clip_grad_norm_ and torch's: scale when the norm exceeds it
                coef = torch.clamp(cfg.clip_norm / (norm + _CLIP_NORM_EPS), max=1.0)
                torch._foreach_mul_(grads, coef.to(grads[0].dtype))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            finite = torch.stack([torch.isfinite(p).all() for p in self.params.values()]).all()
            stats = torch.stack([loss.detach(), reported.to(loss.dtype), finite.to(loss.dtype)])
            if self.size > 1:  # the mean loss of all B streams; norm and parameters are the same everywhere
                self.world.all_reduce(stats)
                stats /= self.size
        return stats

    def params_finite(self) -> bool:
        """Whether the last step left every parameter finite (read with its loss)."""
        return self._finite

    def inference_model(self) -> TorchModel:
        self.module.eval()
        return self.inference

    def agree(self, signum: int | None, out_of_time: bool) -> tuple[int | None, bool]:
        """Every process stops at the same step, for the first signal any of them received."""
        if self.size == 1:
            return signum, out_of_time
        flags = torch.tensor([signum or 0, int(out_of_time)], dtype=torch.int64, device=self.world.comm_device)
        with self._collective("the agreement on when to stop"):
            self.world.all_reduce(flags, op="max")
        got, late = flags.tolist()
        return (got or None), bool(late)

    @property
    def eval_share(self) -> tuple[int, int]:
        """This process's part of a validation: every size-th stream from its rank on."""
        return self.rank, self.size

    def sum_across(self, values: list[float]) -> list[float]:
        """The values (a validation's nats and characters) summed over the processes, in float64."""
        if self.size == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.world.comm_device)
        with self._collective("a validation"):
            self.world.all_reduce(total)
        return total.tolist()

    # -- the NumPy record ----------------------------------------------------------------------

    def pull(self, objective: Any) -> Any:
        """Parameters and optimizer slots into the NumPy model and optimizer; the state of all B
        streams returned as NumPy (every process must call this at the same step)."""
        with self._collective("a checkpoint"):
            hidden = self._numpy_state(objective.hidden)
        self.module.store_numpy(objective.model.params)
        self._optimizer_out(objective.optimizer)
        return hidden

    def push(self, objective: Any) -> None:
        """After the objective was restored from a checkpoint: its parameters and slots to the
        device. The state stays NumPy in objective.hidden until the next step takes its share of it."""
        self.module.load_numpy(objective.model.params)
        self._optimizer_in(objective.optimizer)

    # -- optimizer state: charrnn's slots <-> torch.optim's -------------------------------------

    def _optimizer_in(self, opt: Optimizer) -> None:
        self.lr, self.step_count = opt.lr, opt.step_count
        torch_opt = self.optimizer
        torch_opt.state.clear()
        if opt.step_count == 0 and opt.name != "adagrad":
            return  # torch makes its slots at the first step, as zeros (SGD's buffer: the gradient)
        step_dtype = torch.float32  # torch keeps the step count as a float32 tensor on the CPU
        for name, p in self.params.items():
            slots = {slot: torch.from_numpy(np.ascontiguousarray(a)).to(p.device) for slot, a in opt.state[name].items()}
            if opt.name != "sgd":
                slots["step"] = torch.tensor(float(opt.step_count), dtype=step_dtype)
            torch_opt.state[p] = slots

    def _optimizer_out(self, opt: Optimizer) -> None:
        for name, p in self.params.items():
            state = self.optimizer.state.get(p, {})
            for slot, array in opt.state[name].items():
                if slot in state:
                    array[...] = state[slot].detach().cpu().numpy()
                elif self.step_count:
                    raise CheckpointError(f"torch.optim.{type(self.optimizer).__name__} has no {slot!r} for {name}")
        opt.step_count = self.step_count
        opt.lr = self.lr

    # -- faults ----------------------------------------------------------------------------------

    def _collective(self, what: str) -> Any:
        return self.world.guard(what) if self.world is not None else _nothing()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return False


def deterministic() -> None:
    """The same numbers from the same run on the same GPU: deterministic cuDNN and cuBLAS kernels
    (an error for any op that has none), and float32 products in float32 rather than TF32."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients as one vector (a device scalar: no synchronisation)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _torch_optimizer(opt: Optimizer, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The torch.optim class charrnn's optimizer `opt` reproduces, with its hyperparameters."""
    hyper = opt.hyperparameters()
    if hyper.pop("eps_inside_sqrt", False):
        raise ConfigError("the min-char-rnn preset's Adagrad (eps inside the square root) has no torch.optim "
                          "counterpart: train it with --backend numpy")
    if "betas" in hyper:
        hyper["betas"] = tuple(hyper["betas"])
    return TORCH_OPTIMIZERS[opt.name](params, lr=opt.lr, **hyper)
