"""The settings of a classification or tagging run: every default in one place, as TrainConfig is
for the language model. The optimisation settings keep TrainConfig's names and meanings, so the
schedule (train/schedule.py) and the optimizers read them alike."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .settings import DTYPES, INITS, OPTIMIZERS, SCHEDULES, apply_overrides, cell_names
from .errors import ConfigError

TASKS = ("classify", "tag")
BALANCE = ("none", "weights", "sampling")  # skewed classes: as they come, class weights, balanced batches
TASK_DATASETS = {"classify": ("wordlang",), "tag": ("pytokens",)}
MAX_BEAM = 1024


@dataclass
class TaskConfig:
    # ---- data
    task: str = "classify"  # classify (TSV text<TAB>label) or tag (JSON Lines, a tag per character)
    data: str | None = None  # training file (None when `dataset` is used)
    dataset: str | None = None  # built-in data: wordlang (classify) or pytokens (tag)
    val: str | None = None  # validation file; None: a seeded random val_frac of the training file
    val_frac: float = 0.1  # held out for validation (stratified by class for classify); 0 = none
    balance: str = "none"  # none | weights (loss weighted by 1 / class frequency) | sampling (balanced batches)
    # ---- model
    cell: str = "lstm"  # rnn, lstm or gru: the gated cells remember a text's start to its end
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    feedback: bool = False  # tag only: the output-to-hidden recurrence R y_{t-1} (--output-recurrence)
    init: str = "orthogonal"
    dtype: str = "float32"
    # ---- optimisation (the language model's names and meanings)
    batch_size: int = 32  # texts per step, grouped by length
    optimizer: str = "adam"
    lr: float = 3e-3
    lr_schedule: str = "cosine"
    lr_decay: float = 0.97
    lr_decay_every: int = 0  # step schedule: 0 = once per epoch
    min_lr_frac: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    momentum: float = 0.0
    clip_norm: float = 1.0
    clip_value: float = 0.0
    steps: int = 0  # total steps, resumed ones included; 0 = auto (10 epochs, at least 500 steps)
    time_budget: float = 0.0  # seconds for this invocation; 0 = none (auto runs: 900)
    patience: int = 0  # stop after this many validations without a better loss (auto runs: 5)
    # ---- reporting
    log_every: int = 50
    eval_every: int = 200  # steps between validation + checkpoint (0 = at the end only)
    seed: int = 1337
    threads: int = 0
    max_divergences: int = 5

    def replace(self, **changes: Any) -> "TaskConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "config") -> "TaskConfig":
        """A saved configuration, each value checked against the type of its default."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the configuration must be an object")
        return apply_overrides(cls(), d, source)


def validate(cfg: TaskConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(cfg.task in TASKS, f"task must be one of {', '.join(TASKS)}")
    need((cfg.data is None) != (cfg.dataset is None), "give either a data file or --dataset, not both")
    if cfg.dataset is not None:
        need(cfg.dataset in TASK_DATASETS[cfg.task],
             f"unknown --dataset {cfg.dataset!r} for {cfg.task}; available: {', '.join(TASK_DATASETS[cfg.task])}")
    need(0.0 <= cfg.val_frac <= 0.5, f"--val-frac must be in [0, 0.5], got {cfg.val_frac}")
    need(cfg.balance in BALANCE, f"--balance must be one of {', '.join(BALANCE)}")
    need(cfg.task == "classify" or cfg.balance == "none", "--balance is for classification")
    need(cfg.task == "tag" or not cfg.feedback, "--output-recurrence is for tagging")
    need(cfg.cell in cell_names(), f"--cell must be one of {', '.join(cell_names())}")
    need(cfg.hidden_size >= 1, "--hidden-size must be >= 1")
    need(cfg.num_layers >= 1, "--num-layers must be >= 1")
    need(0.0 <= cfg.dropout < 1.0, "--dropout must be in [0, 1)")
    need(cfg.init in INITS, f"--init must be one of {', '.join(INITS)}")
    need(cfg.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}")
    need(cfg.batch_size >= 1, "--batch-size must be >= 1")
    need(cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
    need(math.isfinite(cfg.lr) and cfg.lr > 0, "--lr must be positive")
    need(cfg.lr_schedule in SCHEDULES, f"--lr-schedule must be one of {', '.join(SCHEDULES)}")
    need(0 < cfg.lr_decay <= 1, "--lr-decay must be in (0, 1]")
    need(0 <= cfg.min_lr_frac <= 1, "--min-lr-frac must be in [0, 1]")
    for name in ("lr_decay_every", "warmup_steps", "steps", "patience", "eval_every", "threads", "max_divergences"):
        need(getattr(cfg, name) >= 0, f"--{name.replace('_', '-')} must be >= 0")
    for name in ("weight_decay", "momentum", "clip_norm", "clip_value", "time_budget"):
        value = getattr(cfg, name)
        need(math.isfinite(value) and value >= 0, f"--{name.replace('_', '-')} must be >= 0")
    need(cfg.log_every >= 1, "--log-every must be >= 1")


def optimizer_options(cfg: TaskConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {"weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("sgd", "rmsprop"):
        opts["momentum"] = cfg.momentum
    return opts
