"""The learning rate over a run, and the optimizer options a configuration implies."""

from __future__ import annotations

import math
from typing import Any


def lr_at(cfg: Any, step: int, total_steps: int, windows_per_epoch: int, time_frac: float | None) -> float:
    """The learning rate for optimizer step `step` (0-based), before divergence scaling.

    Cosine follows the step count when the run has a step target, else the fraction of the time
    budget used (a time-only run has no other horizon).
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":
        every = cfg.lr_decay_every or windows_per_epoch
        return cfg.lr * cfg.lr_decay ** (step // every)
    if total_steps:
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
    else:
        progress = min(1.0, time_frac or 0.0)
    low = cfg.lr * cfg.min_lr_frac
    return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def optimizer_options(cfg: Any) -> dict[str, Any]:
    """Constructor options of the chosen optimizer that a configuration (of any objective) sets."""
    opts: dict[str, Any] = {"weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("sgd", "rmsprop"):
        opts["momentum"] = cfg.momentum
    if cfg.optimizer == "adagrad" and getattr(cfg, "preset", None) == "min-char-rnn":
        # min-char-rnn updates with g / sqrt(mem + 1e-8) where g is the gradient of the loss summed
        # over the window; ours is of the mean, g / T. Adagrad is scale-free except for eps, so
        # eps / T^2 makes the two updates identical (see preset_settings for the clip).
        opts |= {"eps_inside_sqrt": True, "eps": 1e-8 / cfg.seq_len**2}
    return opts
