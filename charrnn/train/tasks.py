"""Training a classifier or a tagger: the language model's optimizers, schedule, clipping,
checkpoints and fault handling, over batches of whole texts instead of BPTT windows.

One step: the next batch of texts (grouped by length, tasks/data.py), loss and gradients of
every parameter, clip, update. Everything a step depends on (parameters, optimizer slots, the
step count, the data position, which is a function of (seed, epoch, batch), the dropout
generator) is in the checkpoint, so a run stopped and resumed is bit-identical to one that never
stopped. Validation loss picks best.safetensors and stops the run early after `patience`
validations without a new best. A NaN or infinite loss or gradient never reaches the parameters:
the run returns to its last checkpoint with half the learning rate, as the language model's does.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

import numpy as np

from ..settings import explicit_settings
from ..errors import CheckpointError, ConfigError, DataError
from ..model.params import input_weight
from ..optim import clip_grad_norm_, clip_grad_value_, global_grad_norm, make_optimizer
from ..io.lock import RunLock
from ..io.writer import atomic_copy, atomic_write_bytes
from .loop import Diverged, Interrupted, while_running
from .schedule import lr_at
from .state import restore_generator
from ..io import task_checkpoint as tck
from ..task_settings import TaskConfig, optimizer_options, validate
from ..data.labelled import (UNKNOWN, BucketBatcher, Encoded, Labels, Symbols, encode, file_digest, label_set,
                             read_examples, stratified_split)
from ..evaluate.tasks import scores, truth

AUTO_EPOCHS, AUTO_MIN_STEPS, AUTO_TIME_BUDGET, AUTO_EVALS, AUTO_PATIENCE = 10, 500, 900.0, 20, 5
# Settings a resumed run may change; the others would change what the run computes.
RESUMABLE = {"steps", "time_budget", "log_every", "eval_every", "patience", "threads", "max_divergences"}


@dataclass
class TaskData:
    symbols: Symbols
    labels: Labels
    train: Encoded
    val: Encoded | None
    digests: dict[str, str]  # sha256 of the files read: a resume must read the same


def data_files(cfg: TaskConfig) -> tuple[Path, Path | None]:
    """(training file, validation file or None) of a configuration, built-in data included."""
    if cfg.dataset is not None:
        from ..data.task_corpora import dataset_files

        files = dataset_files(cfg.dataset)
        return files["train"], files["val"]
    return Path(cfg.data), Path(cfg.val) if cfg.val else None


def load_data(cfg: TaskConfig) -> TaskData:
    path, val_path = data_files(cfg)
    examples = read_examples(cfg.task, path)
    digests = {"train": file_digest(path)}
    if val_path is not None:
        train_ex, val_ex = examples, read_examples(cfg.task, val_path)
        digests["val"] = file_digest(val_path)
        labels = label_set(cfg.task, train_ex, path)
        symbols = Symbols.of(train_ex)
        return TaskData(symbols, labels, encode(cfg.task, train_ex, symbols, labels, path),
                        encode(cfg.task, val_ex, symbols, labels, val_path), digests)
    labels = label_set(cfg.task, examples, path)
    tr, va = stratified_split(cfg.task, examples, cfg.val_frac, cfg.seed)
    if len(tr) == 0:
        raise DataError(f"{path}: too few examples to train on")
    train_ex = [examples[i] for i in tr]
    symbols = Symbols.of(train_ex)
    all_enc = encode(cfg.task, examples, symbols, labels, path)
    return TaskData(symbols, labels, all_enc.subset(tr), all_enc.subset(va) if len(va) else None, digests)


def class_weights(cfg: TaskConfig, data: TaskData) -> np.ndarray | None:
    """1 / frequency of each class in training, scaled to mean 1 over the examples (classes
    absent from training get 0); None unless --balance weights."""
    if cfg.balance != "weights":
        return None
    counts = np.bincount(data.train.targets, minlength=data.labels.size).astype(np.float64)
    w = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return w * len(data.train) / (w[data.train.targets].sum())


def make_batcher(cfg: TaskConfig, data: TaskData) -> BucketBatcher:
    weights = None
    if cfg.balance == "sampling":
        counts = np.bincount(data.train.targets, minlength=data.labels.size)
        weights = 1.0 / counts[data.train.targets]
    return BucketBatcher(data.train.lengths, cfg.batch_size, cfg.seed, weights)


def auto_plan(cfg: TaskConfig, batches_per_epoch: int, validates: bool,
              asked: Iterable[str] | None = None) -> TaskConfig:
    """The default plan of a run given neither --steps nor --time-budget; a setting the user gave
    (`asked`, see config.explicit_settings) is kept even at its default value."""
    if cfg.steps or cfg.time_budget:
        return cfg
    steps = max(AUTO_EPOCHS * batches_per_epoch, AUTO_MIN_STEPS)
    plan: dict[str, Any] = {"steps": steps, "time_budget": AUTO_TIME_BUDGET}
    asked = explicit_settings(cfg, asked)
    if validates and "eval_every" not in asked:
        plan["eval_every"] = min(cfg.eval_every, max(50, steps // AUTO_EVALS))
    if validates and "patience" not in asked:
        plan["patience"] = AUTO_PATIENCE
    return cfg.replace(**plan)


def fresh_state(data: TaskData) -> dict[str, Any]:
    return {"step": 0, "examples_seen": 0, "elapsed": 0.0, "lr_scale": 1.0, "divergences": 0,
            "best_val_loss": None, "best_step": 0, "val_loss": None, "val_accuracy": None, "smoothed_loss": None,
            "data": None, "dropout_rng": None, "digests": data.digests,
            "max_length": int(data.train.lengths.max())}  # the longest training text, for eval's note


class TaskTrainer:
    """A classification or tagging run in a run directory, fresh or resumed; `run()` trains."""

    def __init__(self, cfg: TaskConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False,
                 quiet: bool = False, json_log: bool = False, stream: TextIO | None = None,
                 asked: Iterable[str] | None = None) -> None:
        """`asked`: the names of the settings the user gave (the command line's flags), so that
        one given at its default value is still a request; None: those that differ from it."""
        self.quiet, self.json_log = quiet, json_log
        self.stream = stream or sys.stderr
        self.run_dir = Path(run_dir)
        self.asked = None if asked is None else frozenset(asked)
        self._signal: int | None = None
        self.lock: RunLock | None = None  # the run directory's write lock, held from set-up on
        try:
            if resume:
                self._resume(cfg)
            else:
                self._fresh(cfg, force)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        # where this invocation stops; the schedule follows cfg.steps. A caller may move it.
        self.total_steps: int = self.cfg.steps

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    # -- set-up -----------------------------------------------------------------------------------

    def _fresh(self, cfg: TaskConfig, force: bool) -> None:
        validate(cfg)
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise ConfigError(f"--out {d} exists and is not a directory")
        if any((d / n).exists() for n in (tck.LATEST, tck.BEST, tck.CONFIG)) and not force:
            raise ConfigError(f"{d} already holds a run: use --resume {d} to continue it, or --force to replace it")
        data = load_data(cfg)  # every data error before anything is written
        self._build(cfg, data)
        self.cfg = auto_plan(cfg, self.batcher.batches_per_epoch, data.val is not None, self.asked)
        self.model = tck.build_model(cfg.task, {**self._model_shape(cfg, data)}, seed=cfg.seed)
        self.model.params[input_weight(self.model.cell, 0)][:, UNKNOWN] = 0.0  # an unseen character: no input at all
        self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.lr, **optimizer_options(cfg))
        self.state = fresh_state(data)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create {d}: {e.strerror or e}") from None
        self.lock = RunLock(d).acquire()  # a run another process writes is refused before anything changes
        for n in (tck.LATEST, tck.BEST, tck.METRICS):
            (d / n).unlink(missing_ok=True)
        self._save(d / tck.LATEST)
        atomic_write_bytes(d / tck.CONFIG, (json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        n_val = len(data.val) if data.val is not None else 0
        self.say(f"charrnn {cfg.task}: {self.model} on {len(data.train):,} examples ({n_val:,} for validation), "
                 f"{data.labels.size} {'classes' if cfg.task == 'classify' else 'tags'}, "
                 f"{data.symbols.size - 1} characters; run directory {d}")

    @staticmethod
    def _model_shape(cfg: TaskConfig, data: TaskData) -> dict[str, Any]:
        return {"vocab_size": data.symbols.size, "num_outputs": data.labels.size, "hidden_size": cfg.hidden_size,
                "num_layers": cfg.num_layers, "dtype": cfg.dtype, "init": cfg.init, "cell": cfg.cell,
                "dropout": cfg.dropout, "feedback": cfg.feedback}

    def _build(self, cfg: TaskConfig, data: TaskData) -> None:
        self.data = data
        self.batcher = make_batcher(cfg, data)
        self.weights = class_weights(cfg, data)

    def _resume(self, overrides: TaskConfig) -> None:
        d = self.run_dir
        if d.is_dir() and not (d / tck.LATEST).exists():
            raise CheckpointError(f"{d}: no checkpoint in this directory to resume (no {tck.LATEST})")
        c = tck.load_task_checkpoint(d / tck.LATEST if d.is_dir() else d, overrides.task)
        self.run_dir = c.path.parent
        asked = explicit_settings(overrides, self.asked)
        fixed = sorted(k for k in asked if k not in RESUMABLE | {"task"} and getattr(c.config, k) != asked[k])
        if fixed:
            raise ConfigError(f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming")
        cfg = c.config.replace(**{k: v for k, v in asked.items() if k in RESUMABLE})
        validate(cfg)
        self.lock = RunLock(self.run_dir).acquire()
        data = load_data(cfg)
        if c.state.get("digests") != data.digests:
            raise DataError("the data files changed since this run started: resuming on other data would not "
                            "continue the same run")
        if data.symbols.chars != c.symbols.chars or data.labels.names != c.labels.names:
            raise DataError("the data no longer gives the run's characters and labels")
        self._build(cfg, data)
        self.cfg, self.model = cfg, c.model
        self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.lr, **optimizer_options(cfg))
        self._restore(c)
        self.say(f"charrnn {cfg.task}: resuming {self.run_dir} at step {self.state['step']:,}")

    def _restore(self, c: tck.TaskCheckpoint) -> None:
        for name, p in self.model.params.items():
            if p is not c.model.params[name]:
                p[...] = c.model.params[name]
        if c.optimizer_meta is None:
            raise CheckpointError(f"{c.path}: no optimizer state: not a training checkpoint")
        self.optimizer.load_state_dict(c.optimizer_arrays, c.optimizer_meta)
        self.batcher.load_state_dict(c.state.get("data"), str(c.path))
        if c.state.get("dropout_rng") is not None:
            self.model.dropout_rng = restore_generator(c.state["dropout_rng"], c.path)
        step = c.state.get("step")
        if type(step) is not int or step < 0:
            raise CheckpointError(f"{c.path}: malformed training state")
        self.state = dict(c.state)

    def _save(self, path: Path) -> None:
        self.state["data"] = self.batcher.state_dict()
        self.state["dropout_rng"] = self.model.dropout_rng.bit_generator.state
        tck.save_task_checkpoint(path, self.model, self.data.symbols, self.data.labels, self.cfg, self.state,
                                 self.optimizer)

    # -- the loop ---------------------------------------------------------------------------------

    def validate(self) -> tuple[float | None, float | None]:
        if self.data.val is None:
            return None, None
        loss, pred = scores(self.model, self.data.val)
        return loss, float((pred == truth(self.data.val)).mean())

    def run(self) -> dict[str, Any]:
        with while_running(self, self.lock):
            return self._loop()

    def _loop(self) -> dict[str, Any]:
        cfg, st = self.cfg, self.state
        total, budget = self.total_steps, cfg.time_budget
        started = time.perf_counter()
        elapsed0 = st["elapsed"]
        self._saved_at = st["step"]
        self._losses: list[float] = []
        stopped, lr, grad_norm = "steps", float("nan"), float("nan")
        metrics = open(self.run_dir / tck.METRICS, "a", encoding="utf-8")

        def report(evaluated: bool) -> None:
            st["elapsed"] = elapsed0 + time.perf_counter() - started
            rec = {"step": st["step"], "epoch": round(self.batcher.progress, 4),
                   "train_loss": float(np.mean(self._losses)) if self._losses else None,
                   "val_loss": st["val_loss"] if evaluated else None,
                   "val_accuracy": st["val_accuracy"] if evaluated else None,
                   "lr": lr, "grad_norm": grad_norm, "elapsed": round(st["elapsed"], 3)}
            self._losses = []
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            if self.json_log:
                print(json.dumps(rec), flush=True)
            elif evaluated:
                val = "" if rec["val_loss"] is None else \
                    f", validation loss {rec['val_loss']:.4f}, accuracy {rec['val_accuracy']:.4f}"
                self.say(f"step {st['step']:,}: training loss {st['smoothed_loss']:.4f}{val}")

        try:
            while True:
                st = self.state
                run_time = time.perf_counter() - started
                if total and st["step"] >= total:
                    break
                if budget and run_time >= budget:
                    stopped = "time"
                    break
                if self._signal is not None:
                    stopped = "signal"
                    break
                idx = self.batcher.next_batch()
                inputs, targets = self.data.train.batch(idx)
                if cfg.task == "classify":
                    loss, grads = self.model.loss_and_grads(inputs, targets, class_weights=self.weights)
                else:
                    loss, grads = self.model.loss_and_grads(inputs, targets)
                grad_norm = global_grad_norm(grads)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    self._recover(f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}")
                    continue
                if cfg.clip_value:
                    clip_grad_value_(grads, cfg.clip_value)
                if cfg.clip_norm:
                    clip_grad_norm_(grads, cfg.clip_norm)
                lr = lr_at(cfg, st["step"], cfg.steps, self.batcher.batches_per_epoch,  # type: ignore[arg-type]
                           run_time / budget if budget else None) * st["lr_scale"]
                self.optimizer.lr = lr
                self.optimizer.step(grads)
                if not all(np.isfinite(p).all() for p in self.model.params.values()):
                    self._recover("a parameter overflowed in the update")
                    continue
                st["step"] += 1
                st["examples_seen"] += len(idx)
                prev = st["smoothed_loss"] if st["smoothed_loss"] is not None else loss
                st["smoothed_loss"] = 0.95 * prev + 0.05 * loss
                self._losses.append(loss)
                step = st["step"]
                if (cfg.eval_every and step % cfg.eval_every == 0) or (total and step >= total):
                    st["val_loss"], st["val_accuracy"] = self.validate()
                    report(True)
                    self._checkpoint()
                    if cfg.patience and cfg.eval_every and step - st["best_step"] >= cfg.patience * cfg.eval_every:
                        stopped = "early"
                        break
                elif step % cfg.log_every == 0:
                    report(False)
            st = self.state
            if st["step"] != self._saved_at:
                st["val_loss"], st["val_accuracy"] = self.validate()
                report(True)
                self._checkpoint()
        finally:
            metrics.close()
        if stopped == "signal":
            name = signal.Signals(self._signal).name
            raise Interrupted(f"stopped by {name} at step {self.state['step']:,}; checkpoint written, continue with: "
                              f"charrnn {cfg.task} train --resume {self.run_dir}", 128 + self._signal)
        return {"step": self.state["step"], "stopped": stopped, "val_loss": self.state["val_loss"],
                "val_accuracy": self.state["val_accuracy"], "best_val_loss": self.state["best_val_loss"],
                "run_dir": str(self.run_dir)}

    def _checkpoint(self) -> None:
        st = self.state
        val = st["val_loss"]
        improved = val is not None and math.isfinite(val) and (st["best_val_loss"] is None or val < st["best_val_loss"])
        if improved:
            st["best_val_loss"], st["best_step"] = val, st["step"]
        self._save(self.run_dir / tck.LATEST)
        if improved or self.data.val is None:
            atomic_copy(self.run_dir / tck.LATEST, self.run_dir / tck.BEST)
        self._saved_at = st["step"]

    def _recover(self, what: str) -> None:
        st = self.state
        divergences, lr_scale = st["divergences"] + 1, st["lr_scale"] * 0.5
        if divergences > self.cfg.max_divergences:
            raise Diverged(f"training diverged ({what}) {divergences} times; stopped with the last good checkpoint "
                           f"in {self.run_dir / tck.LATEST} (try a lower --lr or --clip-norm)")
        self._restore(tck.load_task_checkpoint(self.run_dir / tck.LATEST))
        self.state["divergences"], self.state["lr_scale"] = divergences, lr_scale
        self._save(self.run_dir / tck.LATEST)
        self._saved_at = self.state["step"]
        self.say(f"charrnn: {what} at step {self.state['step'] + 1:,}: restored the last good checkpoint and halved "
                 f"the learning rate (x{lr_scale:g})")


def train_task(cfg: TaskConfig, run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Train (or with resume=True continue) a classifier or tagger in `run_dir`."""
    return TaskTrainer(cfg, run_dir, **kwargs).run()

