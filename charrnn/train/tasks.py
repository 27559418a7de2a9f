"""The classifier's and the tagger's objective: batches of whole texts instead of BPTT windows.

One step takes the next batch of texts (grouped by length, data/labelled.py) and computes the loss
and gradients of every parameter; the loop (loop.py) clips, updates, validates, checkpoints and
recovers exactly as it does for the language model. Everything a step depends on (parameters,
optimizer slots, the step count, the data position, which is a function of (seed, epoch, batch),
the dropout generator) is in the checkpoint, so a run stopped and resumed is bit-identical to one
that never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

import numpy as np

from ..data.labelled import (UNKNOWN, BucketBatcher, Encoded, Labels, Symbols, encode, file_digest, label_set,
                             read_examples, stratified_split)
from ..errors import CheckpointError, ConfigError, DataError
from ..io import task_checkpoint as tck
from ..io.layout import CONFIG, LATEST, METRICS, Claim, check_new_run_dir, clear_run, remove_temporaries, \
    trim_metrics, write_json
from ..io.lock import RunLock
from ..model.params import input_weight
from ..optim import Optimizer, make_optimizer
from ..settings import TASK, Facts, TaskConfig, resolve, resumed, validate
from ..threads import requested_threads
from .objective import TextBatch
from .schedule import optimizer_options
from ..io.state import TrainState, restore_generator

Say = Callable[[str], None]


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
    from ..io.readers import check_path

    # an empty path is no file, never "." (Path("") is the current folder)
    val = Path(check_path(cfg.val, DataError, "validation file")) if cfg.val is not None else None
    return Path(check_path(cfg.data, DataError, "data file")), val


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


@dataclass
class TaskRun:
    """A classifier's or tagger's run ready to train: everything the loop reads and changes."""

    run_dir: Path
    cfg: TaskConfig
    data: TaskData
    batcher: BucketBatcher
    weights: np.ndarray | None  # class weights of the loss (--balance weights), or None
    model: Any  # CharClassifier or CharTagger
    optimizer: Optimizer
    state: TrainState
    engine: Any = None
    lock: RunLock | None = None
    hidden: Any = None  # nothing is carried from one batch of whole texts into the next

    unit = "examples"
    says_validations = True  # without a bar, each validation is a line
    val_scored = 0  # examples the last validation scored

    @property
    def kind(self) -> str:
        return self.cfg.task

    @property
    def uniform_loss(self) -> float:
        return math.log(self.data.labels.size)

    @property
    def steps_per_epoch(self) -> int:
        return self.batcher.batches_per_epoch

    @property
    def progress(self) -> float:
        return self.batcher.progress

    @property
    def validates(self) -> bool:
        return self.data.val is not None

    @property
    def resume_command(self) -> str:
        return f"charrnn {self.cfg.task} train --resume {self.run_dir}"

    @property
    def val_size(self) -> int:
        return 0 if self.data.val is None else len(self.data.val)

    @property
    def units_per_step(self) -> int:
        return self.batcher.batch_size

    def write_config(self) -> None:
        write_json(self.run_dir / CONFIG, self.cfg.to_dict())

    def next_batch(self) -> TextBatch:
        idx = self.batcher.next_batch()
        inputs, targets = self.data.train.batch(idx)
        return TextBatch(idx, inputs, targets)

    def loss_and_grads(self, batch: TextBatch, hidden: Any) -> tuple[float, dict[str, np.ndarray], Any]:
        if self.cfg.task == "classify":
            loss, grads = self.model.loss_and_grads(batch.inputs, batch.targets, class_weights=self.weights)
        else:
            loss, grads = self.model.loss_and_grads(batch.inputs, batch.targets)
        return loss, grads, None

    def compiled_step(self) -> None:
        return None

    def count(self, batch: TextBatch) -> None:
        self.state.examples_seen += batch.size

    def validate(self, full: bool, stream: TextIO | None, limit: int | None = None) -> float | None:
        """The validation loss (nats per text for a classifier, per character for a tagger,
        teacher-forced with R), and the accuracy into the state; a tagger with R also its
        free-running accuracy (greedy, on its own previous tags: what eval and predict do), as the
        teacher-forced one flatters it. Every validation scores the whole validation set: it is small."""
        from ..evaluate.tasks import decode_all, scores, truth

        self.state.val_accuracy = self.state.val_free_accuracy = None
        if self.data.val is None:
            return None
        model = self.engine.inference_model()
        loss, pred = scores(model, self.data.val)
        y = truth(self.data.val)
        self.state.val_accuracy = float((pred == y).mean())
        if model.task == "tag" and model.feedback:
            self.state.val_free_accuracy = float((decode_all(model, self.data.val) == y).mean())
        self.val_scored = len(self.data.val)
        return loss

    def sample(self, step: int, batch: TextBatch) -> None:
        return None

    def record(self, evaluated: bool) -> dict[str, Any]:
        st = self.state
        record = {"examples": st.examples_seen, "val_loss": st.val_loss if evaluated else None,
                  "val_accuracy": st.val_accuracy if evaluated else None}
        if self.cfg.task == "tag" and self.cfg.feedback:
            record["val_free_running_accuracy"] = st.val_free_accuracy if evaluated else None
        return record

    def postfix(self) -> list[str]:
        st = self.state
        return [] if st.val_loss is None else [f"val {st.val_loss:.3f} nats, accuracy {accuracy_words(st, 3)}"]

    def validation_words(self) -> str:
        st = self.state
        if st.val_loss is None:
            return ""
        return f", validation loss {st.val_loss:.4f}, accuracy {accuracy_words(st, 4)}"

    # -- checkpoints ---------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.engine is not None:
            self.engine.pull(self)
        self.state.data = self.batcher.state_dict()
        self.state.dropout_rng = self.model.dropout_rng.bit_generator.state
        tck.save_task_checkpoint(path, self.model, self.data.symbols, self.data.labels, self.cfg,
                                 self.state.to_json(TASK), self.optimizer)

    def load(self, path: Path) -> tck.TaskCheckpoint:
        return tck.load_task_checkpoint(path, self.cfg.task)

    def restore(self, c: tck.TaskCheckpoint) -> None:
        for name, p in self.model.params.items():
            if p is not c.model.params[name]:
                p[...] = c.model.params[name]
        if c.optimizer_meta is None:
            raise CheckpointError(f"{c.path}: no optimizer state: not a training checkpoint")
        self.optimizer.load_state_dict(c.optimizer_arrays, c.optimizer_meta)
        self.batcher.load_state_dict(c.state.get("data"), str(c.path))
        if c.state.get("dropout_rng") is not None:
            self.model.dropout_rng = restore_generator(c.state["dropout_rng"], c.path)
        self.state = TrainState.from_json(c.state, c.path, TASK)
        if self.engine is not None:
            self.engine.push(self)


# ------------------------------------------------------------------------------------------------
# set-up


def fresh_run(task: str, given: Mapping[str, Any], run_dir: Path, force: bool, say: Say) -> TaskRun:
    """A new classifier or tagger run in `run_dir` from the settings given by name: every data
    error before anything is written, then the first checkpoint and config.json."""
    cfg = TaskConfig(**(dict(given) | {"task": task}))
    validate(cfg)
    requested_threads()
    d = run_dir
    replacing = check_new_run_dir(d, force, f"use --resume {d} to continue it, or --force to replace it")
    data = load_data(cfg)
    batcher = make_batcher(cfg, data)
    cfg = resolve(cfg, given, Facts(windows_per_epoch=batcher.batches_per_epoch, validates=data.val is not None))
    validate(cfg)
    model = tck.build_model(task, _model_shape(cfg, data), seed=cfg.seed)
    model.params[input_weight(model.cell, 0)][:, UNKNOWN] = 0.0  # an unseen character: no input at all
    optimizer = make_optimizer(cfg.optimizer, model.params, cfg.lr, **optimizer_options(cfg))
    state = TrainState(digests=data.digests, max_length=int(data.train.lengths.max()))
    claim = Claim(d)
    try:
        remove_temporaries(d)
        s = TaskRun(d, cfg, data, batcher, class_weights(cfg, data), model, optimizer, state, lock=claim.lock)
        if replacing:
            clear_run(d)
        claim.written += [d / LATEST, d / CONFIG]
        s.save(d / LATEST)  # the first "last good state", for divergence recovery
        write_json(d / CONFIG, cfg.to_dict())
    except BaseException:
        claim.undo()
        raise
    n_val = len(data.val) if data.val is not None else 0
    say(f"charrnn {task}: {model} on {len(data.train):,} examples ({n_val:,} for validation), "
        f"{data.labels.size} {'classes' if task == 'classify' else 'tags'}, "
        f"{data.symbols.size - 1} characters; run directory {d}")
    return s


def _model_shape(cfg: TaskConfig, data: TaskData) -> dict[str, Any]:
    return {"vocab_size": data.symbols.size, "num_outputs": data.labels.size, "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_layers, "dtype": cfg.dtype, "init": cfg.init, "cell": cfg.cell,
            "dropout": cfg.dropout, "feedback": cfg.feedback, "residual": cfg.residual, "layer_norm": cfg.layer_norm}


def resume_run(task: str, given: Mapping[str, Any], run_dir: Path, say: Say, out: Path | None = None,
               force: bool = False) -> TaskRun:
    """The run saved in `run_dir` (a run directory or its latest checkpoint) where it stopped; of
    the settings `given`, only those a resume may change may differ from the saved ones."""
    if out is not None and Path(out) != run_dir:
        raise ConfigError("give the run directory once: --resume RUN_DIR (without --out)")
    if run_dir.is_dir() and not (run_dir / LATEST).exists():
        raise CheckpointError(f"{run_dir}: no checkpoint in this directory to resume (no {LATEST})")
    c = tck.load_task_checkpoint(run_dir / LATEST if run_dir.is_dir() else run_dir, task)
    if c.path.name != LATEST:
        raise ConfigError(f"{c.path} is not the latest checkpoint of {c.path.parent}: resume the run directory")
    given = {k: v for k, v in given.items() if k != "task"}
    if given.get("backend") == "numpy" and "device" not in given:
        given["device"] = "cpu"  # a GPU run resumed on the NumPy engine leaves its device
    cfg, _ = resumed(c.config, given)
    saved = TrainState.from_json(c.state, c.path, TASK)
    requested_threads()
    d = c.path.parent
    lock = RunLock(d).acquire()
    try:
        remove_temporaries(d)
        data = load_data(cfg)
        if saved.digests is not None and saved.digests != data.digests:
            raise DataError("the data files changed since this run started: resuming on other data would not "
                            "continue the same run")
        if data.symbols.chars != c.symbols.chars or data.labels.names != c.labels.names:
            raise DataError("the data no longer gives the run's characters and labels")
        optimizer = make_optimizer(cfg.optimizer, c.model.params, cfg.lr, **optimizer_options(cfg))
        s = TaskRun(d, cfg, data, make_batcher(cfg, data), class_weights(cfg, data), c.model, optimizer, saved,
                    lock=lock)
        s.restore(c)
        trim_metrics(d / METRICS, s.state.step)
        write_json(d / CONFIG, cfg.to_dict())
    except BaseException:
        lock.release()
        raise
    say(f"charrnn {task}: resuming {d} at step {s.state.step:,}")
    return s


def accuracy_words(st: Any, digits: int) -> str:
    """The validation accuracy; a tagger with R's two, each named ("0.917 free-running, 0.988
    teacher-forced"), so the flattering one is never read as the other."""
    if st.val_free_accuracy is None:
        return f"{st.val_accuracy:.{digits}f}"
    return f"{st.val_free_accuracy:.{digits}f} free-running, {st.val_accuracy:.{digits}f} teacher-forced"
