"""Setting a run up: fresh in a new run directory, or resumed from a checkpoint.

Either way the result is a `Setup`, every object the training loop works on, positioned where the
run stands. `Setup.save` and `Setup.restore` are the one place a run is written to and read back
from a checkpoint: the loop saves through the first and rolls back after a divergence through the
second, as a resume does.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..io import checkpoint as ckpt
from ..settings import (DATASETS, PATH_SETTINGS, TrainConfig, auto_hidden_size, explicit_settings, preset_settings,
                        resolve_auto, validate)
from ..data.text import (MIN_SPLIT_TOKENS, Batcher, EncodedText, Vocab, collect_vocab, encode_file,
                         fit_batch_shape, ids_digest, load_encoded, name_symbols, split_train_val)
from ..errors import CheckpointError, ConfigError, DataError
from ..model import CharRNN, count_parameters
from ..model.params import gates, transplant
from ..optim import Optimizer, make_optimizer
from ..io.lock import RunLock
from ..io.writer import atomic_copy, atomic_write_bytes, replace_durably
from ..threads import requested_threads
from .schedule import optimizer_options
from .state import TrainState, restore_generator

# Settings a resumed run may change; every other one would change what the run computes.
RESUMABLE = {"steps", "time_budget", "log_every", "eval_every", "eval_max_chars", "sample_every",
             "sample_length", "sample_temperature", "threads", "max_divergences", "patience", "text",
             "backend", "device", "deterministic"}
# When neither --steps nor --time-budget is given: this many epochs but at least AUTO_MIN_STEPS
# (a small text needs many passes), within this many seconds, validating about AUTO_EVALS times
# and stopping early after AUTO_PATIENCE validations without a new best. best.safetensors keeps
# the best model, so running past the best costs time, never quality.
AUTO_EPOCHS = 10
AUTO_MIN_STEPS = 2000
AUTO_TIME_BUDGET = 900.0
AUTO_EVALS = 20
AUTO_PATIENCE = 5
# Refuse a run whose training memory estimate exceeds this fraction of physical memory.
MEMORY_FRACTION = 0.8

Say = Callable[[str], None]


@dataclass
class _Text:
    """The run's text, cut into its training and validation parts."""

    cfg: TrainConfig  # with the automatic plan filled in, which depends on the text's size
    encoded: EncodedText  # the whole text, memory-mapped
    batcher: Batcher  # B streams over the training part
    val_ids: np.ndarray | None  # the validation part (None: the run does not validate)
    n_train: int  # tokens in the training part
    n_val: int  # tokens in the validation part


@dataclass
class Setup:
    """A run ready to train: everything the loop reads and changes."""

    run_dir: Path
    cfg: TrainConfig  # what runs: every default and automatic choice filled in
    encoded: EncodedText  # the whole text, memory-mapped from the run's tokens.bin
    batcher: Batcher  # B streams over the training part; its position is part of the run
    val_ids: np.ndarray | None  # the validation part (None: the run does not validate)
    n_train: int  # tokens in the training part
    n_val: int  # tokens in the validation part
    model: CharRNN
    optimizer: Optimizer  # holds the model's parameter arrays: they are updated in place, never replaced
    sample_rng: np.random.Generator  # draws the training-time samples, and nothing else
    hidden: np.ndarray  # (L, B, H), carried from one window into the next (the engine's own form while training)
    state: TrainState
    engine: Any = None  # what computes the steps (train/engine.py), attached by the trainer; None: NumPy
    lock: RunLock | None = None  # held from set-up on: this process alone writes to run_dir

    @property
    def vocab(self) -> Vocab:
        return self.encoded.vocab

    @property
    def batch_size(self) -> int:
        return self.batcher.batch_size

    @property
    def seq_len(self) -> int:
        return self.batcher.seq_len

    def save(self, path: Path) -> None:
        """Write the whole run to the checkpoint `path`, atomically. Under torchrun every process
        calls this at the same step (the carried state is gathered) and rank 0 alone writes."""
        hidden = self.hidden
        if self.engine is not None:  # the engine's parameters and state, as NumPy arrays
            hidden = self.engine.pull(self)
            if not self.engine.writes:
                return
        self.state.data = self.batcher.state_dict()
        self.state.sample_rng = self.sample_rng.bit_generator.state
        self.state.dropout_rng = self.model.dropout_rng.bit_generator.state
        self.state.workers = self.model.workers_for(self.batch_size)
        ckpt.save_checkpoint(path, self.model, self.vocab, self.cfg, self.state.to_json(), self.optimizer, hidden)

    def restore(self, c: ckpt.Checkpoint) -> None:
        """Continue from checkpoint `c` of this run: parameters (copied into the arrays the
        optimizer holds), optimizer slots, data position, generator, carried state and counters."""
        for name, p in self.model.params.items():
            if p is not c.model.params[name]:  # a resume's model is the checkpoint's own
                p[...] = c.model.params[name]
        self.optimizer.load_state_dict(c.optimizer_arrays, c.optimizer_meta)
        self.batcher.load_state_dict(c.state.get("data"))
        self.sample_rng = restore_generator(c.state.get("sample_rng"), c.path)
        if c.state.get("dropout_rng") is not None:  # absent from checkpoints made before dropout
            self.model.dropout_rng = restore_generator(c.state["dropout_rng"], c.path)
        if c.hidden is None:
            raise CheckpointError(f"{c.path}: the carried hidden state is missing")
        self.hidden = c.hidden
        self.state = TrainState.from_json(c.state, c.path)
        if self.engine is not None:
            self.engine.push(self)


# ------------------------------------------------------------------------------------------------
# a fresh run


def fresh_run(cfg: TrainConfig, run_dir: Path, force: bool, say: Say, asked: Iterable[str] | None = None) -> Setup:
    """Set a new run up in `run_dir` (replacing one there only with `force`) and write its first
    checkpoint and config.json. `asked`: the names of the settings the user gave (see config.explicit_settings)."""
    if cfg.preset:
        cfg = TrainConfig(**(cfg.to_dict() | preset_settings(cfg.preset) | explicit_settings(cfg, asked)))
    validate(cfg)
    requested_threads()  # CHARRNN_THREADS: refused now, not at the first step after an old run is gone
    d = run_dir
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--out {d} exists and is not a directory")
    replacing = d.is_dir() and any((d / n).exists() for n in (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG))
    if replacing and not force:
        raise ConfigError(f"{d} already holds a run: use --resume {d} to continue it, or --force to replace it")
    text_path = _text_path(cfg)
    source = None
    if cfg.init_from is not None:
        source = _fine_tuning_source(cfg.init_from)
        cfg = _adopt_model(cfg, source, asked)
    # Nothing is left half-made: the text is encoded under a temporary name and everything is
    # checked before an old run (--force) is removed; on any failure, even Ctrl-C, what this
    # call created is removed again.
    created, lock = _claim_run_dir(d)
    staged = d / f".{ckpt.TOKENS}.new"
    written: list[Path] = []
    try:
        _remove_temporaries(d)  # garbage of a killed process, never part of a run
        if source is None:
            encoded = encode_file(text_path, staged, encoding=cfg.encoding)
        else:
            encoded = _encode_for_fine_tuning(text_path, staged, source.vocab, cfg.extend_vocab)
        text = _prepare_data(_resolve(cfg, encoded, say), encoded, say, asked)
        cfg = text.cfg
        model = CharRNN(encoded.vocab.size, cfg.hidden_size, cfg.num_layers, cfg.dtype, cfg.seed, cfg.init,
                        cell=cfg.cell, dropout=cfg.dropout)
        if source is not None:  # its weights, with the new symbols' slices as initialised just now
            transplant(source.model.params, model.params, source.vocab.positions_in(encoded.vocab), model.cell)
        optimizer = make_optimizer(cfg.optimizer, model.params, cfg.lr, **optimizer_options(cfg))
        B, T = text.batcher.batch_size, text.batcher.seq_len
        s = Setup(d, cfg, encoded, text.batcher, text.val_ids, text.n_train, text.n_val, model, optimizer,
                  sample_rng=np.random.default_rng([cfg.seed, 1]), hidden=model.initial_state(B),
                  state=TrainState(batch_size=B, seq_len=T, n_tokens=len(encoded), text_sha256=encoded.text_sha256,
                                   tokens_sha256=encoded.ids_sha256), lock=lock)
        if replacing:
            for n in (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG, ckpt.METRICS, ckpt.SAMPLES, ckpt.TOKENS):
                (d / n).unlink(missing_ok=True)
        written = [d / ckpt.TOKENS, d / ckpt.LATEST, d / ckpt.CONFIG]
        _install_tokens(staged, d / ckpt.TOKENS)
        encoded.path = d / ckpt.TOKENS
        # the checkpoint first: a run directory with a config.json always has one to resume
        s.save(d / ckpt.LATEST)  # the first "last good state", for divergence recovery
        # config.json can be given back to `charrnn train --config`: its paths are made absolute
        # there, as a config file's relative paths would be taken from the run directory
        paths = {k: os.path.abspath(v) for k in PATH_SETTINGS if isinstance(v := getattr(cfg, k), str)}
        _write_json(d / ckpt.CONFIG, cfg.to_dict() | {"batch_size": B, "seq_len": T} | paths)
    except BaseException:
        for p in (staged, *written):
            _discard(p)
        lock.release()
        _remove_dirs(created)
        raise
    if source is not None:
        added = encoded.vocab.size - source.vocab.size
        say(f"charrnn: fine-tuning the weights of {source.path}" + (f", {added} new symbol(s) added" if added else ""))
    say(
        f"charrnn: {model} on {len(encoded):,} characters ({encoded.vocab.size} symbols); "
        f"{s.n_train:,} for training, {s.n_val:,} for validation; run directory {d}"
    )
    return s


def _fine_tuning_source(init_from: str) -> ckpt.Checkpoint:
    """The checkpoint `--init-from` names (a run directory's best, or a file), with its vocabulary."""
    source = ckpt.load_checkpoint(init_from)
    if source.vocab is None:
        raise CheckpointError(f"{source.path}: a model saved without its vocabulary cannot be fine-tuned")
    return source


def _adopt_model(cfg: TrainConfig, source: ckpt.Checkpoint, given: Iterable[str] | None = None) -> TrainConfig:
    """The configuration of a fine-tuning run: the source's cell, sizes and encoding (asking for
    others is an error), and its dtype and dropout unless given."""
    model, asked = source.model, explicit_settings(cfg, given)
    kept = {"cell": model.cell, "hidden_size": model.hidden_size, "num_layers": model.num_layers,
            "encoding": source.vocab.encoding}
    clash = sorted(f"--{k.replace('_', '-')} {asked[k]}" for k in kept if k in asked and asked[k] != kept[k])
    if clash:
        mine = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in kept.items())
        raise ConfigError(f"--init-from keeps the model of {source.path} ({mine}): drop {', '.join(clash)}")
    defaults = {"dtype": model.dtype.name, "dropout": model.dropout}
    return cfg.replace(**kept, **{k: v for k, v in defaults.items() if k not in asked})


def _encode_for_fine_tuning(text: Path, staged: Path, vocab: Vocab, extend: bool) -> EncodedText:
    """Encode a fine-tuning text with the source model's vocabulary, or with `extend` with that
    vocabulary joined by the text's own new symbols (refused by name without it)."""
    seen = collect_vocab(text, vocab.encoding)
    new = seen.missing_from(vocab)
    if new.size and not extend:
        kind = "bytes" if vocab.encoding == "bytes" else "characters"
        raise DataError(f"{text}: {new.size} {kind} not in the model's vocabulary: "
                        f"{name_symbols(new, vocab.encoding)}; --extend-vocab adds them to the model")
    return encode_file(text, staged, vocab=vocab.union(seen) if new.size else vocab)


def _text_path(cfg: TrainConfig) -> Path:
    if cfg.dataset is not None:
        if cfg.dataset not in DATASETS:
            raise ConfigError(f"unknown --dataset {cfg.dataset!r}; available: {', '.join(DATASETS)}")
        from ..data.shakespeare import shakespeare_path

        return shakespeare_path()
    return Path(cfg.text)


def _resolve(cfg: TrainConfig, encoded: EncodedText, say: Say) -> TrainConfig:
    """Fill in the automatic choices and refuse what cannot fit in memory."""
    cfg = resolve_auto(cfg)
    n = len(encoded)
    if encoded.vocab.size < 2:
        raise DataError(
            f"{cfg.text or cfg.dataset} holds only one distinct symbol ({encoded.vocab.symbols[0]!r}, "
            f"{n:,} time(s)): there is nothing to predict; training needs at least 2 distinct symbols"
        )
    if cfg.val_frac and int(n * cfg.val_frac) < MIN_SPLIT_TOKENS:
        # A text this short is better learned whole than refused; the saved config says so.
        say(f"charrnn: the text has only {n:,} tokens, too few to hold out --val-frac {cfg.val_frac:g} "
            "for validation: training on all of it, without validation")
        cfg = cfg.replace(val_frac=0.0)
    if cfg.hidden_size == 0:
        cfg = cfg.replace(hidden_size=auto_hidden_size(n))
    V, H, L = encoded.vocab.size, cfg.hidden_size, cfg.num_layers
    itemsize = np.dtype(cfg.dtype).itemsize
    # judged at the batch and window the text leaves (a short text shrinks them), not as asked
    B, T, _ = fit_batch_shape(len(split_train_val(n, cfg.val_frac)[0]), cfg.batch_size, cfg.seq_len)
    need = estimate_memory(V, H, L, B, T, itemsize, cfg.cell)
    have = physical_memory()
    if have and need > MEMORY_FRACTION * have:
        raise ConfigError(
            f"this model and batch need about {need / 2**30:.1f} GiB to train, more than this machine's "
            f"{have / 2**30:.1f} GiB allows: lower --hidden-size, --num-layers, --batch-size or --seq-len"
        )
    return cfg


def estimate_memory(V: int, H: int, L: int, B: int, T: int, itemsize: int, cell: str = "rnn") -> int:
    """Bytes a training step needs: parameters, gradients and two optimizer slots, the
    per-layer states, gate activations and BPTT buffers (G gate blocks each), and the (B*T, V)
    logits."""
    params = count_parameters(V, H, L, cell)
    G = gates(cell)
    return itemsize * (4 * params + 3 * G * L * B * T * H + 2 * B * T * V + 4 * L * B * H)


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _prepare_data(cfg: TrainConfig, encoded: EncodedText, say: Say, asked: Iterable[str] | None = None) -> _Text:
    """Split the text, fit the batch to it and make the automatic plan (fresh and resumed runs alike)."""
    train_range, val_range = split_train_val(len(encoded), cfg.val_frac)
    n_train = len(train_range)
    n_val = len(val_range) if val_range is not None else 0
    ids = encoded.ids
    B, T, message = fit_batch_shape(n_train, cfg.batch_size, cfg.seq_len)
    if message:
        say(f"charrnn: {message}")
    batcher = Batcher(ids[:n_train], B, T)
    val_ids = ids[val_range.start : val_range.stop] if val_range is not None else None
    cfg = _auto_plan(cfg, batcher.windows_per_epoch, validates=val_ids is not None, asked=asked)
    return _Text(cfg, encoded, batcher, val_ids, n_train, n_val)


def _auto_plan(cfg: TrainConfig, windows_per_epoch: int, validates: bool, asked: Iterable[str] | None = None) -> TrainConfig:
    """With neither --steps nor --time-budget, choose them (and the validation cadence and
    early stopping, unless given) from the text's size; the saved config records the choice."""
    if cfg.steps or cfg.time_budget:
        return cfg
    steps = max(AUTO_EPOCHS * windows_per_epoch, AUTO_MIN_STEPS)
    plan: dict[str, Any] = {"steps": steps, "time_budget": AUTO_TIME_BUDGET}
    explicit = explicit_settings(cfg, asked)
    if "eval_every" not in explicit and validates:
        plan["eval_every"] = min(cfg.eval_every, max(50, steps // AUTO_EVALS))
    if "patience" not in explicit and validates:
        plan["patience"] = AUTO_PATIENCE
    return cfg.replace(**plan)


# ------------------------------------------------------------------------------------------------
# a resumed run


def resume_run(overrides: TrainConfig, run_dir: Path, say: Say, out: Path | None = None, force: bool = False,
               reader: bool = False, asked: Iterable[str] | None = None) -> Setup:
    """Set up the run saved in `run_dir` (a run directory or a checkpoint file) where it stopped.
    Of `overrides`, only the settings in RESUMABLE may differ from the saved configuration.

    With `out` (another directory) the run continues there, from the same state, optimizer
    included, and its own run is left as it is; a checkpoint other than a run's latest (its best,
    say) can only be continued that way, as continuing it in place would overwrite the later
    state. `force` lets `out` replace a run already there."""
    if run_dir.is_dir() and not (run_dir / ckpt.LATEST).exists():
        raise CheckpointError(f"{run_dir}: no checkpoint in this directory to resume (no {ckpt.LATEST})")
    c = ckpt.load_checkpoint(run_dir / ckpt.LATEST if run_dir.is_dir() else run_dir)
    if c.config is None or c.optimizer_meta is None:
        raise CheckpointError(f"{c.path}: a bare model file, not a training checkpoint: cannot resume from it")
    cfg = c.config
    asked = explicit_settings(overrides, asked)
    changes = {k: v for k, v in asked.items() if k in RESUMABLE}
    fixed = {k for k in asked if k not in RESUMABLE and getattr(cfg, k) != getattr(overrides, k)}
    if fixed:
        raise ConfigError(f"cannot change {', '.join(sorted('--' + k.replace('_', '-') for k in fixed))} when resuming")
    cfg = cfg.replace(**changes)
    validate(cfg)
    requested_threads()
    run_dir = c.path.parent
    if out is not None and not _same_dir(out, run_dir):
        return _fork_run(c, cfg, changes, out, force, say)
    if c.path.name != ckpt.LATEST:
        raise ConfigError(
            f"{c.path} is not the latest checkpoint of {run_dir}: continuing it there would overwrite "
            f"{ckpt.LATEST} and the metrics after step {c.state['step']:,}; give --out NEW_DIR to continue it "
            "in a new run directory"
        )
    if reader:  # another process (torchrun's rank 0) holds the run and writes it: read, take nothing
        return _resume_locked(c, cfg, changes, run_dir, None, say)
    lock = RunLock(run_dir).acquire()
    try:
        return _resume_locked(c, cfg, changes, run_dir, lock, say)
    except BaseException:
        lock.release()
        raise


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _fork_run(c: ckpt.Checkpoint, cfg: TrainConfig, changes: dict[str, Any], d: Path, force: bool,
              say: Say) -> Setup:
    """Continue checkpoint `c` in the new run directory `d`: its tokens.bin (checked, or the text
    encoded again), the checkpoint as latest, the best as of it, config.json and the metrics up
    to its step. The source run is only read."""
    source = c.path.parent
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--out {d} exists and is not a directory")
    replacing = d.is_dir() and any((d / n).exists() for n in (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG))
    if replacing and not force:
        raise ConfigError(f"{d} already holds a run: give another --out, or --force to replace it")
    saved = TrainState.from_json(c.state, c.path)
    created, lock = _claim_run_dir(d)
    staged = d / f".{ckpt.TOKENS}.new"
    written: list[Path] = []
    try:
        _remove_temporaries(d)
        if "text" in changes or not (source / ckpt.TOKENS).is_file():
            encoded = _encode_same_text(_text_path(cfg), staged, c.vocab, saved, source / ckpt.TOKENS)
        else:
            shutil.copyfile(source / ckpt.TOKENS, staged)
            encoded = load_encoded(staged, c.vocab, check=False)
            _check_tokens(encoded, saved)
        best = c.path if saved.best_step == saved.step else source / ckpt.BEST
        if (saved.best_val_loss is None or not best.is_file()
                or ckpt.load_checkpoint(best).state.get("step") != saved.best_step):
            best = None  # no best yet, or not at hand: the next improvement writes one
        metrics = _metrics_upto(source / ckpt.METRICS, saved.step)
        s = _continue(c, cfg, encoded, saved, d, lock, say)  # every check done: d may change now
        if replacing:
            for n in (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG, ckpt.METRICS, ckpt.SAMPLES, ckpt.TOKENS):
                (d / n).unlink(missing_ok=True)
        written = [d / n for n in (ckpt.TOKENS, ckpt.METRICS, ckpt.LATEST, ckpt.BEST, ckpt.CONFIG)]
        _install_tokens(staged, d / ckpt.TOKENS)
        encoded.path = d / ckpt.TOKENS
        if metrics:
            atomic_write_bytes(d / ckpt.METRICS, metrics)
        s.save(d / ckpt.LATEST)
        if best is not None:
            atomic_copy(best, d / ckpt.BEST)
        _write_json(d / ckpt.CONFIG, _config_record(s.cfg, s))
    except BaseException as e:
        for p in (staged, *written):
            _discard(p)
        lock.release()
        _remove_dirs(created)
        if isinstance(e, OSError):  # copying the run's files (a full disk, a special file)
            raise CheckpointError(f"cannot continue {c.path} in {d}: {e.strerror or e}") from None
        raise
    say(f"charrnn: continuing {c.path} (step {s.state.step:,}) in {d}")
    return s


def _resume_locked(c: ckpt.Checkpoint, cfg: TrainConfig, changes: dict[str, Any], run_dir: Path,
                   lock: RunLock | None, say: Say) -> Setup:
    """The resume itself; without a lock (a reader) nothing in run_dir is changed."""
    tokens = run_dir / ckpt.TOKENS
    saved = TrainState.from_json(c.state, c.path)
    if lock is not None:
        _remove_temporaries(run_dir)  # left by a process killed in the middle of a write
    if "text" in changes or not tokens.is_file():
        encoded = _reencode(_text_path(cfg), tokens, c.vocab, saved)
    else:
        encoded = load_encoded(tokens, c.vocab, check=False)
        _check_tokens(encoded, saved)
    s = _continue(c, cfg, encoded, saved, run_dir, lock, say)
    if lock is not None:
        _trim_metrics(run_dir / ckpt.METRICS, s.state.step)
        _update_config(run_dir / ckpt.CONFIG, c.config, s, say)
    say(f"charrnn: resuming {run_dir} at step {s.state.step:,}")
    return s


def _config_record(cfg: TrainConfig, s: Setup) -> dict[str, Any]:
    """config.json: the resolved configuration with the batch and window the text left."""
    return cfg.to_dict() | {"batch_size": s.batch_size, "seq_len": s.seq_len}


def _update_config(path: Path, saved: TrainConfig, s: Setup, say: Say) -> None:
    """Rewrite config.json for the resumed run (a new --steps, say). It is a record, never read
    back: the checkpoint holds the configuration. An edit found in it is named and undone."""
    try:
        found = json.loads(path.read_bytes())
    except FileNotFoundError:
        found = None
    except (OSError, ValueError):
        found = {}
    if found is not None:
        expected = _config_record(saved, s)
        if isinstance(found, dict):
            edited = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        else:
            edited = ["(all)"]
        if edited:
            say(f"charrnn: {path} was changed by hand ({', '.join(edited)}); it only records the run's settings, "
                "which come from the checkpoint and the flags: rewritten")
    _write_json(path, _config_record(s.cfg, s))


def _continue(c: ckpt.Checkpoint, cfg: TrainConfig, encoded: EncodedText, saved: TrainState, run_dir: Path,
              lock: RunLock | None, say: Say) -> Setup:
    """The run of checkpoint `c` on its checked text, set up in `run_dir` where `c` stands."""
    if len(encoded) != saved.n_tokens:
        raise DataError(
            f"the text now has {len(encoded):,} characters, the run was trained on {saved.n_tokens:,}: "
            "resuming on different text would not continue the same run"
        )
    text = _prepare_data(cfg, encoded, say)
    B, T = text.batcher.batch_size, text.batcher.seq_len
    if (B, T) != (saved.batch_size, saved.seq_len):
        raise CheckpointError(f"{c.path}: the saved batch shape does not match this run")
    cfg, model = text.cfg, c.model
    optimizer = make_optimizer(cfg.optimizer, model.params, cfg.lr, **optimizer_options(cfg))
    # set up as a fresh run would be on the saved model, then moved to where the checkpoint stands
    s = Setup(run_dir, cfg, encoded, text.batcher, text.val_ids, text.n_train, text.n_val, model, optimizer,
              sample_rng=np.random.default_rng([cfg.seed, 1]), hidden=model.initial_state(B), state=saved,
              lock=lock)
    s.restore(c)
    # the hashes checked just now, recorded from here on where the checkpoint predates them
    s.state.text_sha256, s.state.tokens_sha256 = saved.text_sha256, saved.tokens_sha256
    now = model.workers_for(B)
    if saved.workers and saved.workers != now:
        say(f"charrnn: the run was trained with {saved.workers} worker thread(s) and continues with {now}: "
            f"the result will differ by float rounding from an uninterrupted run (--threads {saved.workers} keeps it bit-identical)")
    return s


def _check_tokens(encoded: EncodedText, saved: TrainState) -> None:
    """Check the run's tokens.bin against the checkpoint: every id inside the vocabulary, and the
    content hash the run recorded (a checkpoint made before hashes were recorded gets this one)."""
    where = encoded.path
    digest, top = ids_digest(encoded.ids)
    if top >= encoded.vocab.size:
        raise DataError(f"{where} holds token id {top}, outside this run's vocabulary of {encoded.vocab.size} "
                        f"symbols: it is not this run's encoded text; delete it to encode the text again")
    if saved.tokens_sha256 is not None and digest != saved.tokens_sha256:
        raise DataError(f"{where} is not the encoded text this run was trained on (its content hash differs): "
                        "delete it to encode the text again")
    saved.tokens_sha256 = digest


def _reencode(text: Path, tokens: Path, vocab: Vocab | None, saved: TrainState) -> EncodedText:
    """Encode the run's text again (it moved, or tokens.bin was deleted) without touching the
    run's tokens.bin until the new ids are known to be the very same text."""
    staged = tokens.with_name(f".{tokens.name}.new")
    encoded = _encode_same_text(text, staged, vocab, saved, tokens)
    try:
        _install_tokens(staged, tokens)
    except BaseException:
        _discard(staged)
        raise
    encoded.path = tokens
    return encoded


def _encode_same_text(text: Path, staged: Path, vocab: Vocab | None, saved: TrainState, tokens: Path) -> EncodedText:
    """Encode `text` into `staged` and check that it is the run's text: by the content hashes the
    checkpoint recorded, or (older checkpoints) by the ids of the run's `tokens`, or their number.
    The hashes are recorded in `saved`; on any failure `staged` is removed."""
    n_tokens = saved.n_tokens
    try:
        encoded = encode_file(text, staged, vocab=vocab)
        recorded = saved.text_sha256 is not None or saved.tokens_sha256 is not None
        if recorded:
            if (saved.text_sha256 not in (None, encoded.text_sha256)
                    or saved.tokens_sha256 not in (None, encoded.ids_sha256)):
                raise DataError(
                    f"{text} is not the text this run was trained on (its content hash differs): resuming on "
                    "different text would not continue the same run"
                )
        elif tokens.is_file():
            if not _same_ids(encoded.ids, load_encoded(tokens, vocab, check=False).ids):
                raise DataError(
                    f"{text} is not the text this run was trained on: resuming on different text "
                    "would not continue the same run"
                )
        elif len(encoded) != n_tokens:
            raise DataError(
                f"{text} has {len(encoded):,} characters, the run was trained on {n_tokens:,}: "
                "resuming on different text would not continue the same run"
            )
    except BaseException:
        _discard(staged)
        raise
    saved.text_sha256, saved.tokens_sha256 = encoded.text_sha256, encoded.ids_sha256
    return encoded


# ------------------------------------------------------------------------------------------------
# helpers


def _claim_run_dir(d: Path) -> tuple[list[Path], RunLock]:
    """Make run directory `d` (with its missing parents) and take its lock, before anything in it
    is touched (another writer's files are its own); returns the directories made, which the
    caller removes if set-up fails, and the lock. On failure here, what was made is removed."""
    created = _missing_dirs(d)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {d}: {e.strerror or e}") from None
    lock = RunLock(d)
    try:
        lock.acquire()
    except BaseException:
        _remove_dirs(created)
        raise
    return created, lock


def _install_tokens(staged: Path, tokens: Path) -> None:
    """Put a staged, fully written tokens.bin in place."""
    try:
        replace_durably(staged, tokens)
    except OSError as e:
        raise CheckpointError(f"cannot write {tokens}: {e.strerror or e}") from None


def _discard(p: Path) -> None:
    """Remove a file on the way out of a failure: one that cannot be removed (a directory made
    read-only meanwhile) must not hide the failure being reported."""
    try:
        p.unlink(missing_ok=True)
    except OSError:
        pass


def _remove_dirs(created: list[Path]) -> None:
    """Remove the directories `_missing_dirs` listed, innermost first, where they are empty."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            pass


def _missing_dirs(d: Path) -> list[Path]:
    """The directories `d.mkdir(parents=True)` would create, outermost first."""
    missing = []
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing[::-1]


def _remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process never renamed. Called
    with the run's lock held, so no live process is writing any of them."""
    names = (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG, ckpt.TOKENS, ckpt.METRICS)
    try:
        for p in run_dir.iterdir():
            bare = p.name.lstrip(".")
            if p.name.startswith(".") and any(bare.startswith(n + ".") for n in names) and p.is_file():
                p.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: a leftover wastes space, it cannot be mistaken for a checkpoint


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal token arrays, compared in chunks so two memory maps are never read whole."""
    step = 1 << 22
    return len(a) == len(b) and all(np.array_equal(a[i : i + step], b[i : i + step]) for i in range(0, len(a), step))


def _trim_metrics(path: Path, step: int) -> None:
    """Drop the metrics records past the checkpoint's step (a killed run logged steps it will now
    train again) and a torn last line, so the resumed log reads as if the run never stopped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    keep = _records_upto(data, step)
    if len(keep) != len(data.splitlines()):
        atomic_write_bytes(path, b"".join(keep))


def _metrics_upto(path: Path, step: int) -> bytes:
    """The metrics records of `path` up to `step` (none if there is no log)."""
    try:
        return b"".join(_records_upto(path.read_bytes(), step))
    except FileNotFoundError:
        return b""
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None


def _records_upto(data: bytes, step: int) -> list[bytes]:
    keep = []
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            record = None
        if isinstance(record, dict) and not (type(record.get("step")) is int and record["step"] > step):
            keep.append(line)
    return keep


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
