"""Every setting of a training run, declared once: its type, default, choices, check and help.

`SETTINGS` is the one table. From it come the two configurations (`TrainConfig` for the language
model, `TaskConfig` for the classifier and the tagger), the command line's flags (cli/_common.py),
the keys of config files and config.json, `charrnn.fit`'s keyword arguments, and the checks of
every value wherever it comes from (a flag, a file, a checkpoint, Python).

A request names the settings given (`given`: a dict, checked by `check_given`); what was not given
is resolved once, when the run is set up and the text and any source model are known
(`resolve_train`, `resolve_task`), into a configuration with every value concrete. Nothing else
needs to know which settings were given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .core import CELLS as _CELL_MODULES, cell_names  # the registered cells, asked at the time of use
from .errors import ConfigError, show_path
from .io.readers import (MAX_DOCUMENT_BYTES, check_path, parse_json, parse_toml, path_setting_problem, read_text,
                         reader)
from .model.params import DTYPES, INITS, cell_module  # the model's dtypes and initialisations

# Every list of choices a setting has, here once: validation, the command line's flags and the
# modules that act on a choice all read these.
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
PRESETS = ("min-char-rnn",)
ENCODINGS = ("utf-8", "bytes")  # a token is a code point, or a byte (binary or unknown data)
DATASETS = ("shakespeare",)  # built-in corpora of the language model (data/shakespeare.py)
EXPORT_FORMATS = ("torch", "keras", "onnx")  # what `charrnn export` writes (interop/keras.py, interop/onnx.py)
BACKENDS = ("numpy", "torch")  # what computes training, sampling and evaluation (torch: optional extra)
DEVICES = ("cpu", "cuda", "mps")  # where the torch backend runs; the NumPy engine runs on the CPU only
TASKS = ("classify", "tag")  # the many-to-one network and the tagger
TASK_DATASETS = {"classify": ("wordlang",), "tag": ("pytokens",)}  # built-in data of each (data/task_corpora.py)
BALANCE = ("none", "weights", "sampling")  # skewed classes: as they come, class weights, balanced batches
TORCH_INSTALL = "pip install 'charrnn[torch]'"  # said by every error that needs PyTorch
MAX_SAMPLE_LENGTH = 1_000_000  # training-time samples are read by people, not stored corpora
MAX_BEAM = 1024  # the tagger's widest beam
AUTO = "auto"  # a string setting chosen when the run is set up (numbers use 0 for that)

# What "auto" means, chosen by measurement (BENCHMARKS.md, "Choosing the defaults"): an LSTM of
# the automatic size, PyTorch's init and a learning rate of 5e-3 scored best over 22 candidates on
# prose and code. Each cell declares its own default init and learning rate (DEFAULT_INIT,
# DEFAULT_LR): the tanh RNN keeps the settings measured for it before the gated cells arrived.
DEFAULT_CELL = "lstm"

LM, TASK = "lm", "task"  # the two configurations a setting may belong to
_SAME = object()  # a task default equal to the language model's


@dataclass(frozen=True)
class Setting:
    """One setting. `default` is the language model's; `task_default` the classifier's and
    tagger's where it differs. `low` / `high` bound numbers (`above`: strictly); `choices` is a
    tuple or a function giving one when asked (cells can be registered at run time)."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    help: str
    configs: tuple[str, ...] = (LM, TASK)
    task_default: Any = _SAME
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    optional: bool = False  # None is a value (an unset path or name)
    low: float | None = None
    high: float | None = None
    above: bool = False  # `low` itself is refused
    below: bool = False  # `high` itself is refused
    resumable: bool = False  # a resumed run may change it: it does not change what the run computes
    flag: bool = True  # has a --flag (the text and data paths are positional)
    cli: str | None = None  # the flag's name where it is not --<name>
    auto: str | None = None  # what the default 0 / "auto" means, for the help text
    many: bool = False  # a list of strings is a value too (the text's files)
    also: str = ""  # said after a refused value: what 0 means, say

    @property
    def option(self) -> str:
        return self.cli or "--" + self.name.replace("_", "-")

    def default_for(self, config: str) -> Any:
        return self.default if config == LM or self.task_default is _SAME else self.task_default

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices


def _cells() -> tuple[str, ...]:
    return cell_names()


def _help_by_cell(key: str) -> str:
    """The cells' own defaults (their DEFAULT_INIT or DEFAULT_LR), for the help text."""
    values = {c: getattr(m, key) for c, m in _CELL_MODULES.items()}
    return ", ".join(f"{c} {v:g}" if isinstance(v, float) else f"{c} {v}" for c, v in values.items())


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # ---- data
    S("task", str, "classify", "classify (TSV text<TAB>label) or tag (JSON Lines, a tag per character): the command "
      "says which", (TASK,), choices=TASKS, flag=False),
    S("text", str, None, "UTF-8 text to learn: a file, a folder (every file in it, recursively) or a list of "
      "them (or use --dataset)", (LM,), optional=True, flag=False, resumable=True, many=True),
    S("data", str, None, "the labelled training file", (TASK,), optional=True, flag=False),
    S("dataset", str, None, "a built-in corpus instead of a file", optional=True),
    S("val", str, None, "validation file in the same format (default: a seeded random --val-frac of the training "
      "file, stratified by class for classify)", (TASK,), optional=True),
    S("encoding", str, "utf-8", "utf-8 (tokens are characters) or bytes (raw bytes, for any file)", (LM,),
      choices=ENCODINGS),
    S("val_frac", float, 0.1, "fraction held out for validation: the last part of the text (classify / tag: a "
      "seeded random part of the training file when no --val is given); 0 = none", low=0.0, high=0.5),
    S("balance", str, "none", "skewed classes: none, weights (loss weighted by 1 / class frequency) or sampling "
      "(balanced batches); classify only", (TASK,), choices=BALANCE),
    # ---- model
    S("cell", str, AUTO, "recurrent cell: rnn (Elman's tanh RNN, as in min-char-rnn), lstm or gru (PyTorch's equations)",
      task_default="lstm", choices=_cells, auto=f"{DEFAULT_CELL}; fine-tuning keeps the model's"),
    S("hidden_size", int, 0, "hidden units per layer", task_default=128, low=0, also="0 chooses from the text's size",
      auto="from the text's size: 128, 256 or 512"),
    S("num_layers", int, 1, "stacked recurrent layers", low=1),
    S("dropout", float, 0.0, "dropout probability between layers and before the output layer, in training only",
      low=0.0, high=1.0, below=True),
    S("residual", bool, False, "residual connections: from the second layer up, each layer's output is added to its "
      "input (x + dropout(cell(x)))"),
    S("layer_norm", bool, False, "layer normalisation (nn.LayerNorm, learned gain and bias) of each layer's input "
      "from the second layer up and of the top before the output layer"),
    S("feedback", bool, False, "feed the previous tag back into the first layer (R y_(t-1)); teacher "
      "forcing in training, the model's own tags (greedy or --beam) at inference", (TASK,),
      cli="--output-recurrence"),
    S("init", str, AUTO, "weight initialisation", task_default="orthogonal", choices=INITS,
      auto="by cell: " + _help_by_cell("DEFAULT_INIT")),
    S("dtype", str, "float32", "float32, or float64 for exactness at about half the speed", choices=DTYPES),
    # ---- optimisation
    S("seq_len", int, 64, "BPTT window T; the hidden state is carried across windows", (LM,), low=1),
    S("batch_size", int, 32, "parallel streams B through the text (classify / tag: texts per step, grouped by "
      "length)", low=1),
    S("optimizer", str, "adam", "update rule", choices=OPTIMIZERS),
    S("lr", float, 0.0, "peak learning rate", task_default=3e-3, low=0.0, also="0 chooses by cell",
      auto="by cell: " + _help_by_cell("DEFAULT_LR")),
    S("lr_schedule", str, "cosine", "constant | step (x --lr-decay per epoch or --lr-decay-every) | cosine (to "
      "--lr x --min-lr-frac)", choices=SCHEDULES),
    S("lr_decay", float, 0.97, "step schedule factor", low=0.0, high=1.0, above=True),
    S("lr_decay_every", int, 0, "step schedule period in steps (0 = one epoch)", low=0),
    S("min_lr_frac", float, 0.1, "cosine schedule: final lr as a fraction of --lr", low=0.0, high=1.0),
    S("warmup_steps", int, 0, "linear warm-up steps", low=0),
    S("weight_decay", float, 0.0, "L2 penalty (decoupled for adamw)", low=0.0),
    S("momentum", float, 0.0, "sgd / rmsprop momentum", low=0.0),
    S("clip_norm", float, 1.0, "clip the global gradient norm to this (0 = off)", low=0.0),
    S("clip_value", float, 0.0, "clamp every gradient element to +-value (0 = off); Karpathy's min-char-rnn uses 5", low=0.0),
    S("single_bias", bool, False, "train one hidden bias per layer (min-char-rnn's one bh); rnn.bias_hh keeps its initial "
      "value", (LM,)),
    S("steps", int, 0, "total optimizer steps of the run, resumed ones included", low=0, resumable=True,
      auto="a language model: the time budget (15 min unless --time-budget), stopping early when validation "
      "stops improving; classify / tag and a text too short to validate: 10 epochs and at least 500 (2000) steps, "
      "at most 15 min"),
    S("time_budget", float, 0.0, "seconds to train in this invocation (0 = no limit)", low=0.0, resumable=True),
    S("patience", int, 0, "stop after this many validations without a new best (0 = never; runs without --steps "
      "use 5)", low=0, resumable=True),
    S("plan", str, None, "what the time-budget plan chose for a run without --steps, and why (train/plan.py): a "
      "record, never read", (LM,), optional=True, flag=False, resumable=True),
    # ---- reporting and checkpoints
    S("log_every", int, 20, "steps between metrics lines", task_default=50, low=1, resumable=True),
    S("eval_every", int, 500, "steps between validation + checkpoint (0 = at the end only)", task_default=200, low=0,
      resumable=True),
    S("eval_seconds", float, 0.0, "seconds of training between validations, turned into steps once from the speed "
      "of the first steps (0 = by --eval-every alone; runs with a time budget that give no --eval-every: a "
      "twentieth of it)", low=0.0, resumable=True),
    S("eval_max_chars", int, 0, "characters scored by a periodic validation (0 = a fifth of those trained in "
      "between; the last validation scores all)", (LM,), low=0, resumable=True),
    S("sample_every", int, 1000, "steps between samples written to samples.txt (0 = never)", (LM,), low=0,
      resumable=True),
    S("sample_seconds", float, 0.0, "seconds of training between samples, turned into steps once from the speed of "
      "the first steps (0 = by --sample-every alone; runs with a time budget that give no --sample-every: an "
      "eighth of it)", (LM,), low=0.0, resumable=True),
    S("sample_length", int, 200, "characters per training-time sample", (LM,), low=1, high=MAX_SAMPLE_LENGTH,
      resumable=True),
    S("sample_temperature", float, 0.8, "temperature of training-time samples", (LM,), low=0.0, above=True,
      resumable=True),
    S("keep_every", int, 0, "also keep a numbered checkpoint every this many steps (step-000500.safetensors; 0 = "
      "none): any of them can be sampled from, evaluated or continued with --resume FILE --out NEW", low=0,
      resumable=True),
    S("keep_last", int, 0, "with --keep-every: keep only this many of the newest numbered checkpoints (0 = all)",
      low=0, resumable=True),
    S("smooth", float, 0.99, "smoothing factor of the reported training loss (an average of the steps' losses, "
      "bias-corrected)", task_default=0.95, low=0.0, high=1.0, below=True),
    S("seed", int, 1337, "seed of the weights and every random generator of the run (classify / tag: of the "
      "split and the batches too)", low=0),
    S("threads", int, 0, "cores to use, as worker threads with one BLAS thread each (0 = the default: "
      "CHARRNN_THREADS, else for a language model one worker or every usable core as measured for its "
      "configuration, kept in the user's cache, and on resume the count its checkpoint records; else every "
      "usable core)", low=0, resumable=True),
    S("backend", str, "numpy", "numpy (the exact reference) or torch (nn.RNN/LSTM/GRU; GPUs; data-parallel under "
      "torchrun; classify / tag: one process); either one resumes the other's runs", choices=BACKENDS, resumable=True),
    S("device", str, "cpu", "where the torch backend computes: cpu, cuda or mps", choices=DEVICES, resumable=True),
    S("deterministic", bool, False, "torch backend: deterministic GPU kernels and full float32 (no TF32), at some "
      "speed", resumable=True),
    S("max_divergences", int, 5, "NaN/inf recoveries (restore, halve lr) before giving up", low=0, resumable=True),
    S("preset", str, None, "min-char-rnn: Karpathy's min-char-rnn program, step for step (H=100, T=25, B=1, Adagrad)", (LM,), choices=PRESETS,
      optional=True),
    # ---- fine-tuning
    S("init_from", str, None, "fine-tune: start from the weights, cell and vocabulary of this run (its best "
      "checkpoint) or checkpoint file; the optimizer starts fresh", (LM,), optional=True),
    S("extend_vocab", bool, False, "with --init-from: add the new text's unseen characters to the vocabulary", (LM,)),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# Settings that name files: a config file's relative paths are taken from the file's folder.
PATH_SETTINGS = ("text", "init_from")


def settings_of(config: str) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if config in s.configs)


class _Config:
    """What both configurations share: made by `_make`, one field per setting of the table."""

    CONFIG: str = LM

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "config") -> Any:
        """A saved configuration (config.json, a checkpoint's): unknown keys and values of the
        wrong type or range are refused, missing keys keep their defaults."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the configuration must be an object")
        return cls().replace(**check_given(d, cls.CONFIG, source))


def _make(name: str, config: str, doc: str) -> type:
    def kind(s: Setting) -> Any:
        k = s.kind | list[str] if s.many else s.kind
        return k | None if s.optional else k

    fields = [(s.name, kind(s), dataclasses.field(default=s.default_for(config))) for s in settings_of(config)]
    cls = dataclasses.make_dataclass(name, fields, bases=(_Config,), namespace={"CONFIG": config, "__doc__": doc})
    cls.__module__ = __name__
    return cls


TrainConfig = _make("TrainConfig", LM, "A language model's run: every setting of the table that `charrnn train` has.")
TaskConfig = _make("TaskConfig", TASK, "A classifier's or tagger's run: the settings of `charrnn classify train` / "
                   "`tag train`.")


# ------------------------------------------------------------------------------------------------
# checking values


def check_value(s: Setting, value: Any, source: str | None = None) -> Any:
    """`value` for setting `s`, checked (type, range, choices) and normalised (an int where a
    float belongs becomes a float). `source` None names the flag, else "source: name"."""
    where = s.option if source is None else f"{source}: {s.name}"
    if value is None:
        if s.optional:
            return None
        raise ConfigError(f"{where} cannot be empty")
    if s.many and isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where} must be a path or a list of paths, got {value!r}")
        return list(value)
    if s.kind is bool or isinstance(value, bool):
        if not (s.kind is bool and isinstance(value, bool)):
            raise ConfigError(f"{where} must {'' if s.kind is bool else 'not '}be true or false, got {value!r}")
        return value
    if s.kind is int:
        if not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif s.kind is float:
        try:
            finite = isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        value = float(value)
    elif not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if s.kind in (int, float):
        low_ok = s.low is None or (value > s.low if s.above else value >= s.low)
        high_ok = s.high is None or (value < s.high if s.below else value <= s.high)
        if not (low_ok and high_ok):
            raise ConfigError(f"{where} must be {_range(s)}, got {value!r}" + (f" ({s.also})" if s.also else ""))
    allowed = s.allowed()
    if allowed is not None and value not in allowed and not (s.default == AUTO and value == AUTO):
        raise ConfigError(f"{where} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _range(s: Setting) -> str:
    if s.low is not None and s.high is not None:
        close = ")" if s.below else "]"
        return f"in {'(' if s.above else '['}{s.low:g}, {s.high:g}{close}"
    if s.low is not None:
        return f"> {s.low:g}" if s.above else f">= {s.low:g}"
    return f"<= {s.high:g}"


def check_given(given: Mapping[str, Any], config: str, source: str | None = None) -> dict[str, Any]:
    """The settings of a request (flags, a config file, fit's keywords, a saved configuration),
    each checked by its declaration; a key that is no setting of this configuration is refused."""
    out = {}
    for key, value in given.items():
        s = BY_NAME.get(key)
        if s is None or config not in s.configs:
            raise ConfigError(f"{source or 'settings'}: unknown setting {key!r}")
        out[key] = check_value(s, value, source)
    return out


def validate(cfg: Any) -> None:
    """Every value of a configuration by its declaration, then the rules between settings."""
    for s in settings_of(cfg.CONFIG):
        check_value(s, getattr(cfg, s.name))
    if cfg.CONFIG == LM:
        _rules_train(cfg)
    else:
        _rules_task(cfg)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _rules_train(cfg: Any) -> None:
    _need((cfg.text is None) != (cfg.dataset is None), "give either a text file or --dataset, not both")
    _need(cfg.dataset is None or cfg.dataset in DATASETS,
          f"unknown --dataset {cfg.dataset!r}; available: {', '.join(DATASETS)}")
    _need(cfg.device == "cpu" or cfg.backend == "torch", f"--device {cfg.device} needs --backend torch")
    _need(not cfg.extend_vocab or cfg.init_from is not None, "--extend-vocab needs --init-from")
    _need(not (cfg.init_from and cfg.preset), "--preset builds a new model; it cannot be combined with --init-from")


def _rules_task(cfg: Any) -> None:
    _need(cfg.device == "cpu" or cfg.backend == "torch", f"--device {cfg.device} needs --backend torch")
    _need(cfg.task in TASKS, f"task must be one of {', '.join(TASKS)}")
    _need((cfg.data is None) != (cfg.dataset is None), "give either a data file or --dataset, not both")
    if cfg.dataset is not None:
        _need(cfg.dataset in TASK_DATASETS[cfg.task],
              f"unknown --dataset {cfg.dataset!r} for {cfg.task}; available: {', '.join(TASK_DATASETS[cfg.task])}")
    _need(cfg.task == "classify" or cfg.balance == "none", "--balance is for classification")
    _need(cfg.task == "tag" or not cfg.feedback, "--output-recurrence is for tagging")
    _need(cfg.cell != AUTO and cfg.init != AUTO, "the task models take a cell and an init by name")
    _need(cfg.hidden_size >= 1, f"--hidden-size must be >= 1, got {cfg.hidden_size}")


# ------------------------------------------------------------------------------------------------
# config files


@reader("config file (--config)", "toml or json")
def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML or JSON file (by its suffix; otherwise JSON when it starts with "{"),
    keyed as config.json is, with relative paths made relative to the file's folder. Unknown
    keys and wrong types are refused by `check_given`, naming the file and the key; a path setting
    that is empty or holds a control character (a NUL above all) is refused here."""
    s = check_path(path, ConfigError, "config file")
    p, where = Path(s), show_path(s)
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"{where}: no such config file")
    # a regular file only: a FIFO is refused, never waited on
    text = read_text(s, ConfigError, "config file", MAX_DOCUMENT_BYTES)
    as_json = p.suffix.lower() == ".json" or (p.suffix.lower() != ".toml" and text.lstrip().startswith("{"))
    data = parse_json(text, where, ConfigError) if as_json else parse_toml(text, where, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the settings must be an object of key: value pairs")
    for key in PATH_SETTINGS:
        value = data.get(key)
        paths = value if isinstance(value, list) else [value]
        if all(isinstance(v, str) for v in paths):
            for v in paths:
                problem = path_setting_problem(v)
                if problem is not None:
                    raise ConfigError(f"{where}: {key} {problem}")
            joined = [v if os.path.isabs(v) else os.path.join(p.parent, v) for v in paths]
            data[key] = joined if isinstance(value, list) else joined[0]
    return data


# ------------------------------------------------------------------------------------------------
# resolving a request: what was not given, chosen once


def preset_settings(name: str) -> dict[str, Any]:
    """The settings a preset fixes; settings given explicitly still win over them."""
    if name == "min-char-rnn":
        # Karpathy's min-char-rnn: H=100, T=25, batch 1, Adagrad 0.1 with eps inside the sqrt, clip +-5,
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


def requested_train(given: Mapping[str, Any]) -> Any:
    """The configuration a request stands for before the text is read: the defaults, under a
    preset's settings, under the settings given. The automatic choices stay AUTO / 0 here."""
    preset = given.get("preset")
    base = preset_settings(preset) if preset else {}
    cfg = TrainConfig(**(base | dict(given)))
    validate(cfg)
    return cfg


def auto_hidden_size(n_chars: int) -> int:
    """A model size that suits a text of `n_chars` characters and trains well in minutes on a
    small CPU: small texts are memorised by large models long before they generalise, and on a
    CPU budget more updates of a mid-sized model beat fewer of a wide one (BENCHMARKS.md)."""
    if n_chars < 100_000:
        return 128
    if n_chars < 5_000_000:
        return 256
    return 512


# The default plan, when no --steps is given: a language model that validates trains for the time
# budget (--time-budget, or AUTO_TIME_BUDGET seconds) on the model train/plan.py chooses for it;
# any other run (a classifier or tagger, or a text too short to hold out a validation split)
# trains this many epochs but at least AUTO_MIN_STEPS (a small text needs many passes), within the
# budget. Either way it validates about AUTO_EVALS times and stops early after AUTO_PATIENCE
# validations without a new best; best.safetensors keeps the best model, so running past the
# best costs time, never quality.
AUTO_EPOCHS = 10
AUTO_MIN_STEPS = {LM: 2000, TASK: 500}
AUTO_TIME_BUDGET = 900.0
AUTO_EVALS = 20
AUTO_PATIENCE = 5
# Samples a run with a time budget shows over it, when --sample-every is not given.
AUTO_SAMPLES = 8


@dataclass(frozen=True)
class Facts:
    """What a run's automatic choices depend on, known once its data (and any source model) are read."""

    n_tokens: int = 0  # the language model's text, in tokens
    windows_per_epoch: int = 1  # steps in one pass over the training data
    validates: bool = True  # the run holds data out for validation


def adopt_source(cfg: Any, given: Iterable[str], source: Mapping[str, Any]) -> Any:
    """A fine-tuning run's configuration: the source model's cell, sizes, stack options and encoding
    (asking for others is refused by name), and its dtype and dropout unless given."""
    given = set(given)
    kept = {k: source[k] for k in ("cell", "hidden_size", "num_layers", "residual", "layer_norm", "encoding")}
    clash = sorted(f"{BY_NAME[k].option} {getattr(cfg, k)}" for k in kept if k in given and getattr(cfg, k) != kept[k])
    if clash:
        mine = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in kept.items())
        raise ConfigError(f"--init-from keeps the model of {source['path']} ({mine}): drop {', '.join(clash)}")
    return cfg.replace(**kept, **{k: source[k] for k in ("dtype", "dropout") if k not in given})


def resolve(cfg: Any, given: Iterable[str], facts: Facts) -> Any:
    """The configuration that runs: `cfg` (the request: defaults, preset and given settings, a
    fine-tuning source's model adopted) with every automatic choice made from `facts`; a setting
    named in `given` is kept as given, even where it equals the default. The one place where
    "not given" is decided."""
    given = set(given)
    if cfg.cell == AUTO:
        cfg = cfg.replace(cell=DEFAULT_CELL)
    by_cell = cell_module(cfg.cell)  # the cell's own defaults
    if cfg.init == AUTO:
        cfg = cfg.replace(init=by_cell.DEFAULT_INIT)
    if cfg.lr == 0:
        cfg = cfg.replace(lr=by_cell.DEFAULT_LR)
    if cfg.CONFIG == LM and cfg.hidden_size == 0:
        cfg = cfg.replace(hidden_size=auto_hidden_size(facts.n_tokens))
    plan: dict[str, Any] = {}
    if cfg.CONFIG == LM and facts.validates and not cfg.steps:  # the time-budget plan
        plan["time_budget"] = cfg.time_budget or AUTO_TIME_BUDGET
    elif not (cfg.steps or cfg.time_budget):
        plan["steps"] = steps = max(AUTO_EPOCHS * facts.windows_per_epoch, AUTO_MIN_STEPS[cfg.CONFIG])
        plan["time_budget"] = AUTO_TIME_BUDGET
        if facts.validates and "eval_every" not in given:
            plan["eval_every"] = min(cfg.eval_every, max(50, steps // AUTO_EVALS))
    if plan and facts.validates and "patience" not in given:
        plan["patience"] = AUTO_PATIENCE
    cfg = cfg.replace(**plan)
    # Under a time budget the intervals not given follow the clock: a short run still has a few
    # samples and a curve (the trainer turns seconds into steps once it has measured its speed).
    if cfg.time_budget:
        if facts.validates and "eval_every" not in given and "eval_seconds" not in given:
            cfg = cfg.replace(eval_seconds=cfg.time_budget / AUTO_EVALS)
        if cfg.CONFIG == LM and cfg.sample_every and "sample_every" not in given and "sample_seconds" not in given:
            cfg = cfg.replace(sample_seconds=cfg.time_budget / AUTO_SAMPLES)
    return cfg


def resumed(saved: Any, given: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the configuration a resumed run continues with, the settings it changes): those given that
    a resume may change; any other given setting that differs from the saved one is refused."""
    changes = {k: v for k, v in given.items() if BY_NAME[k].resumable}
    fixed = sorted(BY_NAME[k].option for k, v in given.items()
                   if not BY_NAME[k].resumable and getattr(saved, k) != v)
    if fixed:
        raise ConfigError(f"cannot change {', '.join(fixed)} when resuming")
    cfg = saved.replace(**changes)
    validate(cfg)
    return cfg, changes


def given_of(cfg: Any) -> dict[str, Any]:
    """A configuration made in Python (`Trainer(TrainConfig(...))`) as a request: the settings
    that differ from the defaults (a default given that way is not seen as given)."""
    default = type(cfg)()
    return {k: v for k, v in cfg.to_dict().items() if v != getattr(default, k) and k != "task"}
