"""The language model's objective: B streams through a text, truncated BPTT over windows of T.

One step takes the next (B, T) window of every stream and runs forward and BPTT from the state
carried out of the previous window; the state is zeroed only when the data wraps into a new epoch.
Everything a step depends on (parameters, optimizer slots, the carried state, the data position,
the random generators, the step count that drives the schedule) is in the checkpoint, so a run
stopped and resumed is bit-identical to one that never stopped.

Set-up makes a `LanguageModelRun` in one of three ways: fresh (`fresh_run`), resumed where it
stands (`resume_run`), or a checkpoint continued in another directory (`resume_run` with `out`).
`LanguageModelRun.save` and `.restore` are the one place the run is written to and read back from
a checkpoint: the loop saves through the first and rolls back after a divergence through the
second, as a resume does.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import numpy as np

from ..data.text import (MIN_SPLIT_TOKENS, Batcher, EncodedText, Vocab, collect_vocab, encode_file, fit_batch_shape,
                         ids_digest, load_encoded, name_symbols, split_train_val)
from ..errors import CheckpointError, ConfigError, DataError
from ..io import checkpoint as ckpt
from ..data.corpus import Corpus, expand
from ..errors import show_path
from ..io.layout import (BEST, CONFIG, LATEST, METRICS, TEXT, TOKENS, Claim, check_new_run_dir, clear_run, discard,
                         metrics_upto, remove_temporaries, trim_metrics, write_json)
from ..io.lock import RunLock
from ..io.writer import atomic_copy, atomic_write_bytes, replace_durably
from ..model import CharRNN, count_parameters
from ..model.params import gates, transplant
from ..optim import Optimizer, make_optimizer
from ..settings import (AUTO_TIME_BUDGET, DATASETS, LM, PATH_SETTINGS, Facts, TrainConfig, adopt_source, requested_train,
                        resolve, resumed, validate)
from ..threadplan import plan_training
from ..threads import requested_threads
from .objective import Window
from .plan import PLANNED, Planner
from .schedule import optimizer_options
from ..io.state import TrainState, restore_generator

# Refuse a run whose training memory estimate exceeds this fraction of physical memory.
MEMORY_FRACTION = 0.8
# A whole-split validation of at least this many characters shows a progress bar.
FULL_VALIDATION_BAR = 1_000_000

Say = Callable[[str], None]


@dataclass
class LanguageModelRun:
    """A language model's run ready to train: everything the loop reads and changes."""

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
    hidden: Any  # (L, B, H) arrays, carried from one window into the next (the engine's own form while training)
    state: TrainState
    engine: Any = None  # what computes the steps (train/engine.py), attached by the trainer
    lock: RunLock | None = None  # held from set-up on: this process alone writes to run_dir

    kind = LM
    unit = "chars"
    says_validations = False  # the progress bar shows them
    val_scored = 0  # characters the last validation scored
    @property
    def vocab(self) -> Vocab:
        return self.encoded.vocab

    @property
    def batch_size(self) -> int:
        return self.batcher.batch_size

    @property
    def seq_len(self) -> int:
        return self.batcher.seq_len

    # -- the objective -------------------------------------------------------------------------

    @property
    def uniform_loss(self) -> float:
        return math.log(self.vocab.size)

    @property
    def steps_per_epoch(self) -> int:
        return self.batcher.windows_per_epoch

    @property
    def progress(self) -> float:
        return self.batcher.progress

    @property
    def validates(self) -> bool:
        return self.val_ids is not None

    @property
    def resume_command(self) -> str:
        return f"charrnn train --resume {self.run_dir}"

    @property
    def val_size(self) -> int:
        """Characters a validation of the whole split scores."""
        return 0 if self.val_ids is None else len(self.val_ids) - 1

    @property
    def units_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def write_config(self) -> None:
        write_json(self.run_dir / CONFIG, _config_record(self.cfg, self))

    def next_batch(self) -> Window:
        x, y, reset = self.batcher.next_batch()
        if reset:  # a new epoch: the streams start over from a zero state
            self.hidden = self.engine.initial_state(self.batch_size)
        return Window(x, y)

    def loss_and_grads(self, batch: Window, hidden: Any) -> tuple[float, dict[str, np.ndarray], Any]:
        return self.model.loss_and_grads(batch.x, batch.y, hidden)

    def compiled_step(self) -> Any:
        from .fused import FusedStep

        c = self.cfg
        return FusedStep.for_model(self.model, self.optimizer, self.batch_size, c.clip_value, c.clip_norm,
                                   c.single_bias)

    def count(self, batch: Window) -> None:
        self.state.chars_seen += batch.size

    def validate(self, full: bool, stream: TextIO | None, limit: int | None = None) -> float | None:
        """Validation nats/char: of the fixed periodic sample, or of the whole split (`full`, the
        run's last validation; with `limit`, a sample of that many characters of it, when the whole
        would not fit in the time budget); see evaluate/lm.py. `stream`: where a long one shows its
        progress."""
        from ..evaluate.lm import EvalResult, evaluate_ids, evaluate_sample, periodic_budget

        if self.val_ids is None:
            self.val_scored = 0
            return None
        model, share = self.engine.inference_model(), self.engine.eval_share
        if not full or limit is not None:
            budget = limit or periodic_budget(self.cfg.eval_max_chars, self.cfg.eval_every, self.batch_size,
                                              self.seq_len)
            part = evaluate_sample(model, self.val_ids, budget, share=share)
        elif stream is None or len(self.val_ids) < FULL_VALIDATION_BAR or share[1] > 1:
            part = evaluate_ids(model, self.val_ids, share=share)
        else:  # every character: on a large split this takes a while, so it shows its progress
            from tqdm import tqdm

            with tqdm(total=len(self.val_ids) - 1, desc="validation", unit="char", unit_scale=True, leave=False,
                      file=stream) as bar:
                part = evaluate_ids(model, self.val_ids, progress=bar.update)
        # under torchrun each process scored its share of the streams: the parts add up
        nats, chars = self.engine.sum_across([part.nats, float(part.chars)])
        self.val_scored = int(chars)
        return EvalResult(nats, int(chars)).nats_per_char

    def sample(self, step: int, batch: Window) -> str | None:
        """The training-time sample due at `step`, from the window's first input character."""
        if not (self.cfg.sample_every and step % self.cfg.sample_every == 0):
            return None
        from ..sample import SampleConfig, generate

        sc = SampleConfig(length=self.cfg.sample_length, temperature=self.cfg.sample_temperature)
        ids = generate(self.engine.inference_model(), np.array([int(batch.x[0, 0])]), sc, self.sample_rng)
        return self.vocab.decode(ids)

    def record(self, evaluated: bool) -> dict[str, Any]:
        from ..diagnostics.gradflow import spectral_radii
        from ..evaluate.lm import NATS_TO_BITS

        val = self.state.val_loss if evaluated else None
        out: dict[str, Any] = {"chars": self.state.chars_seen, "val_nats_per_char": val,
                               "val_bits_per_char": val * NATS_TO_BITS if val is not None else None}
        if val is not None:  # of the validation split's val_size: fewer for a sample of it
            out["val_chars"] = self.val_scored
        if evaluated:  # the recurrent weights' spectral radius per layer and gate block: an eigvals per block
            m = self.model
            out["spectral_radius"] = spectral_radii(m.params, m.num_layers, m.hidden_size, m.cell)
        return out

    def postfix(self) -> list[str]:
        from ..evaluate.lm import NATS_TO_BITS

        val = self.state.val_loss
        return [] if val is None else [f"val {val:.3f} nats ({val * NATS_TO_BITS:.3f} bits)"]

    def validation_words(self) -> str:
        return ""

    # -- checkpoints ---------------------------------------------------------------------------

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
        ckpt.save_checkpoint(path, self.model, self.vocab, self.cfg, self.state.to_json(LM), self.optimizer, hidden)

    def load(self, path: Path) -> ckpt.Checkpoint:
        return ckpt.load_checkpoint(path)

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
        self.state = TrainState.from_json(c.state, c.path, LM)
        if self.engine is not None:
            self.engine.push(self)


# ------------------------------------------------------------------------------------------------
# a fresh run


def fresh_run(given: Mapping[str, Any], run_dir: Path, force: bool, say: Say,
              texts: Sequence[str] | None = None) -> LanguageModelRun:
    """Set a new run up in `run_dir` (replacing one there only with `force`) from the settings
    given by name, and write its first checkpoint and config.json. `texts`: strings to train on
    instead of a file, joined with a newline between two; they are kept in the run directory
    (text.txt), from which a resume reads them when it needs the text again."""
    if texts is not None:
        given = dict(given, text=str(Path(run_dir).absolute() / TEXT))  # written once the directory is claimed
    cfg = requested_train(given)
    requested_threads()  # CHARRNN_THREADS: refused now, not at the first step after an old run is gone
    d = run_dir
    replacing = check_new_run_dir(d, force, f"use --resume {d} to continue it, or --force to replace it")
    corpus = None if texts is not None else _text_source(cfg)
    source = _fine_tuning_source(cfg.init_from) if cfg.init_from is not None else None
    if source is not None:
        cfg = adopt_source(cfg, given, _source_facts(source))
    # Nothing is left half-made: the text is encoded under a temporary name and everything is
    # checked before an old run (--force) is removed; on any failure, even Ctrl-C, what this
    # call created is removed again.
    claim = Claim(d)
    staged = d / f".{TOKENS}.new"
    claim.written.append(staged)
    try:
        remove_temporaries(d)  # garbage of a killed process, never part of a run
        if texts is not None:  # the strings kept as the run's text file
            claim.written.append(d / TEXT)
            atomic_write_bytes(d / TEXT, "\n".join(texts).encode("utf-8", errors="surrogatepass"))
            corpus = _text_source(cfg)
        for note in corpus.notes() if isinstance(corpus, Corpus) else ():
            say(f"charrnn: {note}")
        if source is None:
            encoded = encode_file(corpus, staged, encoding=cfg.encoding)
        else:
            encoded = _encode_for_fine_tuning(corpus, staged, source.vocab, cfg.extend_vocab)
        cfg, batcher, val_ids, n_train = _plan(cfg, given, encoded, say)
        model = CharRNN(encoded.vocab.size, cfg.hidden_size, cfg.num_layers, cfg.dtype, cfg.seed, cfg.init,
                        cell=cfg.cell, dropout=cfg.dropout, residual=cfg.residual, layer_norm=cfg.layer_norm)
        if source is not None:  # its weights, with the new symbols' slices as initialised just now
            transplant(source.model.params, model.params, source.vocab.positions_in(encoded.vocab), model.cell)
        optimizer = make_optimizer(cfg.optimizer, model.params, cfg.lr, **optimizer_options(cfg))
        B, T = batcher.batch_size, batcher.seq_len
        s = LanguageModelRun(d, cfg, encoded, batcher, val_ids, n_train, len(encoded) - n_train, model, optimizer,
                             sample_rng=np.random.default_rng([cfg.seed, 1]), hidden=model.initial_state(B),
                             state=TrainState(batch_size=B, seq_len=T, n_tokens=len(encoded),
                                              text_sha256=encoded.text_sha256, tokens_sha256=encoded.ids_sha256,
                                              files=_listing(corpus)),
                             lock=claim.lock)
        if cfg.backend == "numpy":  # the count of cores, before the first checkpoint records it
            plan_training(model, B, T, given=cfg.threads, say=say)
        if replacing:
            clear_run(d)
        claim.written += [d / TOKENS, d / LATEST, d / CONFIG]
        _install_tokens(staged, d / TOKENS)
        encoded.path = d / TOKENS
        # the checkpoint first: a run directory with a config.json always has one to resume
        s.save(d / LATEST)  # the first "last good state", for divergence recovery
        write_json(d / CONFIG, _config_record(cfg, s))
    except BaseException:
        claim.undo()
        raise
    if source is not None:
        added = encoded.vocab.size - source.vocab.size
        say(f"charrnn: fine-tuning the weights of {source.path}" + (f", {added} new symbol(s) added" if added else ""))
    say(
        f"charrnn: {model} on {len(encoded):,} characters ({encoded.vocab.size} symbols); "
        f"{s.n_train:,} for training, {s.n_val:,} for validation; run directory {d}"
    )
    return s


def _plan(cfg: TrainConfig, given: Mapping[str, Any], encoded: EncodedText, say: Say) -> tuple[TrainConfig, Batcher, np.ndarray | None, int]:
    """The run's resolved configuration and data: the text split, the batch fitted to it, every
    automatic choice made (settings.resolve) and the memory it needs checked."""
    n = len(encoded)
    if encoded.vocab.size < 2:
        raise DataError(
            f"{_name(cfg)} holds only one distinct symbol ({encoded.vocab.symbols[0]!r}, "
            f"{n:,} time(s)): there is nothing to predict; training needs at least 2 distinct symbols"
        )
    if cfg.val_frac and int(n * cfg.val_frac) < MIN_SPLIT_TOKENS:
        # A text this short is better learned whole than refused; the saved config says so.
        say(f"charrnn: the text has only {n:,} tokens, too few to hold out --val-frac {cfg.val_frac:g} "
            "for validation: training on all of it, without validation")
        cfg = cfg.replace(val_frac=0.0)
    train_range, val_range = split_train_val(n, cfg.val_frac)
    n_train = len(train_range)
    B, T, message = fit_batch_shape(n_train, cfg.batch_size, cfg.seq_len)
    batcher = Batcher(encoded.ids[:n_train], B, T)
    facts = Facts(n_tokens=n, windows_per_epoch=batcher.windows_per_epoch, validates=val_range is not None)
    if plans_model(cfg, facts):
        settings, reason = Planner(encoded.vocab.size, n_train, cfg.time_budget or AUTO_TIME_BUDGET, B, T, cfg.dtype,
                                   {k: getattr(cfg, k) for k in PLANNED if k in given}).plan()
        cfg = cfg.replace(**settings, plan=reason)
        say(f"charrnn: the plan for {reason}")
    else:
        cfg = cfg.replace(plan=None)  # a plan given back in a --config file is not this run's
    cfg = resolve(cfg, given, facts)
    validate(cfg)
    V, H, L = encoded.vocab.size, cfg.hidden_size, cfg.num_layers
    # judged at the batch and window the text leaves (a short text shrinks them), not as asked
    need = estimate_memory(V, H, L, B, T, np.dtype(cfg.dtype).itemsize, cfg.cell)
    have = physical_memory()
    if have and need > MEMORY_FRACTION * have:
        raise ConfigError(
            f"this model and batch need about {need / 2**30:.1f} GiB to train, more than this machine's "
            f"{have / 2**30:.1f} GiB allows: lower --hidden-size, --num-layers, --batch-size or --seq-len"
        )
    if message:
        say(f"charrnn: {message}")
    val_ids = encoded.ids[val_range.start : val_range.stop] if val_range is not None else None
    return cfg, batcher, val_ids, n_train


def plans_model(cfg: TrainConfig, facts: Facts) -> bool:
    """Whether the time-budget plan chooses this run's model (train/plan.py): a run without --steps
    that validates, on the NumPy engine (whose speed the plan measures), and whose model is not
    fixed by a preset or a fine-tuning source."""
    return (not cfg.steps and facts.validates and cfg.backend == "numpy" and cfg.preset is None
            and cfg.init_from is None)


def _source_facts(source: ckpt.Checkpoint) -> dict[str, Any]:
    m = source.model
    return {"path": source.path, "cell": m.cell, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
            "encoding": source.vocab.encoding, "dtype": m.dtype.name, "dropout": m.dropout,
            "residual": m.residual, "layer_norm": m.layer_norm}


def _fine_tuning_source(init_from: str) -> ckpt.Checkpoint:
    """The checkpoint `--init-from` names (a run directory's best, a file or a shipped model), with
    its vocabulary."""
    from ..pretrained import resolve

    source = ckpt.load_checkpoint(resolve(init_from, "model"))
    if source.vocab is None:
        raise CheckpointError(f"{source.path}: a model saved without its vocabulary cannot be fine-tuned")
    return source


def _encode_for_fine_tuning(text: Path | Corpus, staged: Path, vocab: Vocab, extend: bool) -> EncodedText:
    """Encode a fine-tuning text with the source model's vocabulary, or with `extend` with that
    vocabulary joined by the text's own new symbols (refused by name without it)."""
    seen = collect_vocab(text, vocab.encoding)
    new = seen.missing_from(vocab)
    if new.size and not extend:
        kind = "bytes" if vocab.encoding == "bytes" else "characters"
        raise DataError(f"{_name(text)}: {new.size} {kind} not in the model's vocabulary: "
                        f"{name_symbols(new, vocab.encoding)}; --extend-vocab adds them to the model")
    return encode_file(text, staged, vocab=vocab.union(seen) if new.size else vocab)


def _text_source(cfg: TrainConfig) -> Path | Corpus:
    """What the run's text is read from: a built-in corpus's file, or the files of --text (a file,
    a folder read recursively, or a list of them: data/corpus.py)."""
    if cfg.dataset is not None:
        if cfg.dataset not in DATASETS:
            raise ConfigError(f"unknown --dataset {cfg.dataset!r}; available: {', '.join(DATASETS)}")
        from ..data.shakespeare import shakespeare_path

        return shakespeare_path()
    return expand(cfg.text, cfg.encoding)  # an empty path is no text, never "."


def _name(source: Any) -> str:
    """A text source as messages name it: a file's path, a corpus's first file and count, a
    configuration's text or built-in corpus."""
    if isinstance(source, Corpus):
        return source.describe()
    if isinstance(source, TrainConfig):
        return source.dataset or (source.text if isinstance(source.text, str) else f"{len(source.text)} texts")
    return show_path(source)


def _listing(source: Path | Corpus) -> list[dict[str, Any]] | None:
    """The files of the run's text and their sizes, as the state records them (None for one
    file: its content hash says all, as in runs made before several files could be given)."""
    return source.listing() if isinstance(source, Corpus) and len(source.files) > 1 else None


def _check_listing(source: Path | Corpus, saved: TrainState) -> None:
    """The files of a resumed run's text against those it recorded: a file added, removed or
    changed in size is named (the content hashes are checked when the text is encoded again)."""
    if saved.files is None:
        return
    now = _listing(source) or []
    before = {f["path"]: f["size"] for f in saved.files}
    after = {f["path"]: f["size"] for f in now}
    for path in sorted(set(before) | set(after)):
        if path not in after:
            raise DataError(f"{show_path(path)} was part of this run's text and is gone: resuming on different text "
                            "would not continue the same run")
        if path not in before:
            raise DataError(f"{show_path(path)} was not part of this run's text: resuming on different text would "
                            "not continue the same run (give the run's files with --text to continue it)")
        if before[path] != after[path]:
            raise DataError(f"{show_path(path)} has changed ({after[path]:,} bytes, the run read {before[path]:,}): "
                            "resuming on different text would not continue the same run")


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


# ------------------------------------------------------------------------------------------------
# a resumed run


def resume_run(given: Mapping[str, Any], run_dir: Path, say: Say, out: Path | None = None, force: bool = False,
               reader: bool = False) -> LanguageModelRun:
    """Set up the run saved in `run_dir` (a run directory or a checkpoint file) where it stopped.
    Of the settings `given`, only those a resume may change may differ from the saved ones.

    With `out` (another directory) the run continues there, from the same state, optimizer
    included, and its own run is left as it is; a checkpoint other than a run's latest (its best,
    say) can only be continued that way, as continuing it in place would overwrite the later
    state. `force` lets `out` replace a run already there. A `reader` (torchrun's other ranks)
    changes nothing in the run directory."""
    if run_dir.is_dir() and not (run_dir / LATEST).exists():
        raise CheckpointError(f"{run_dir}: no checkpoint in this directory to resume (no {LATEST})")
    c = ckpt.load_checkpoint(run_dir / LATEST if run_dir.is_dir() else run_dir)
    if c.config is None or c.optimizer_meta is None:
        raise CheckpointError(f"{c.path}: a bare model file, not a training checkpoint: cannot resume from it")
    if given.get("backend") == "numpy" and "device" not in given:
        given = dict(given, device="cpu")  # a GPU run resumed on the NumPy engine leaves its device
    cfg, changes = resumed(c.config, given)
    requested_threads()
    run_dir = c.path.parent
    if out is not None and not _same_dir(out, run_dir):
        return _fork_run(c, cfg, changes, out, force, say)
    if c.path.name != LATEST:
        raise ConfigError(
            f"{c.path} is not the latest checkpoint of {run_dir}: continuing it there would overwrite "
            f"{LATEST} and the metrics after step {c.state['step']:,}; give --out NEW_DIR to continue it "
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
              say: Say) -> LanguageModelRun:
    """Continue checkpoint `c` in the new run directory `d`: its tokens.bin (checked, or the text
    encoded again), the checkpoint as latest, the best as of it, config.json and the metrics up
    to its step. The source run is only read."""
    source = c.path.parent
    replacing = check_new_run_dir(d, force, "give another --out, or --force to replace it")
    saved = TrainState.from_json(c.state, c.path, LM)
    claim = Claim(d)
    staged = d / f".{TOKENS}.new"
    claim.written.append(staged)
    try:
        remove_temporaries(d)
        if "text" in changes or not (source / TOKENS).is_file():
            encoded = _encode_same_text(_text_source(cfg), staged, c.vocab, saved, source / TOKENS)
        else:
            shutil.copyfile(source / TOKENS, staged)
            encoded = load_encoded(staged, c.vocab, check=False)
            _check_tokens(encoded, saved)
        best = c.path if saved.best_step == saved.step else source / BEST
        if (saved.best_val_loss is None or not best.is_file()
                or ckpt.load_checkpoint(best).state.get("step") != saved.best_step):
            best = None  # no best yet, or not at hand: the next improvement writes one
        metrics = metrics_upto(source / METRICS, saved.step)
        s = _continue(c, cfg, encoded, saved, d, claim.lock, say)  # every check done: d may change now
        if replacing:
            clear_run(d)
        claim.written += [d / n for n in (TOKENS, METRICS, LATEST, BEST, CONFIG)]
        _install_tokens(staged, d / TOKENS)
        encoded.path = d / TOKENS
        if metrics:
            atomic_write_bytes(d / METRICS, metrics)
        s.save(d / LATEST)
        if best is not None:
            atomic_copy(best, d / BEST)
        write_json(d / CONFIG, _config_record(s.cfg, s))
    except BaseException as e:
        claim.undo()
        if isinstance(e, OSError):  # copying the run's files (a full disk, a special file)
            raise CheckpointError(f"cannot continue {c.path} in {d}: {e.strerror or e}") from None
        raise
    say(f"charrnn: continuing {c.path} (step {s.state.step:,}) in {d}")
    return s


def _resume_locked(c: ckpt.Checkpoint, cfg: TrainConfig, changes: dict[str, Any], run_dir: Path,
                   lock: RunLock | None, say: Say) -> LanguageModelRun:
    """The resume itself; without a lock (a reader) nothing in run_dir is changed."""
    tokens = run_dir / TOKENS
    saved = TrainState.from_json(c.state, c.path, LM)
    if "text" not in changes and c.config.dataset is None:
        _check_listing(_text_source(cfg), saved)
    if lock is not None:
        remove_temporaries(run_dir)  # left by a process killed in the middle of a write
    if "text" in changes or not tokens.is_file():
        encoded = _reencode(_text_source(cfg), tokens, c.vocab, saved)
    else:
        encoded = load_encoded(tokens, c.vocab, check=False)
        _check_tokens(encoded, saved)
    s = _continue(c, cfg, encoded, saved, run_dir, lock, say)
    if lock is not None:
        trim_metrics(run_dir / METRICS, s.state.step)
        _update_config(run_dir / CONFIG, c.config, s, say)
    say(f"charrnn: resuming {run_dir} at step {s.state.step:,}")
    return s


def _config_record(cfg: TrainConfig, s: LanguageModelRun) -> dict[str, Any]:
    """config.json: the resolved configuration with the batch and window the text left. It can
    be given back to `charrnn train --config`: its paths are made absolute there, as a config
    file's relative paths would be taken from the run directory."""
    paths = {k: [os.path.abspath(p) for p in v] if isinstance(v, list) else os.path.abspath(v)
             for k in PATH_SETTINGS if isinstance(v := getattr(cfg, k), (str, list))}
    return cfg.to_dict() | {"batch_size": s.batch_size, "seq_len": s.seq_len} | paths


def _update_config(path: Path, saved: TrainConfig, s: LanguageModelRun, say: Say) -> None:
    """Rewrite config.json for the resumed run (a new --steps, say). It is a record, never read
    back: the checkpoint holds the configuration. An edit found in it is named and undone."""
    from ..io.readers import read_json

    found: Any = None
    if path.exists() or path.is_symlink():
        try:
            found = read_json(path, CheckpointError, "run configuration")
        except CheckpointError:
            found = {}  # unreadable: an edit all the same, rewritten below
    if found is not None:
        expected = _config_record(saved, s)
        if isinstance(found, dict):
            edited = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        else:
            edited = ["(all)"]
        if edited:
            say(f"charrnn: {path} was changed by hand ({', '.join(edited)}); it only records the run's settings, "
                "which come from the checkpoint and the flags: rewritten")
    write_json(path, _config_record(s.cfg, s))


def _continue(c: ckpt.Checkpoint, cfg: TrainConfig, encoded: EncodedText, saved: TrainState, run_dir: Path,
              lock: RunLock | None, say: Say) -> LanguageModelRun:
    """The run of checkpoint `c` on its checked text, set up in `run_dir` where `c` stands."""
    if len(encoded) != saved.n_tokens:
        raise DataError(
            f"the text now has {len(encoded):,} characters, the run was trained on {saved.n_tokens:,}: "
            "resuming on different text would not continue the same run"
        )
    train_range, val_range = split_train_val(len(encoded), cfg.val_frac)
    n_train = len(train_range)
    B, T, _ = fit_batch_shape(n_train, cfg.batch_size, cfg.seq_len)
    if (B, T) != (saved.batch_size, saved.seq_len):
        raise CheckpointError(f"{c.path}: the saved batch shape does not match this run")
    batcher = Batcher(encoded.ids[:n_train], B, T)
    val_ids = encoded.ids[val_range.start : val_range.stop] if val_range is not None else None
    model = c.model
    optimizer = make_optimizer(cfg.optimizer, model.params, cfg.lr, **optimizer_options(cfg))
    # set up as a fresh run would be on the saved model, then moved to where the checkpoint stands
    s = LanguageModelRun(run_dir, cfg, encoded, batcher, val_ids, n_train, len(encoded) - n_train, model, optimizer,
                         sample_rng=np.random.default_rng([cfg.seed, 1]), hidden=model.initial_state(B), state=saved,
                         lock=lock)
    s.restore(c)
    # the hashes checked just now, recorded from here on where the checkpoint predates them
    s.state.text_sha256, s.state.tokens_sha256 = saved.text_sha256, saved.tokens_sha256
    if cfg.backend == "numpy":  # the recorded count of cores, unless one is given
        plan_training(model, B, T, given=cfg.threads, recorded=saved.workers, say=say)
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


def _reencode(text: Path | Corpus, tokens: Path, vocab: Vocab | None, saved: TrainState) -> EncodedText:
    """Encode the run's text again (it moved, or tokens.bin was deleted) without touching the
    run's tokens.bin until the new ids are known to be the very same text."""
    staged = tokens.with_name(f".{tokens.name}.new")
    encoded = _encode_same_text(text, staged, vocab, saved, tokens)
    try:
        _install_tokens(staged, tokens)
    except BaseException:
        discard(staged)
        raise
    encoded.path = tokens
    return encoded


def _encode_same_text(text: Path | Corpus, staged: Path, vocab: Vocab | None, saved: TrainState, tokens: Path) -> EncodedText:
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
                    f"{_name(text)} is not the text this run was trained on (its content hash differs): resuming on "
                    "different text would not continue the same run"
                )
        elif tokens.is_file():
            if not _same_ids(encoded.ids, load_encoded(tokens, vocab, check=False).ids):
                raise DataError(
                    f"{_name(text)} is not the text this run was trained on: resuming on different text "
                    "would not continue the same run"
                )
        elif len(encoded) != n_tokens:
            raise DataError(
                f"{_name(text)} has {len(encoded):,} characters, the run was trained on {n_tokens:,}: "
                "resuming on different text would not continue the same run"
            )
    except BaseException:
        discard(staged)
        raise
    saved.text_sha256, saved.tokens_sha256 = encoded.text_sha256, encoded.ids_sha256
    return encoded


def _install_tokens(staged: Path, tokens: Path) -> None:
    """Put a staged, fully written tokens.bin in place."""
    try:
        replace_durably(staged, tokens)
    except OSError as e:
        raise CheckpointError(f"cannot write {tokens}: {e.strerror or e}") from None


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal token arrays, compared in chunks so two memory maps are never read whole."""
    step = 1 << 22
    return len(a) == len(b) and all(np.array_equal(a[i : i + step], b[i : i + step]) for i in range(0, len(a), step))
