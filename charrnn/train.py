"""The training loop: truncated BPTT over B parallel streams, checkpoints, exact resume.

One step: take the next (B, T) window of every stream, run forward and BPTT from the hidden
state carried out of the previous window, clip, update. The state is zeroed only when the data
wraps into a new epoch. Everything a step depends on (parameters, optimizer slots, the carried
state, the data position, the random generators, the step count that drives the schedule) is in
the checkpoint, so a run stopped and resumed is bit-identical to one that never stopped.

Faults: a NaN or infinite loss or gradient never reaches the parameters. The run restores its
last good checkpoint, halves the learning rate, says so and goes on; after `max_divergences`
recoveries it stops with that checkpoint intact. SIGINT / SIGTERM finish the current step, write
a checkpoint and leave with status 130 / 143.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from . import checkpoint as ckpt
from .config import TrainConfig, auto_hidden_size, preset_settings, validate
from .data import (MIN_SPLIT_TOKENS, Batcher, EncodedText, encode_file, fit_batch_shape, load_encoded,
                   split_train_val)
from .errors import CharRNNError, CheckpointError, ConfigError, DataError
from .evaluate import NATS_TO_BITS, evaluate_ids
from .model import CharRNN, count_parameters
from .optim import Optimizer, clip_grad_norm_, clip_grad_value_, global_grad_norm, make_optimizer
from .sample import SampleConfig, generate
from .serialization import atomic_copy, atomic_write_bytes

# Settings a resumed run may change; every other one would change what the run computes.
RESUMABLE = {"steps", "time_budget", "log_every", "eval_every", "eval_max_chars", "sample_every",
             "sample_length", "sample_temperature", "threads", "max_divergences", "patience", "text"}
# When neither --steps nor --time-budget is given: this many epochs but at least AUTO_MIN_STEPS
# (a small text needs many passes), within this many seconds, validating about AUTO_EVALS times
# and stopping early after AUTO_PATIENCE validations without a new best. best.safetensors keeps
# the best model, so running past the best costs time, never quality.
AUTO_EPOCHS = 10
AUTO_MIN_STEPS = 2000
AUTO_TIME_BUDGET = 900.0
AUTO_EVALS = 20
AUTO_PATIENCE = 5
# Periodic validation scores this many parallel streams (the `eval` command uses one).
VAL_STREAMS = 16
# Refuse a run whose training memory estimate exceeds this fraction of physical memory.
MEMORY_FRACTION = 0.8


class Interrupted(CharRNNError):
    """Training stopped by a signal after writing a checkpoint; carries the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Diverged(CharRNNError):
    """Too many NaN/inf recoveries: the run stopped with its last good checkpoint intact."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    train_loss: float | None  # smoothed
    val_loss: float | None  # last validation nats/char
    best_val_loss: float | None
    stopped: str  # "steps", "time", "early" (validation stopped improving), "signal"
    patience: int = 0  # validations without a new best that end a run early (0 = never)


# ------------------------------------------------------------------------------------------------
# learning-rate schedule


def lr_at(cfg: TrainConfig, step: int, total_steps: int, windows_per_epoch: int, time_frac: float | None) -> float:
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


def optimizer_options(cfg: TrainConfig) -> dict[str, Any]:
    """Constructor options of the chosen optimizer that the configuration sets."""
    opts: dict[str, Any] = {"weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("sgd", "rmsprop"):
        opts["momentum"] = cfg.momentum
    if cfg.optimizer == "adagrad" and cfg.preset == "min-char-rnn":
        # min-char-rnn updates with g / sqrt(mem + 1e-8) where g is the gradient of the loss summed
        # over the window; ours is of the mean, g / T. Adagrad is scale-free except for eps, so
        # eps / T^2 makes the two updates identical (see preset_settings for the clip).
        opts |= {"eps_inside_sqrt": True, "eps": 1e-8 / cfg.seq_len**2}
    return opts


def estimate_memory(V: int, H: int, L: int, B: int, T: int, itemsize: int) -> int:
    """Bytes a training step needs: parameters, gradients and two optimizer slots, the
    per-layer hidden states and BPTT buffers, and the (B*T, V) logits."""
    params = count_parameters(V, H, L)
    return itemsize * (4 * params + 3 * L * B * T * H + 2 * B * T * V + 4 * L * B * H)


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------------


class Trainer:
    """One training run in a run directory: set up fresh or from a checkpoint, then `run()`."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        force: bool = False,
        quiet: bool = False,
        json_log: bool = False,
        progress: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.json_log = json_log
        self.progress = progress and not quiet and not json_log
        self.stream = stream or sys.stderr
        self._signal: int | None = None
        if resume:
            self._setup_resume(cfg)
        else:
            self._setup_fresh(cfg, force)

    # -- output ---------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        """A human-readable line on stderr (kept clear of the progress bar)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    # -- set-up ---------------------------------------------------------------------------------

    _bar: Any = None

    def _setup_fresh(self, cfg: TrainConfig, force: bool) -> None:
        if cfg.preset:
            cfg = TrainConfig(**(cfg.to_dict() | preset_settings(cfg.preset) | _explicit(cfg)))
        validate(cfg)
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise ConfigError(f"--out {d} exists and is not a directory")
        replacing = d.is_dir() and any((d / n).exists() for n in (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG))
        if replacing and not force:
            raise ConfigError(f"{d} already holds a run: use --resume {d} to continue it, or --force to replace it")
        if replacing:
            _remove_temporaries(d)  # garbage of a killed process, never part of a run
        text_path = self._text_path(cfg)
        # Nothing is left half-made: the text is encoded under a temporary name and everything is
        # checked before an old run (--force) is removed; on any failure, even Ctrl-C, what this
        # call created is removed again.
        created = _missing_dirs(d)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create {d}: {e.strerror or e}") from None
        staged = d / f".{ckpt.TOKENS}.new"
        written: list[Path] = []
        try:
            encoded = encode_file(text_path, staged, encoding=cfg.encoding)
            self.cfg = self._resolve(cfg, encoded)
            self._prepare_data(encoded)
            cfg = self.cfg  # with the automatic plan filled in
            self.model = CharRNN(encoded.vocab.size, cfg.hidden_size, cfg.num_layers, cfg.dtype, cfg.seed, cfg.init)
            self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.lr, **optimizer_options(cfg))
            self.sample_rng = np.random.default_rng([cfg.seed, 1])
            self.hidden = self.model.initial_state(self.batch_size)
            self.state = {"step": 0, "chars_seen": 0, "elapsed": 0.0, "lr_scale": 1.0, "divergences": 0,
                          "best_val_loss": None, "best_step": 0, "smoothed_loss": None, "val_loss": None}
            if replacing:
                for n in (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG, ckpt.METRICS, ckpt.SAMPLES, ckpt.TOKENS):
                    (d / n).unlink(missing_ok=True)
            written = [d / ckpt.TOKENS, d / ckpt.LATEST, d / ckpt.CONFIG]
            try:
                os.replace(staged, d / ckpt.TOKENS)
            except OSError as e:
                raise CheckpointError(f"cannot write {d / ckpt.TOKENS}: {e.strerror or e}") from None
            encoded.path = d / ckpt.TOKENS
            # the checkpoint first: a run directory with a config.json always has one to resume
            self._save(d / ckpt.LATEST)  # the first "last good state", for divergence recovery
            _write_json(d / ckpt.CONFIG, cfg.to_dict() | {"batch_size": self.batch_size, "seq_len": self.seq_len})
        except BaseException:
            for p in (staged, *written):
                p.unlink(missing_ok=True)
            for p in reversed(created):
                try:
                    p.rmdir()
                except OSError:
                    pass
            raise
        self.say(
            f"charrnn: {self.model} on {len(encoded):,} characters ({encoded.vocab.size} symbols); "
            f"{self.n_train:,} for training, {self.n_val:,} for validation; run directory {d}"
        )

    def _text_path(self, cfg: TrainConfig) -> Path:
        if cfg.dataset is not None:
            if cfg.dataset != "shakespeare":
                raise ConfigError(f"unknown --dataset {cfg.dataset!r}; available: shakespeare")
            from .datasets import shakespeare_path

            return shakespeare_path()
        return Path(cfg.text)

    def _resolve(self, cfg: TrainConfig, encoded: EncodedText) -> TrainConfig:
        """Fill in the automatic choices and refuse what cannot fit in memory."""
        n = len(encoded)
        if encoded.vocab.size < 2:
            raise DataError(
                f"{cfg.text or cfg.dataset} holds only one distinct symbol ({encoded.vocab.symbols[0]!r}, "
                f"{n:,} time(s)): there is nothing to predict; training needs at least 2 distinct symbols"
            )
        if cfg.val_frac and int(n * cfg.val_frac) < MIN_SPLIT_TOKENS:
            # A text this short is better learned whole than refused; the saved config says so.
            self.say(f"charrnn: the text has only {n:,} tokens, too few to hold out --val-frac {cfg.val_frac:g} "
                     "for validation: training on all of it, without validation")
            cfg = cfg.replace(val_frac=0.0)
        if cfg.hidden_size == 0:
            cfg = cfg.replace(hidden_size=auto_hidden_size(n))
        V, H, L = encoded.vocab.size, cfg.hidden_size, cfg.num_layers
        itemsize = np.dtype(cfg.dtype).itemsize
        need = estimate_memory(V, H, L, cfg.batch_size, cfg.seq_len, itemsize)
        have = physical_memory()
        if have and need > MEMORY_FRACTION * have:
            raise ConfigError(
                f"this model and batch need about {need / 2**30:.1f} GiB to train, more than this machine's "
                f"{have / 2**30:.1f} GiB allows: lower --hidden-size, --num-layers, --batch-size or --seq-len"
            )
        return cfg

    def _prepare_data(self, encoded: EncodedText) -> None:
        cfg = self.cfg
        self.encoded = encoded
        self.vocab = encoded.vocab
        train_range, val_range = split_train_val(len(encoded), cfg.val_frac)
        self.n_train = len(train_range)
        self.n_val = len(val_range) if val_range is not None else 0
        ids = encoded.ids
        B, T, message = fit_batch_shape(self.n_train, cfg.batch_size, cfg.seq_len)
        if message:
            self.say(f"charrnn: {message}")
        self.batch_size, self.seq_len = B, T
        self.batcher = Batcher(ids[: self.n_train], B, T)
        self.val_ids = ids[val_range.start : val_range.stop] if val_range is not None else None
        self.cfg = cfg = self._auto_plan(cfg)
        self.total_steps, self.time_budget = cfg.steps, cfg.time_budget

    def _auto_plan(self, cfg: TrainConfig) -> TrainConfig:
        """With neither --steps nor --time-budget, choose them (and the validation cadence and
        early stopping, unless given) from the text's size; the saved config records the choice."""
        if cfg.steps or cfg.time_budget:
            return cfg
        steps = max(AUTO_EPOCHS * self.batcher.windows_per_epoch, AUTO_MIN_STEPS)
        plan = {"steps": steps, "time_budget": AUTO_TIME_BUDGET}
        explicit = _explicit(cfg)
        if "eval_every" not in explicit and self.val_ids is not None:
            plan["eval_every"] = min(cfg.eval_every, max(50, steps // AUTO_EVALS))
        if "patience" not in explicit and self.val_ids is not None:
            plan["patience"] = AUTO_PATIENCE
        return cfg.replace(**plan)

    def _setup_resume(self, overrides: TrainConfig) -> None:
        if self.run_dir.is_dir() and not (self.run_dir / ckpt.LATEST).exists():
            raise CheckpointError(f"{self.run_dir}: no checkpoint in this directory to resume (no {ckpt.LATEST})")
        c = ckpt.load_checkpoint(self.run_dir / ckpt.LATEST if self.run_dir.is_dir() else self.run_dir)
        if c.config is None or c.optimizer_meta is None:
            raise CheckpointError(f"{c.path}: a bare model file, not a training checkpoint: cannot resume from it")
        cfg = c.config
        changes = {k: v for k, v in _explicit(overrides).items() if k in RESUMABLE}
        fixed = {k for k in _explicit(overrides) if k not in RESUMABLE and getattr(cfg, k) != getattr(overrides, k)}
        if fixed:
            raise ConfigError(f"cannot change {', '.join(sorted('--' + k.replace('_', '-') for k in fixed))} when resuming")
        cfg = cfg.replace(**changes)
        validate(cfg)
        self.cfg = cfg
        self.run_dir = c.path.parent
        tokens = self.run_dir / ckpt.TOKENS
        state = c.state
        _check_resume_state(state, c.path)
        _remove_temporaries(self.run_dir)  # left by a process killed in the middle of a write
        if "text" in changes or not tokens.is_file():
            encoded = self._reencode(self._text_path(cfg), tokens, c.vocab, state["n_tokens"])
        else:
            encoded = load_encoded(tokens, c.vocab, check=False)
        if len(encoded) != state["n_tokens"]:
            raise DataError(
                f"the text now has {len(encoded):,} characters, the run was trained on {state['n_tokens']:,}: "
                "resuming on different text would not continue the same run"
            )
        self._prepare_data(encoded)
        if (self.batch_size, self.seq_len) != (state["batch_size"], state["seq_len"]):
            raise CheckpointError(f"{c.path}: the saved batch shape does not match this run")
        self.model = c.model
        self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.lr, **optimizer_options(cfg))
        self.optimizer.load_state_dict(c.optimizer_arrays, c.optimizer_meta)
        self.batcher.load_state_dict(state.get("data"))
        self.sample_rng = _generator_from(state.get("sample_rng"), c.path)
        if c.hidden is None:
            raise CheckpointError(f"{c.path}: the carried hidden state is missing")
        self.hidden = c.hidden
        self.state = {k: state.get(k) for k in ("step", "chars_seen", "elapsed", "lr_scale", "divergences",
                                                  "best_val_loss", "best_step", "smoothed_loss", "val_loss")}
        self.state["best_step"] = self.state["best_step"] or 0
        _trim_metrics(self.run_dir / ckpt.METRICS, self.state["step"])
        if c.path.name != ckpt.LATEST:  # resumed from best (or another file): make it the last good state
            self._save(self.run_dir / ckpt.LATEST)
        self.say(f"charrnn: resuming {self.run_dir} at step {self.state['step']:,}")

    def _reencode(self, text: Path, tokens: Path, vocab: Any, n_tokens: int) -> EncodedText:
        """Encode the run's text again (it moved, or tokens.bin was deleted) without touching the
        run's tokens.bin until the new ids are known to be the very same text."""
        staged = tokens.with_name(f".{tokens.name}.new")
        try:
            encoded = encode_file(text, staged, vocab=vocab)
            if tokens.is_file():
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
            try:
                os.replace(staged, tokens)
            except OSError as e:
                raise CheckpointError(f"cannot write {tokens}: {e.strerror or e}") from None
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        encoded.path = tokens
        return encoded

    # -- checkpoints ----------------------------------------------------------------------------

    def _state_for_saving(self) -> dict[str, Any]:
        return self.state | {
            "data": self.batcher.state_dict(),
            "sample_rng": self.sample_rng.bit_generator.state,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "n_tokens": len(self.encoded),
        }

    def _save(self, path: Path) -> None:
        ckpt.save_checkpoint(path, self.model, self.vocab, self.cfg, self._state_for_saving(),
                             self.optimizer, self.hidden)

    def _restore_last_good(self) -> None:
        """Reload the latest checkpoint in place after a NaN/inf (keeping the divergence count)."""
        c = ckpt.load_checkpoint(self.run_dir / ckpt.LATEST)
        for name, p in self.model.params.items():
            p[...] = c.model.params[name]
        self.optimizer.load_state_dict(c.optimizer_arrays, c.optimizer_meta)
        self.batcher.load_state_dict(c.state["data"])
        self.sample_rng = _generator_from(c.state.get("sample_rng"), c.path)
        self.hidden = c.hidden
        keep = {"divergences": self.state["divergences"], "lr_scale": self.state["lr_scale"]}
        self.state.update({k: c.state.get(k) for k in self.state} | keep)

    # -- validation and samples -----------------------------------------------------------------

    def validate_loss(self) -> float | None:
        if self.val_ids is None:
            return None
        ids = self.val_ids
        if self.cfg.eval_max_chars and len(ids) > self.cfg.eval_max_chars + 1:
            ids = ids[: self.cfg.eval_max_chars + 1]
        result = evaluate_ids(self.model, ids, streams=VAL_STREAMS)
        return result.nats_per_char

    def take_sample(self, first_token: int) -> str:
        sc = SampleConfig(length=self.cfg.sample_length, temperature=self.cfg.sample_temperature)
        ids = generate(self.model, np.array([first_token]), sc, self.sample_rng)
        return self.vocab.decode(ids)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum: int, frame: Any) -> None:
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, the last checkpoint stands
            self._signal = signum

        in_main = _in_main_thread()
        if in_main:
            for s in previous:
                signal.signal(s, on_signal)
        try:
            # overflow and NaN are detected and handled (see _recover); numpy's warnings would
            # only add noise to that one message
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._loop()
        except OSError as e:  # the disk filled (or vanished) under metrics.jsonl or samples.txt
            raise CheckpointError(
                f"cannot write to {self.run_dir}: {e.strerror or e}; the last checkpoint there is intact"
            ) from None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if in_main:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    def _loop(self) -> TrainResult:
        cfg, st = self.cfg, self.state
        total, budget = self.total_steps, self.time_budget
        if total and st["step"] >= total:
            self.say(f"charrnn: the run is already at step {st['step']:,} of {total:,}; raise --steps to continue")
            return self._result("steps")
        self._metrics = open(self.run_dir / ckpt.METRICS, "a", encoding="utf-8")
        self._bar = self._make_bar(total)
        self._started = time.perf_counter()
        self._elapsed0 = st["elapsed"]
        # chars/s counts the time of training steps only, not validation, samples or checkpoints
        self._report_losses, self._report_chars, self._report_busy = [], 0, 0.0
        saved_at = logged_at = st["step"]
        lr = grad_norm = float("nan")
        stopped = "steps"
        try:
            while True:
                run_time = time.perf_counter() - self._started
                if total and st["step"] >= total:
                    break
                if budget and run_time >= budget:
                    stopped = "time"
                    break
                if self._signal is not None:
                    stopped = "signal"
                    break
                step_started = time.perf_counter()
                x, y, reset = self.batcher.next_batch()
                if reset:
                    self.hidden = self.model.initial_state(self.batch_size)
                loss, grads, h_last = self.model.loss_and_grads(x, y, self.hidden)
                grad_norm = global_grad_norm(grads)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
                    self._recover(what)  # nothing of this step reaches the parameters
                    saved_at = logged_at = st["step"]
                    continue
                if cfg.single_bias:  # one trained bias, as the seeds' b; bias_hh stays as initialised
                    for k in range(cfg.num_layers):
                        grads[f"rnn.bias_hh_l{k}"].fill(0.0)
                if cfg.clip_value:
                    clip_grad_value_(grads, cfg.clip_value)
                if cfg.clip_norm:
                    clip_grad_norm_(grads, cfg.clip_norm)
                time_frac = run_time / budget if budget else None
                lr = lr_at(cfg, st["step"], total, self.batcher.windows_per_epoch, time_frac) * st["lr_scale"]
                self.optimizer.lr = lr
                self.optimizer.step(grads)
                if not all(np.isfinite(p).all() for p in self.model.params.values()):
                    # a finite gradient times a huge rate can still overflow: roll the step back
                    # before anything (a checkpoint above all) can see it
                    self._recover("a parameter overflowed in the update")
                    saved_at = logged_at = st["step"]
                    continue
                self.hidden = h_last
                st["step"] += 1
                st["chars_seen"] += x.size
                # like min-char-rnn, smoothing starts from the loss of a uniform guess
                smoothed = st["smoothed_loss"] if st["smoothed_loss"] is not None else math.log(self.vocab.size)
                st["smoothed_loss"] = cfg.smooth * smoothed + (1 - cfg.smooth) * loss
                self._report_losses.append(loss)
                self._report_chars += x.size
                self._report_busy += time.perf_counter() - step_started
                step = st["step"]
                if cfg.sample_every and step % cfg.sample_every == 0:
                    self._write_sample(step, int(x[0, 0]))
                last = bool(total and step >= total)
                if (cfg.eval_every and step % cfg.eval_every == 0) or last:
                    st["val_loss"] = self.validate_loss()
                    if not _finite_or_none(st["val_loss"]):
                        # weights that overflow on unseen text are as broken as a NaN loss
                        self._recover(f"validation loss {st['val_loss']}", step)
                        saved_at = logged_at = st["step"]
                        continue
                    self._report(lr, grad_norm, evaluated=True)
                    self._checkpoint()
                    saved_at = logged_at = step
                    if cfg.patience and cfg.eval_every and step - st["best_step"] >= cfg.patience * cfg.eval_every:
                        stopped = "early"  # validation stopped improving; best.safetensors has the best
                        break
                elif step % cfg.log_every == 0:
                    self._report(lr, grad_norm, evaluated=False)
                    logged_at = step
                if self._bar is not None:
                    self._bar.update(1)
            if st["step"] != saved_at:  # stopped by time or signal between checkpoints
                st["val_loss"] = self.validate_loss()
                if _finite_or_none(st["val_loss"]):
                    self._report(lr, grad_norm, evaluated=True)
                    self._checkpoint()
                else:  # stop at the last good checkpoint instead
                    self._recover(f"validation loss {st['val_loss']}", st["step"])
            elif st["step"] != logged_at:
                self._report(lr, grad_norm, evaluated=False)
        finally:
            self._metrics.close()
        if stopped == "signal":
            raise Interrupted(
                f"stopped by {signal.Signals(self._signal).name} at step {st['step']:,}; checkpoint written, "
                f"continue with: charrnn train --resume {self.run_dir}",
                128 + self._signal,
            )
        return self._result(stopped)

    def _report(self, lr: float, grad_norm: float, evaluated: bool) -> None:
        """Append one metrics line (and show it on the bar / as JSON)."""
        now = time.perf_counter()
        st = self.state
        st["elapsed"] = self._elapsed0 + (now - self._started)
        val = st["val_loss"] if evaluated else None
        losses = self._report_losses
        record = {
            "step": st["step"],
            "chars": st["chars_seen"],
            "epoch": round(self.batcher.progress, 4),
            "train_loss": float(np.mean(losses)) if losses else None,
            "smoothed_loss": st["smoothed_loss"],
            "val_nats_per_char": val,
            "val_bits_per_char": val * NATS_TO_BITS if val is not None else None,
            "lr": lr,
            "grad_norm": grad_norm,
            "chars_per_s": round(self._report_chars / max(self._report_busy, 1e-9), 1),
            "elapsed": round(st["elapsed"], 3),
        }
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self.json_log:
            print(json.dumps(record), flush=True)
        self._report_losses, self._report_chars, self._report_busy = [], 0, 0.0
        if self._bar is not None:
            post = {"loss": f"{st['smoothed_loss']:.3f}"}
            if st["val_loss"] is not None:
                post["val_bpc"] = f"{st['val_loss'] * NATS_TO_BITS:.3f}"
            post["chars/s"] = f"{record['chars_per_s']:,.0f}"
            if self.time_budget:
                post["left"] = f"{max(0.0, self.time_budget - (now - self._started)):.0f}s"
            self._bar.set_postfix(post, refresh=False)

    def _recover(self, what: str, step: int | None = None) -> None:
        """Roll back to the last good checkpoint with half the learning rate, or give up.
        `step` is the step that failed (default: the one being taken), counted from 1."""
        st = self.state
        st["divergences"] += 1
        step = st["step"] + 1 if step is None else step
        if st["divergences"] > self.cfg.max_divergences:
            raise Diverged(
                f"training diverged ({what} at step {step:,}) {st['divergences']} times; stopped with the "
                f"last good checkpoint in {self.run_dir / ckpt.LATEST} (try a lower --lr or --clip-norm)"
            )
        st["lr_scale"] *= 0.5
        self._restore_last_good()
        # saved at once, so that a resume from here keeps the lowered rate and the count
        self._save(self.run_dir / ckpt.LATEST)
        self.say(
            f"charrnn: {what} at step {step:,}: restored the last good checkpoint (step {st['step']:,}) and halved "
            f"the learning rate (x{st['lr_scale']:g}); recovery {st['divergences']} of {self.cfg.max_divergences}"
        )

    def _checkpoint(self) -> None:
        """Write the latest checkpoint, and copy it to the best one when validation improved."""
        st = self.state
        val = st["val_loss"]
        improved = val is not None and (st["best_val_loss"] is None or val < st["best_val_loss"])
        if improved:
            st["best_val_loss"] = val
            st["best_step"] = st["step"]
        self._save(self.run_dir / ckpt.LATEST)
        if improved:
            atomic_copy(self.run_dir / ckpt.LATEST, self.run_dir / ckpt.BEST)

    def _write_sample(self, step: int, first_token: int) -> None:
        text = self.take_sample(first_token)
        with open(self.run_dir / ckpt.SAMPLES, "a", encoding="utf-8") as f:
            f.write(f"---- step {step} ----\n{text}\n")
        self.say(f"---- sample at step {step:,} ----\n{text}\n----")

    def _make_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total or None, initial=self.state["step"], unit="step", file=self.stream,
                    dynamic_ncols=True, smoothing=0.1)

    def _result(self, stopped: str) -> TrainResult:
        st = self.state
        return TrainResult(self.run_dir, st["step"], st["smoothed_loss"], st["val_loss"], st["best_val_loss"], stopped,
                           self.cfg.patience)


# ------------------------------------------------------------------------------------------------


def _explicit(cfg: TrainConfig) -> dict[str, Any]:
    """The settings of `cfg` that differ from the defaults: what the user actually asked for."""
    default = TrainConfig()
    return {k: v for k, v in cfg.to_dict().items() if v != getattr(default, k)}


def _generator_from(state: Any, source: Path) -> np.random.Generator:
    """A PCG64 generator restored from its saved state (validated: it comes from a file)."""
    rng = np.random.default_rng(0)
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        rng.bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise CheckpointError(f"{source}: malformed random generator state ({e})") from None
    return rng


def _finite_or_none(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def _check_resume_state(state: dict[str, Any], source: Path) -> None:
    """The training-state fields `load_checkpoint` leaves to the trainer (the file may be hostile)."""
    for key, low in (("n_tokens", 2), ("batch_size", 1), ("seq_len", 1)):
        value = state.get(key)
        if type(value) is not int or value < low:
            raise CheckpointError(f"{source}: training state {key!r} is missing or malformed")
    best_step = state.get("best_step", 0)
    if type(best_step) is not int or not 0 <= best_step < 2**63:
        raise CheckpointError(f"{source}: training state 'best_step' = {best_step!r} is malformed")
    for key in ("best_val_loss", "smoothed_loss", "val_loss"):
        value = state.get(key)
        # an int is checked by size: math.isfinite cannot even convert one beyond any float
        ok = value is None or (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) < 2**63)
        if not ok:
            raise CheckpointError(f"{source}: training state {key!r} = {value!r} is malformed")


def _missing_dirs(d: Path) -> list[Path]:
    """The directories `d.mkdir(parents=True)` would create, outermost first."""
    missing = []
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing[::-1]


def _remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process never renamed."""
    names = (ckpt.LATEST, ckpt.BEST, ckpt.CONFIG, ckpt.TOKENS)
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
    keep = []
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            record = None
        if isinstance(record, dict) and not (type(record.get("step")) is int and record["step"] > step):
            keep.append(line)
    if len(keep) != len(data.splitlines()):
        atomic_write_bytes(path, b"".join(keep))


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(cfg: TrainConfig, run_dir: str | Path, **kwargs: Any) -> TrainResult:
    """Train from scratch (or `resume=True`) in `run_dir`; see `Trainer` for the options."""
    return Trainer(cfg, run_dir, **kwargs).run()
