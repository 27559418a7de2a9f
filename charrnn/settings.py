"""Training configuration: every default in one place, typed and commented.

`TrainConfig` is what a run is made of; `resolve` fills in the choices that depend on the data
(model size, number of steps) so that the saved `config.json` says exactly what ran. Overrides
are checked against the type of the default and unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, TypeVar

from .core import cell_names  # the registered cells, asked at the time of use (core/__init__)
from .errors import ConfigError
from .model.params import DTYPES, INITS, cell_module  # the model's dtypes and initialisations

# Every list of choices a setting has, here once: validation, the command line's flags and the
# modules that act on a choice all read these.
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
PRESETS = ("min-char-rnn",)
ENCODINGS = ("utf-8", "bytes")  # a token is a code point, or a byte (binary or unknown data)
DATASETS = ("shakespeare",)  # built-in corpora (see datasets)
EXPORT_FORMATS = ("torch", "keras")  # what `charrnn export` writes (keras: interop/keras.py)
BACKENDS = ("numpy", "torch")  # what computes training, sampling and evaluation (torch: optional extra)
DEVICES = ("cpu", "cuda", "mps")  # where the torch backend runs; the NumPy engine runs on the CPU only
TORCH_INSTALL = "pip install 'charrnn[torch]'"  # said by every error that needs PyTorch
MAX_SAMPLE_LENGTH = 1_000_000  # training-time samples are read by people, not stored corpora
AUTO = "auto"  # a setting chosen by `resolve_auto` (for a string setting; numbers use 0)

# What "auto" means, chosen by measurement (BENCHMARKS.md, "Choosing the defaults": 22
# configurations on tiny-shakespeare and on 3 MB of Python source, each run as the default plan
# runs). An LSTM of the automatic size reached the lowest validation loss on the code and was within
# 0.005 nats/char of the best on the prose, with PyTorch's uniform init (orthogonal gate blocks
# scored 0.07 and 0.04 nats/char worse) and a learning rate of 5e-3 (2e-3 and 3e-3 scored worse on
# both). Each cell declares its own default init and learning rate (DEFAULT_INIT, DEFAULT_LR).
DEFAULT_CELL = "lstm"


@dataclass
class TrainConfig:
    # ---- data
    text: str | None = None  # path of the training text (None when `dataset` is used)
    dataset: str | None = None  # a built-in corpus instead of a file: "shakespeare"
    encoding: str = "utf-8"  # "utf-8": tokens are code points; "bytes": raw bytes (binary/unknown data)
    val_frac: float = 0.1  # the last contiguous tenth is held out for validation, as nanoGPT does
    # ---- model
    cell: str = AUTO  # rnn (the seeds' tanh), lstm or gru (PyTorch's equations); auto = DEFAULT_CELL
    hidden_size: int = 0  # H; 0 = chosen from the text's size by `auto_hidden_size`
    num_layers: int = 1  # stacked recurrent layers
    dropout: float = 0.0  # dropout between stacked layers and before the head, in training only
    init: str = AUTO  # "orthogonal" (W_hh blocks), "pytorch" (its uniform), "normal" (seeds); auto = by cell
    dtype: str = "float32"  # "float64" for exactness experiments, at about half the speed
    # ---- optimisation
    seq_len: int = 64  # T: BPTT window; the hidden state is carried across windows regardless
    batch_size: int = 32  # B parallel streams through the text
    optimizer: str = "adam"  # sgd, adagrad, rmsprop, adam, adamw
    lr: float = 0.0  # peak learning rate; 0 = by cell (the cell's DEFAULT_LR)
    lr_schedule: str = "cosine"  # constant | step (char-rnn's decay) | cosine (to lr * min_lr_frac)
    lr_decay: float = 0.97  # step schedule: multiply the lr by this ...
    lr_decay_every: int = 0  # ... every this many steps (0 = once per epoch)
    min_lr_frac: float = 0.1  # cosine schedule: the final lr as a fraction of `lr`
    warmup_steps: int = 0  # linear warm-up from 0 to `lr` over this many steps
    weight_decay: float = 0.0  # L2 (adam, sgd...) or decoupled (adamw)
    momentum: float = 0.0  # sgd / rmsprop momentum
    clip_norm: float = 1.0  # clip the global gradient norm to this (0 = off)
    clip_value: float = 0.0  # clamp every gradient element to +-this (0 = off); the seeds use 5
    single_bias: bool = False  # train only rnn.bias_ih (the seeds' one b); rnn.bias_hh keeps its initial value
    steps: int = 0  # total optimizer steps of the run, including resumed ones; 0 = auto
    time_budget: float = 0.0  # seconds of training for this invocation; 0 = none (or auto, see resolve)
    patience: int = 0  # stop after this many validations without a new best (0 = never; auto runs use 5)
    # ---- reporting and checkpoints
    log_every: int = 20  # steps between metrics lines (and progress-bar updates)
    eval_every: int = 500  # steps between validation passes and checkpoints (0 = only at the end)
    eval_max_chars: int = 0  # characters a periodic validation scores (0 = a fifth of those trained between two)
    sample_every: int = 1000  # steps between samples written to samples.txt (0 = never)
    sample_length: int = 200  # characters per training-time sample
    sample_temperature: float = 0.8  # temperature of training-time samples
    smooth: float = 0.99  # exponential smoothing of the reported training loss
    seed: int = 1337  # seeds the initial weights and every random generator of the run
    threads: int = 0  # cores used, as worker threads with one BLAS thread each (0 = the default, threads.py)
    backend: str = "numpy"  # "numpy": the exact reference engine; "torch": nn.RNN/LSTM/GRU, GPUs, torchrun
    device: str = "cpu"  # torch backend: cpu, cuda (NVIDIA) or mps (Apple); under torchrun, one GPU per process
    deterministic: bool = False  # torch backend: deterministic kernels and no TF32 (slower); NumPy always is
    max_divergences: int = 5  # NaN/inf recoveries (restore + halve lr) before giving up
    preset: str | None = None  # "min-char-rnn": seed 002's program
    # ---- fine-tuning
    init_from: str | None = None  # start from this run's (best) or checkpoint's weights, cell and vocabulary
    extend_vocab: bool = False  # with init_from: add the new text's unseen characters to the vocabulary

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "config") -> "TrainConfig":
        """Rebuild from a dict (a saved config.json or checkpoint): unknown keys and values of the
        wrong type are refused, missing keys keep their defaults."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the configuration must be an object")
        return apply_overrides(cls(), d, source)


C = TypeVar("C")  # a configuration dataclass: TrainConfig, or the tasks' TaskConfig


def explicit_settings(cfg: Any, asked: Iterable[str] | None = None) -> dict[str, Any]:
    """What the user actually asked for, by name: the settings named in `asked` (the command line
    and `fit` say which they were given, so `--patience 0` is seen although 0 is the default), or
    without that list the settings of `cfg` (a configuration dataclass) that differ from its
    defaults."""
    if asked is not None:
        return {k: getattr(cfg, k) for k in asked}
    default = type(cfg)()
    return {k: v for k, v in cfg.to_dict().items() if v != getattr(default, k)}


def apply_overrides(cfg: C, overrides: dict[str, Any], source: str = "override") -> C:
    """cfg (a TrainConfig, or another configuration dataclass whose fields all have defaults) with
    `overrides` applied, each checked against the type of the field's default; None is allowed
    only where the default is None (the optional paths and names)."""
    known = {f.name for f in fields(cfg)}
    defaults = type(cfg)()
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        default = getattr(defaults, key)
        if value is None:
            if default is not None:
                raise ConfigError(f"{source}: {key} cannot be empty")
        elif isinstance(default, bool) or isinstance(value, bool):
            if not (isinstance(default, bool) and isinstance(value, bool)):
                raise ConfigError(f"{source}: {key} must {'' if isinstance(default, bool) else 'not '}be true or false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int):
                raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        elif isinstance(default, float):
            try:
                finite = isinstance(value, (int, float)) and math.isfinite(value)
            except OverflowError:  # an int too large for a float
                finite = False
            if not finite:
                raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
            value = float(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        changes[key] = value
    return cfg.replace(**changes)


# Settings that name files: a config file's relative paths are taken from the file's folder.
PATH_SETTINGS = ("text", "init_from")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML or JSON file (by its suffix; otherwise JSON when it starts with "{"),
    keyed as config.json is, with relative paths made relative to the file's folder. Unknown
    keys and wrong types are refused later, by `apply_overrides`, naming the file and the key."""
    from .data.text import read_file_bytes  # imported here: data imports this module
    from .errors import DataError

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"{p}: no such config file")
    try:
        raw = read_file_bytes(p)  # a regular file only: a FIFO is refused, never waited on
    except DataError as e:
        raise ConfigError(f"config file {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    as_json = p.suffix.lower() == ".json" or (p.suffix.lower() != ".toml" and text.lstrip().startswith("{"))
    try:
        if as_json:
            def no_constants(name: str) -> Any:
                raise ValueError(f"{name} is not a number JSON allows")

            data = json.loads(text, parse_constant=no_constants)
        else:
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p}: not valid {'JSON' if as_json else 'TOML'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the settings must be an object of key: value pairs")
    for key in PATH_SETTINGS:
        value = data.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            data[key] = os.path.join(p.parent, value)
    return data


def preset_settings(name: str) -> dict[str, Any]:
    """The settings a preset fixes; flags given explicitly still win over them."""
    if name == "min-char-rnn":
        # Seed 002: H=100, T=25, batch 1, Adagrad 0.1 with eps inside the sqrt, clip +-5,
        # N(0, 0.01^2) weights, smoothed loss and a 200-character sample every 100 steps,
        # no validation split and a constant learning rate. The seed clips the gradient of the
        # loss summed over the window at +-5; ours is the mean's gradient, 1/T of it, hence
        # 5/T here (and eps/T^2 in the optimizer): the same updates, step for step. The seed has
        # one hidden bias where PyTorch's layout has two, hence single_bias.
        return dict(
            cell="rnn", hidden_size=100, num_layers=1, seq_len=25, batch_size=1, optimizer="adagrad", lr=0.1,
            lr_schedule="constant", clip_norm=0.0, clip_value=5.0 / 25, init="normal", val_frac=0.0,
            single_bias=True,
            smooth=0.999, sample_every=100, sample_length=200, sample_temperature=1.0, log_every=100,
            dtype="float64",
        )
    raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")


def auto_hidden_size(n_chars: int) -> int:
    """A model size that suits a text of `n_chars` characters and trains well in minutes on a
    small CPU.

    Small texts are memorised by large models long before they generalise, and on a CPU budget
    more updates of a mid-sized model beat fewer of a wide one (on tiny-shakespeare, 90 s: H=256
    reached 1.69 nats/char of validation loss where H=512 reached 2.06); only texts of several
    million characters justify the wider network.
    """
    if n_chars < 100_000:
        return 128
    if n_chars < 5_000_000:
        return 256
    return 512


def resolve_auto(cfg: TrainConfig) -> TrainConfig:
    """cfg with its automatic cell, init and learning rate chosen (those that depend on the text's
    size are chosen where the text is read). For fine-tuning, the cell is the source model's, set
    before this is called."""
    cell = DEFAULT_CELL if cfg.cell == AUTO else cfg.cell
    by_cell = cell_module(cell)
    return cfg.replace(cell=cell, init=by_cell.DEFAULT_INIT if cfg.init == AUTO else cfg.init,
                       lr=by_cell.DEFAULT_LR if cfg.lr == 0 else cfg.lr)


def validate(cfg: TrainConfig) -> None:
    """Refuse settings that cannot work, with the flag's name in the message."""

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    need(cfg.encoding in ENCODINGS, f"--encoding must be {' or '.join(ENCODINGS)}, got {cfg.encoding!r}")
    need(0.0 <= cfg.val_frac <= 0.5, f"--val-frac must be in [0, 0.5], got {cfg.val_frac}")
    need(cfg.hidden_size >= 0, f"--hidden-size must be positive, got {cfg.hidden_size}")
    need(cfg.num_layers >= 1, f"--num-layers must be >= 1, got {cfg.num_layers}")
    need(cfg.cell in cell_names() or cfg.cell == AUTO, f"--cell must be one of {', '.join(cell_names())}, got {cfg.cell!r}")
    need(0.0 <= cfg.dropout < 1.0, f"--dropout must be in [0, 1), got {cfg.dropout}")
    need(cfg.seq_len >= 1, f"--seq-len must be >= 1, got {cfg.seq_len}")
    need(cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}")
    need(cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
    need(cfg.lr >= 0, f"--lr must be positive (or 0 for the cell's default), got {cfg.lr}")
    need(cfg.lr_schedule in SCHEDULES, f"--lr-schedule must be one of {', '.join(SCHEDULES)}")
    need(0 < cfg.lr_decay <= 1, f"--lr-decay must be in (0, 1], got {cfg.lr_decay}")
    need(cfg.lr_decay_every >= 0, "--lr-decay-every must be >= 0")
    need(0 <= cfg.min_lr_frac <= 1, f"--min-lr-frac must be in [0, 1], got {cfg.min_lr_frac}")
    need(cfg.warmup_steps >= 0, "--warmup-steps must be >= 0")
    need(cfg.weight_decay >= 0, "--weight-decay must be >= 0")
    need(cfg.momentum >= 0, "--momentum must be >= 0")
    need(cfg.clip_norm >= 0, f"--clip-norm must be >= 0 (0 turns it off), got {cfg.clip_norm}")
    need(cfg.clip_value >= 0, f"--clip-value must be >= 0 (0 turns it off), got {cfg.clip_value}")
    need(cfg.steps >= 0, f"--steps must be >= 0, got {cfg.steps}")
    need(cfg.time_budget >= 0, f"--time-budget must be >= 0 seconds, got {cfg.time_budget}")
    need(cfg.log_every >= 1, "--log-every must be >= 1")
    need(cfg.eval_every >= 0, "--eval-every must be >= 0")
    need(cfg.eval_max_chars >= 0, "--eval-max-chars must be >= 0")
    need(cfg.sample_every >= 0, "--sample-every must be >= 0")
    need(1 <= cfg.sample_length <= MAX_SAMPLE_LENGTH, f"--sample-length must be between 1 and {MAX_SAMPLE_LENGTH:,}")
    need(cfg.sample_temperature > 0, "--sample-temperature must be positive")
    need(0 <= cfg.smooth < 1, "--smooth must be in [0, 1)")
    need(cfg.threads >= 0, "--threads must be >= 0")
    need(cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}")
    need(cfg.max_divergences >= 0, "--max-divergences must be >= 0")
    need(cfg.patience >= 0, "--patience must be >= 0")
    need(cfg.init in INITS or cfg.init == AUTO, f"--init must be one of {', '.join(INITS)}, got {cfg.init!r}")
    need(cfg.backend in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    need(cfg.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    need(cfg.device == "cpu" or cfg.backend == "torch", f"--device {cfg.device} needs --backend torch")
    need(cfg.dtype in DTYPES, f"--dtype must be {' or '.join(DTYPES)}, got {cfg.dtype!r}")
    need(cfg.preset is None or cfg.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}")
    need((cfg.text is None) != (cfg.dataset is None), "give either a text file or --dataset, not both")
    need(not cfg.extend_vocab or cfg.init_from is not None, "--extend-vocab needs --init-from")
    need(not (cfg.init_from and cfg.preset), "--preset builds a new model; it cannot be combined with --init-from")
