"""The one training loop, for every objective: steps, reports, validation, checkpoints, signals,
recovery. What differs between the language model, the classifier and the tagger is the objective's
(objective.py); what computes a step is the engine's (engine.py).

Faults: a NaN or infinite loss or gradient, or an absurd loss (see EXPLODED), never reaches the
parameters. The run restores its last good checkpoint, halves the learning rate, says so and goes
on; after `max_divergences` recoveries it stops with that checkpoint intact. SIGINT / SIGTERM /
SIGHUP finish the current step, write a checkpoint (neither validated nor logged, so that the
resumed run is the one that never stopped) and leave with status 130 / 143 / 129.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, TextIO

import numpy as np

from ..core import _jit
from ..errors import CharRNNError, CheckpointError, ConfigError
from ..io.layout import BEST, LATEST, METRICS, SAMPLES, append_environment, snapshot_name, snapshots
from ..io.writer import atomic_copy
from ..settings import LM, TaskConfig, TrainConfig, given_of
from .clock import Clock
from .engine import check_backend, make_engine
from .progress import Tolerant, environment, interactive, make_bar
from .schedule import lr_at

# Signals that stop training cleanly (the step finishes, a checkpoint is written): Ctrl-C, a
# polite kill, and a closed terminal (SIGHUP, which would otherwise end the run unsaved).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def while_running(owner: Any, lock: Any) -> Iterator[None]:
    """What a training loop (this module's, or the tasks') runs inside: the run directory's lock
    held (taken since set-up, and again by a second run), the stop signals recorded in
    `owner._signal` for the loop to handle between steps (a second Ctrl-C raises
    KeyboardInterrupt at once: the last checkpoint stands; a signal the process was started with
    ignored, SIGHUP under nohup, stays ignored), and NumPy's overflow and NaN warnings off: the
    loops detect and handle non-finite numbers themselves, and the warnings would only add noise."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def on_signal(signum: int, frame: Any) -> None:
        if owner._signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        owner._signal = signum

    if lock is not None:
        lock.acquire()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for s, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, on_signal)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            yield
    finally:
        if in_main:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if lock is not None:
            lock.release()
# A smoothed training loss above this multiple of the run's first loss (or of a uniform guess's, if
# higher) is divergence, as a NaN is (char-rnn aborts at 3x): weights that far gone only get worse,
# however finite. The smoothed loss, not the step's own: one window of a small batch can well be 3x
# the first, a diverged run is every window, and one absurd step (1e18 nats) moves the smoothed
# loss past the mark at once.
EXPLODED = 3.0


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
    val_loss: float | None  # last validation loss (the language model's: nats/char)
    best_val_loss: float | None
    stopped: str  # "steps", "time", "early" (validation stopped improving), "signal"
    patience: int = 0  # validations without a new best that end a run early (0 = never)
    val_accuracy: float | None = None  # a classifier's or tagger's last validation accuracy
    val_scored: int = 0  # units (characters, examples) the last validation scored ...
    val_size: int = 0  # ... of the validation split's: fewer for a sample of it
    val_free_accuracy: float | None = None  # a tagger with R's on its own previous tags (val_accuracy: forced)


class Trainer:
    """One training run of any objective in a run directory: set up fresh or from a checkpoint,
    then `run()`.

    `request`: a configuration (TrainConfig for a language model, TaskConfig for a classifier or
    a tagger), whose settings that differ from the defaults count as given, or the settings given
    by name (a dict; `task` names a classifier's or tagger's, else a language model's). A setting
    given is kept even at its default value; the others are chosen when the run is set up."""

    def __init__(
        self,
        request: Any,
        run_dir: str | Path,
        *,
        resume: bool = False,
        out: str | Path | None = None,
        force: bool = False,
        quiet: bool = False,
        json_log: bool = False,
        progress: bool = True,
        stream: TextIO | None = None,
        texts: Any = None,
    ) -> None:
        """`out` with `resume`: continue the run in another directory (its own is only read).
        `texts`: strings to train a new language model on instead of a file (charrnn.fit's)."""
        self.quiet = quiet
        self.json_log = json_log
        self.progress = progress and not quiet and not json_log
        # progress lines are a courtesy: metrics.jsonl and the checkpoints are the run's record, so
        # a closed pipe or a vanished terminal must not stop training (see _Tolerant)
        self.stream = Tolerant(stream or sys.stderr)
        self._stdout = Tolerant(None)
        self._bar: Any = None  # the tqdm bar while the loop runs with progress shown
        self.clock: Clock | None = None  # the loop's clock while it runs (clock.py)
        self._signal: int | None = None  # the first stopping signal received, handled between steps
        kind, given = _request(request)
        out = Path(out) if out is not None else None
        world = _world()
        if kind == LM:
            from .lm import resume_run as resume_lm, fresh_run as fresh_lm

            if world is None:
                if not resume or "backend" in given:  # a missing torch or GPU, before anything is written
                    check_backend(given.get("backend", "numpy"), given.get("device", "cpu"), given,
                                  Path(run_dir) if resume else None)
                self.objective = (resume_lm(given, Path(run_dir), self.say, out, force) if resume
                                  else fresh_lm(given, Path(run_dir), force, self.say, texts))
            else:  # launched by torchrun: rank 0 sets the run up, the others then read it
                self.objective = world.set_up(given, Path(run_dir), resume, force, self.say, out)
        else:
            from .tasks import fresh_run as fresh_task, resume_run as resume_task

            if world is not None:
                raise ConfigError(f"charrnn {kind} trains in one process: start it without torchrun")
            if not resume or "backend" in given:  # a missing torch or GPU, before anything is written
                check_backend(given.get("backend", "numpy"), given.get("device", "cpu"), given,
                              Path(run_dir) if resume else None)
            self.objective = (resume_task(kind, given, Path(run_dir), self.say, out, force) if resume
                              else fresh_task(kind, given, Path(run_dir), force, self.say))
        try:
            self.objective.engine = make_engine(self.objective, world)
            if self.objective.engine.writes:
                append_environment(self.objective.run_dir, environment(self.objective, resume))
        except BaseException:
            if self.objective.lock is not None:
                self.objective.lock.release()
            raise
        # the loop's horizon; a caller may move it before `run()`
        self.total_steps: int = self.objective.cfg.steps
        self.time_budget: float = self.objective.cfg.time_budget

    def __getattr__(self, name: str) -> Any:
        # The run's objects read as the trainer's own (trainer.model, trainer.state, ...), which is
        # how callers reach them. Reads only: the loop itself goes through self.objective.
        objective = self.__dict__.get("objective")
        if objective is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(objective, name)

    # -- output ---------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        """A human-readable line on stderr (kept clear of the progress bar)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def validate_loss(self, full: bool = False, limit: int | None = None) -> float | None:
        """The validation loss: of the objective's periodic sample, or of the whole split (`full`,
        the run's last validation; at most `limit` units of it when given). Timed, for the
        closing validation's estimate."""
        started = time.perf_counter()
        loss = self.objective.validate(full, self.stream if self.progress and interactive(self.stream) else None,
                                       limit)
        if self.clock is not None:
            self.clock.validated(time.perf_counter() - started, self.objective.val_scored)
        return loss

    def _closing_validation(self) -> float | None:
        """The run's last validation: the whole split, or a sample of it when the whole would not
        fit in the time budget (clock.py)."""
        limit = self.clock.closing_limit() if self.clock is not None else None
        return self.validate_loss(full=True, limit=limit)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        try:
            with while_running(self, self.objective.lock):
                return self._loop()
        except OSError as e:  # the disk filled (or vanished) under metrics.jsonl or samples.txt
            raise CheckpointError(
                f"cannot write to {self.objective.run_dir}: {e.strerror or e}; the last checkpoint there is intact"
            ) from None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _loop(self) -> TrainResult:
        s = self.objective
        cfg = s.cfg
        total, budget = self.total_steps, self.time_budget
        if total and s.state.step >= total:
            self.say(f"charrnn: the run is already at step {s.state.step:,} of {total:,}; raise --steps to continue")
            return self._result("steps")
        # under torchrun rank 0 alone writes the run directory; the others report into nothing
        self._metrics = open(s.run_dir / METRICS if s.engine.writes else os.devnull, "a", encoding="utf-8")
        self._bar = make_bar(self.stream, total, s.state.step) if self.progress else None
        self.clock = Clock(s, budget, self.say)
        notice = _jit.missing_notice()
        if notice is not None and getattr(cfg, "backend", "numpy") == "numpy":
            self.say(notice)
        self._elapsed0 = s.state.elapsed
        # units/s counts the time of training steps only, not validation, samples or checkpoints
        self._report_units, self._report_busy = 0, 0.0
        # the last step checkpointed and the last step reported; a recovery moves both back
        self._saved_at = self._logged_at = s.state.step
        lr = grad_norm = float("nan")
        stopped = "steps"
        try:
            while True:
                st = s.state  # read again every step: a recovery replaces it
                cfg = s.cfg  # and the intervals measured once (_set_intervals) replace the configuration
                if total and st.step >= total:
                    break
                # under torchrun every process must stop at the same step: the engine agrees on it
                signum, out_of_time = s.engine.agree(self._signal, self.clock.out_of_time())
                if out_of_time:
                    stopped = "time"
                    break
                if signum is not None:
                    self._signal = signum
                    stopped = "signal"
                    break
                step_started = time.perf_counter()
                batch = s.next_batch()
                time_frac = self.clock.elapsed() / budget if budget else None
                # the schedule follows the configured horizon, wherever this invocation stops
                lr = lr_at(cfg, st.step, cfg.steps, s.steps_per_epoch, time_frac) * st.lr_scale
                # per-parameter gradient norms only on steps that may report: other steps pay nothing
                reports = (st.step + 1) % cfg.log_every == 0 or bool(cfg.eval_every and (st.step + 1) % cfg.eval_every == 0)
                # forward, backward, clipping and the update, unless the loss or gradient is not finite
                loss, grad_norm, hidden = s.engine.train_step(batch, s.hidden, lr, record_norms=reports)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
                    self._recover(what)  # the last good checkpoint replaces whatever the step did
                    continue
                if not s.engine.params_finite():
                    # a finite gradient times a huge rate can still overflow: roll the step back
                    # before anything (a checkpoint above all) can see it
                    self._recover("a parameter overflowed in the update")
                    continue
                if st.step == 0 and st.initial_loss is None:
                    st.initial_loss = loss
                average, smoothed = _smooth(st, cfg.smooth, loss)
                # judged against the run's first loss, and never below a uniform guess's: a
                # fine-tuned model starts far lower
                reference = max(st.initial_loss or 0.0, s.uniform_loss)
                if smoothed > EXPLODED * reference:  # finite but absurd: diverged all the same
                    self._recover(f"loss {loss:.4g} (smoothed {smoothed:.4g}, over {EXPLODED:g}x {reference:.4g}, the "
                                  "run's first loss or a uniform guess's)")
                    continue
                s.hidden = hidden
                st.step += 1
                s.count(batch)
                st.loss_average, st.averaged_steps, st.smoothed_loss = average, st.averaged_steps + 1, smoothed
                st.report_steps += 1
                st.report_loss_sum += loss
                busy = time.perf_counter() - step_started
                self._report_units += batch.size
                self._report_busy += busy
                step = st.step
                self.clock.step_done(busy)
                if s.engine.writes:
                    sample = s.sample(step, batch)
                    if sample is not None:
                        self._write_sample(step, sample)
                last = bool(total and step >= total)
                if (cfg.eval_every and step % cfg.eval_every == 0) or last:
                    st.val_loss = self._closing_validation() if last else self.validate_loss()
                    if not _finite_or_none(st.val_loss):
                        # weights that overflow on unseen text are as broken as a NaN loss
                        self._recover(f"validation loss {st.val_loss}", step)
                        continue
                    self._report(lr, grad_norm, evaluated=True)
                    self._checkpoint()
                    self._saved_at = self._logged_at = step
                    if cfg.patience and cfg.eval_every and step - st.best_step >= cfg.patience * cfg.eval_every:
                        stopped = "early"  # validation stopped improving; best.safetensors has the best
                        break
                elif step % cfg.log_every == 0:
                    self._report(lr, grad_norm, evaluated=False)
                    self._logged_at = step
                if cfg.keep_every and step % cfg.keep_every == 0:
                    self._snapshot(step)
                if self._bar is not None:
                    self._bar.update(1)
            st = s.state
            if stopped == "signal":
                if st.step != self._saved_at:
                    # Saved as it stands, neither validated nor reported: a validation here would
                    # become a best and move early stopping, and a record would split the next
                    # one's average, which a run that never stopped would not do. The losses of
                    # the record in progress are in the state, so the resumed run writes it whole.
                    st.elapsed = self._elapsed0 + self.clock.elapsed()
                    s.save(s.run_dir / LATEST)
            elif st.step != self._saved_at:  # stopped by time between checkpoints
                st.val_loss = self._closing_validation()
                if _finite_or_none(st.val_loss):
                    self._report(lr, grad_norm, evaluated=True)
                    self._checkpoint()
                else:  # stop at the last good checkpoint instead
                    self._recover(f"validation loss {st.val_loss}", st.step)
            elif st.step != self._logged_at:
                self._report(lr, grad_norm, evaluated=False)
        finally:
            self._metrics.close()
        if stopped == "signal":
            raise Interrupted(
                f"stopped by {signal.Signals(self._signal).name} at step {s.state.step:,}; checkpoint written, "
                f"continue with: {s.resume_command}",
                128 + self._signal,
            )
        return self._result(stopped)

    def _report(self, lr: float, grad_norm: float, evaluated: bool) -> None:
        """Append one metrics line (and show it on the bar / as JSON)."""
        s = self.objective
        st = s.state
        run_time = self.clock.elapsed()
        st.elapsed = self._elapsed0 + run_time
        rate = round(self._report_units / max(self._report_busy, 1e-9), 1)
        record = {
            "step": st.step,
            "epoch": round(s.progress, 4),
            "train_loss": st.report_loss_sum / st.report_steps if st.report_steps else None,
            "smoothed_loss": st.smoothed_loss,
            "lr": lr,
            "grad_norm": grad_norm,
            f"{s.unit}_per_s": rate,
            "elapsed": round(st.elapsed, 3),
            "grad_norms": s.engine.grad_norms,  # per parameter before clipping, of the last step that computed them
        } | s.record(evaluated)
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self.json_log:
            print(json.dumps(record), file=self._stdout, flush=True)
        st.report_steps, st.report_loss_sum = 0, 0.0
        self._report_units, self._report_busy = 0, 0.0
        if self._bar is not None:
            # one unit on the bar, the other named: the loss in nats, as the record has it
            post = [f"loss {st.smoothed_loss:.3f} nats", *s.postfix(), f"{rate:,.0f} {s.unit}/s"]
            if self.time_budget:
                post.append(f"{max(0.0, self.time_budget - run_time):.0f}s left")
            self._bar.set_postfix_str(", ".join(post), refresh=False)
        elif evaluated and not self.quiet and not self.json_log and s.says_validations:
            self.say(f"step {st.step:,}: training loss {st.smoothed_loss:.4f}" + s.validation_words())

    def _recover(self, what: str, step: int | None = None) -> None:
        """Roll back to the last good checkpoint with half the learning rate, or give up.
        `step` is the step that failed (default: the one being taken), counted from 1.
        Every fault the loop detects ends here."""
        s = self.objective
        st = s.state
        st.divergences += 1
        step = st.step + 1 if step is None else step
        if st.divergences > s.cfg.max_divergences:
            raise Diverged(
                f"training diverged ({what} at step {step:,}) {st.divergences} times; stopped with the "
                f"last good checkpoint in {s.run_dir / LATEST} (try a lower --lr or --clip-norm)"
            )
        # the count and the lowered rate outlive the rollback: they are what ends a run that
        # keeps diverging
        divergences, lr_scale = st.divergences, st.lr_scale * 0.5
        s.restore(s.load(s.run_dir / LATEST))
        st = s.state
        st.divergences, st.lr_scale = divergences, lr_scale
        # saved at once, so that a resume from here keeps the lowered rate and the count
        s.save(s.run_dir / LATEST)
        # the run is back at a step that is checkpointed, and nothing after it stands reported
        self._saved_at = self._logged_at = st.step
        self.say(
            f"charrnn: {what} at step {step:,}: restored the last good checkpoint (step {st.step:,}) and halved "
            f"the learning rate (x{st.lr_scale:g}); recovery {st.divergences} of {s.cfg.max_divergences}"
        )

    def _checkpoint(self) -> None:
        """Write the latest checkpoint, and copy it to the best one when validation improved (or,
        in a run without validation, every time: its best is its latest)."""
        s = self.objective
        st = s.state
        val = st.val_loss
        improved = val is not None and (st.best_val_loss is None or val < st.best_val_loss)
        if improved:
            st.best_val_loss = val
            st.best_step = st.step
        s.save(s.run_dir / LATEST)
        if (improved or not s.validates) and s.engine.writes:
            atomic_copy(s.run_dir / LATEST, s.run_dir / BEST)

    def _snapshot(self, step: int) -> None:
        """A numbered checkpoint of this step (--keep-every), and only the newest --keep-last kept."""
        s = self.objective
        s.save(s.run_dir / snapshot_name(step))
        if s.engine.writes and s.cfg.keep_last:
            for old in snapshots(s.run_dir)[: -s.cfg.keep_last]:
                old.unlink(missing_ok=True)

    def _write_sample(self, step: int, text: str) -> None:
        with open(self.objective.run_dir / SAMPLES, "a", encoding="utf-8") as f:
            f.write(f"---- step {step} ----\n{text}\n")
        self.say(f"---- sample at step {step:,} ----\n{text}\n----")

    def _result(self, stopped: str) -> TrainResult:
        s = self.objective
        st = s.state
        return TrainResult(s.run_dir, st.step, st.smoothed_loss, st.val_loss, st.best_val_loss, stopped,
                           s.cfg.patience, st.val_accuracy, s.val_scored, s.val_size,
                           st.val_free_accuracy)


def _smooth(st: Any, factor: float, loss: float) -> tuple[float, float]:
    """(the new exponential average of the steps' losses, the reported loss): the average, begun
    at 0, divided by 1 - factor^n for the n steps averaged, so that the reported loss is a
    weighted mean of the steps' own losses from the first step on (as Adam corrects its moments),
    rather than a curve that creeps from a guess."""
    previous = 0.0 if st.loss_average is None else st.loss_average
    average = factor * previous + (1 - factor) * loss
    correction = 1.0 - factor ** (st.averaged_steps + 1)
    return average, (average / correction if correction > 0 else loss)


def _request(request: Any) -> tuple[str, dict[str, Any]]:
    """(objective, the settings given by name) of a Trainer's request."""
    if isinstance(request, TaskConfig):
        return request.task, given_of(request)
    if isinstance(request, TrainConfig):
        return LM, given_of(request)
    if isinstance(request, Mapping):
        given = dict(request)
        return given.pop("task", LM), given
    raise ConfigError(f"a training request is a TrainConfig, a TaskConfig or a dict of settings, not "
                      f"{type(request).__name__}")


def _world() -> Any:
    """The process group torchrun launched this process into, or None (one process: no torch)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    from ..torch_backend.distributed import World

    return World.from_env()


def _finite_or_none(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def train(request: Any, run_dir: str | Path, **kwargs: Any) -> TrainResult:
    """Train from scratch (or `resume=True`) in `run_dir`; see `Trainer` for the options."""
    return Trainer(request, run_dir, **kwargs).run()
