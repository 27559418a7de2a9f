"""The training loop over a `Setup`: steps, reports, validation, checkpoints, signals, recovery.

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
from typing import Any, Iterable, Iterator, TextIO

import numpy as np

from ..io import checkpoint as ckpt
from ..settings import TrainConfig, validate
from ..errors import CharRNNError, CheckpointError
from ..diagnostics.gradflow import spectral_radii
from ..evaluate.lm import NATS_TO_BITS, EvalResult, evaluate_ids, evaluate_sample, periodic_budget
from ..sample import SampleConfig, generate
from ..io.writer import atomic_copy
from .engine import check_backend, make_engine
from .schedule import lr_at
from .setup import Setup, fresh_run, resume_run

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
# A whole-split validation of at least this many characters shows a progress bar.
FULL_VALIDATION_BAR = 1_000_000


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


class Trainer:
    """One training run in a run directory: set up fresh or from a checkpoint, then `run()`."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        out: str | Path | None = None,
        force: bool = False,
        quiet: bool = False,
        json_log: bool = False,
        progress: bool = True,
        stream: TextIO | None = None,
        engine: dict[str, str] | None = None,
        asked: Iterable[str] | None = None,
    ) -> None:
        """`engine`: the backend and device asked for by name ({"backend": ..., "device": ...});
        they apply to a resumed run too, whose saved ones they replace (either backend resumes
        the other's runs). `asked`: the names of the settings of `cfg` the user gave; without it,
        those that differ from the defaults count as given (so a default given explicitly is not
        seen)."""
        self.quiet = quiet
        self.json_log = json_log
        self.progress = progress and not quiet and not json_log
        # progress lines are a courtesy: metrics.jsonl and the checkpoints are the run's record, so
        # a closed pipe or a vanished terminal must not stop training (see _Tolerant)
        self.stream = _Tolerant(stream or sys.stderr)
        self._stdout = _Tolerant(None)
        self._bar: Any = None  # the tqdm bar while the loop runs with progress shown
        self._signal: int | None = None  # the first stopping signal received, handled between steps
        engine = {k: v for k, v in (engine or {}).items() if v is not None}
        if engine.get("backend") == "numpy":
            engine.setdefault("device", "cpu")  # a GPU run resumed on the NumPy engine leaves its device
        if not resume:
            cfg = cfg.replace(**engine)
        world = _world()
        if world is None:
            # a missing torch or GPU is refused before anything is written (the engine checks again)
            if not resume or engine.get("backend"):
                check_backend(engine.get("backend", cfg.backend), engine.get("device", cfg.device), cfg,
                              Path(run_dir) if resume else None)
            # with `resume`, `out` (another directory) continues the run there (see resume_run)
            self.setup: Setup = (resume_run(cfg, Path(run_dir), self.say, Path(out) if out else None, force,
                                            asked=asked) if resume
                                 else fresh_run(cfg, Path(run_dir), force, self.say, asked))
        else:  # launched by torchrun: rank 0 sets the run up, the others then read it
            self.setup = world.set_up(cfg, Path(run_dir), resume, force, self.say, engine, asked,
                                      Path(out) if out else None)
        if resume and engine:
            self.setup.cfg = self.setup.cfg.replace(**engine)
            validate(self.setup.cfg)
        self.setup.engine = make_engine(self.setup, world)
        # the loop's horizon; a caller may move it before `run()`
        self.total_steps: int = self.setup.cfg.steps
        self.time_budget: float = self.setup.cfg.time_budget

    def __getattr__(self, name: str) -> Any:
        # The run's objects read as the trainer's own (trainer.model, trainer.state, ...), which is
        # how callers reach them. Reads only: the loop itself goes through self.setup.
        setup = self.__dict__.get("setup")
        if setup is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(setup, name)

    # -- output ---------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        """A human-readable line on stderr (kept clear of the progress bar)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    # -- validation and samples -----------------------------------------------------------------

    def validate_loss(self, full: bool = False) -> float | None:
        """Validation nats/char: of the fixed periodic sample, or of the whole split (`full`,
        the run's last validation); see evaluate.py."""
        s = self.setup
        if s.val_ids is None:
            return None
        model, share = s.engine.inference_model(), s.engine.eval_share
        if not full:
            budget = periodic_budget(s.cfg.eval_max_chars, s.cfg.eval_every, s.batch_size, s.batcher.seq_len)
            part = evaluate_sample(model, s.val_ids, budget, share=share)
        elif not self.progress or len(s.val_ids) < FULL_VALIDATION_BAR or share[1] > 1:
            part = evaluate_ids(model, s.val_ids, share=share)
        else:  # every character: on a large split this takes a while, so it shows its progress
            from tqdm import tqdm

            with tqdm(total=len(s.val_ids) - 1, desc="validation", unit="char", unit_scale=True, leave=False,
                      file=self.stream) as bar:
                part = evaluate_ids(model, s.val_ids, progress=bar.update)
        # under torchrun each process scored its share of the streams: the parts add up
        nats, chars = s.engine.sum_across([part.nats, float(part.chars)])
        return EvalResult(nats, int(chars)).nats_per_char

    def take_sample(self, first_token: int) -> str:
        s = self.setup
        sc = SampleConfig(length=s.cfg.sample_length, temperature=s.cfg.sample_temperature)
        ids = generate(s.engine.inference_model(), np.array([first_token]), sc, s.sample_rng)
        return s.vocab.decode(ids)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        try:
            with while_running(self, self.setup.lock):
                return self._loop()
        except OSError as e:  # the disk filled (or vanished) under metrics.jsonl or samples.txt
            raise CheckpointError(
                f"cannot write to {self.setup.run_dir}: {e.strerror or e}; the last checkpoint there is intact"
            ) from None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _loop(self) -> TrainResult:
        s = self.setup
        cfg = s.cfg
        total, budget = self.total_steps, self.time_budget
        if total and s.state.step >= total:
            self.say(f"charrnn: the run is already at step {s.state.step:,} of {total:,}; raise --steps to continue")
            return self._result("steps")
        # under torchrun rank 0 alone writes the run directory; the others report into nothing
        self._metrics = open(s.run_dir / ckpt.METRICS if s.engine.writes else os.devnull, "a", encoding="utf-8")
        self._bar = self._make_bar(total)
        self._started = time.perf_counter()
        self._elapsed0 = s.state.elapsed
        # chars/s counts the time of training steps only, not validation, samples or checkpoints
        self._report_chars, self._report_busy = 0, 0.0
        # the last step checkpointed and the last step reported; a recovery moves both back
        self._saved_at = self._logged_at = s.state.step
        lr = grad_norm = float("nan")
        stopped = "steps"
        try:
            while True:
                st = s.state  # read again every step: a recovery replaces it
                run_time = time.perf_counter() - self._started
                if total and st.step >= total:
                    break
                # under torchrun every process must stop at the same step: the engine agrees on it
                signum, out_of_time = s.engine.agree(self._signal, bool(budget and run_time >= budget))
                if out_of_time:
                    stopped = "time"
                    break
                if signum is not None:
                    self._signal = signum
                    stopped = "signal"
                    break
                step_started = time.perf_counter()
                x, y, reset = s.batcher.next_batch()
                if reset:
                    s.hidden = s.engine.initial_state(s.batch_size)
                time_frac = run_time / budget if budget else None
                lr = lr_at(cfg, st.step, total, s.batcher.windows_per_epoch, time_frac) * st.lr_scale
                # forward, backward, clipping and the update, unless the loss or gradient is not finite
                # per-parameter gradient norms only on steps that may report: other steps pay nothing
                reports = (st.step + 1) % cfg.log_every == 0 or bool(cfg.eval_every and (st.step + 1) % cfg.eval_every == 0)
                loss, grad_norm, h_last = s.engine.train_step(x, y, s.hidden, lr, record_norms=reports)
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
                # like min-char-rnn, smoothing starts from the loss of a uniform guess
                smoothed = st.smoothed_loss if st.smoothed_loss is not None else math.log(s.vocab.size)
                smoothed = cfg.smooth * smoothed + (1 - cfg.smooth) * loss
                # never below a uniform guess's loss, where the smoothing starts: a fine-tuned model
                # starts far lower, and a checkpoint from before the first loss was recorded has none
                reference = max(st.initial_loss or 0.0, math.log(s.vocab.size))
                if smoothed > EXPLODED * reference:  # finite but absurd: diverged all the same
                    self._recover(f"loss {loss:.4g} (smoothed {smoothed:.4g}, over {EXPLODED:g}x {reference:.4g}, the "
                                  "run's first loss or a uniform guess's)")
                    continue
                s.hidden = h_last
                st.step += 1
                st.chars_seen += x.size
                st.smoothed_loss = smoothed
                st.report_steps += 1
                st.report_loss_sum += loss
                self._report_chars += x.size
                self._report_busy += time.perf_counter() - step_started
                step = st.step
                if cfg.sample_every and step % cfg.sample_every == 0 and s.engine.writes:
                    self._write_sample(step, int(x[0, 0]))
                last = bool(total and step >= total)
                if (cfg.eval_every and step % cfg.eval_every == 0) or last:
                    st.val_loss = self.validate_loss(full=last)
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
                if self._bar is not None:
                    self._bar.update(1)
            st = s.state
            if stopped == "signal":
                if st.step != self._saved_at:
                    # Saved as it stands, neither validated nor reported: a validation here would
                    # become a best and move early stopping, and a record would split the next
                    # one's average, which a run that never stopped would not do. The losses of
                    # the record in progress are in the state, so the resumed run writes it whole.
                    st.elapsed = self._elapsed0 + (time.perf_counter() - self._started)
                    s.save(s.run_dir / ckpt.LATEST)
            elif st.step != self._saved_at:  # stopped by time between checkpoints
                st.val_loss = self.validate_loss(full=True)
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
                f"continue with: charrnn train --resume {s.run_dir}",
                128 + self._signal,
            )
        return self._result(stopped)

    def _report(self, lr: float, grad_norm: float, evaluated: bool) -> None:
        """Append one metrics line (and show it on the bar / as JSON)."""
        now = time.perf_counter()
        st = self.setup.state
        st.elapsed = self._elapsed0 + (now - self._started)
        val = st.val_loss if evaluated else None
        record = {
            "step": st.step,
            "chars": st.chars_seen,
            "epoch": round(self.setup.batcher.progress, 4),
            "train_loss": st.report_loss_sum / st.report_steps if st.report_steps else None,
            "smoothed_loss": st.smoothed_loss,
            "val_nats_per_char": val,
            "val_bits_per_char": val * NATS_TO_BITS if val is not None else None,
            "lr": lr,
            "grad_norm": grad_norm,
            "chars_per_s": round(self._report_chars / max(self._report_busy, 1e-9), 1),
            "elapsed": round(st.elapsed, 3),
            "grad_norms": self.setup.engine.grad_norms,  # per parameter before clipping, of the last step that computed them
        }
        if evaluated:  # the recurrent weights' spectral radius per layer and gate block: an eigvals per block
            m = self.setup.model
            record["spectral_radius"] = spectral_radii(m.params, m.num_layers, m.hidden_size, m.cell)
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self.json_log:
            print(json.dumps(record), file=self._stdout, flush=True)
        st.report_steps, st.report_loss_sum = 0, 0.0
        self._report_chars, self._report_busy = 0, 0.0
        if self._bar is not None:
            post = {"loss": f"{st.smoothed_loss:.3f}"}
            if st.val_loss is not None:
                post["val_bpc"] = f"{st.val_loss * NATS_TO_BITS:.3f}"
            post["chars/s"] = f"{record['chars_per_s']:,.0f}"
            if self.time_budget:
                post["left"] = f"{max(0.0, self.time_budget - (now - self._started)):.0f}s"
            self._bar.set_postfix(post, refresh=False)

    def _recover(self, what: str, step: int | None = None) -> None:
        """Roll back to the last good checkpoint with half the learning rate, or give up.
        `step` is the step that failed (default: the one being taken), counted from 1.
        Every fault the loop detects ends here."""
        s = self.setup
        st = s.state
        st.divergences += 1
        step = st.step + 1 if step is None else step
        if st.divergences > s.cfg.max_divergences:
            raise Diverged(
                f"training diverged ({what} at step {step:,}) {st.divergences} times; stopped with the "
                f"last good checkpoint in {s.run_dir / ckpt.LATEST} (try a lower --lr or --clip-norm)"
            )
        # the count and the lowered rate outlive the rollback: they are what ends a run that
        # keeps diverging
        divergences, lr_scale = st.divergences, st.lr_scale * 0.5
        s.restore(ckpt.load_checkpoint(s.run_dir / ckpt.LATEST))
        st = s.state
        st.divergences, st.lr_scale = divergences, lr_scale
        # saved at once, so that a resume from here keeps the lowered rate and the count
        s.save(s.run_dir / ckpt.LATEST)
        # the run is back at a step that is checkpointed, and nothing after it stands reported
        self._saved_at = self._logged_at = st.step
        self.say(
            f"charrnn: {what} at step {step:,}: restored the last good checkpoint (step {st.step:,}) and halved "
            f"the learning rate (x{st.lr_scale:g}); recovery {st.divergences} of {s.cfg.max_divergences}"
        )

    def _checkpoint(self) -> None:
        """Write the latest checkpoint, and copy it to the best one when validation improved."""
        s = self.setup
        st = s.state
        val = st.val_loss
        improved = val is not None and (st.best_val_loss is None or val < st.best_val_loss)
        if improved:
            st.best_val_loss = val
            st.best_step = st.step
        s.save(s.run_dir / ckpt.LATEST)
        if improved and s.engine.writes:
            atomic_copy(s.run_dir / ckpt.LATEST, s.run_dir / ckpt.BEST)

    def _write_sample(self, step: int, first_token: int) -> None:
        text = self.take_sample(first_token)
        with open(self.setup.run_dir / ckpt.SAMPLES, "a", encoding="utf-8") as f:
            f.write(f"---- step {step} ----\n{text}\n")
        self.say(f"---- sample at step {step:,} ----\n{text}\n----")

    def _make_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm  # a widget in notebooks, text in a terminal

        return tqdm(total=total or None, initial=self.setup.state.step, unit="step", file=self.stream,
                    dynamic_ncols=True, smoothing=0.1)

    def _result(self, stopped: str) -> TrainResult:
        s = self.setup
        st = s.state
        return TrainResult(s.run_dir, st.step, st.smoothed_loss, st.val_loss, st.best_val_loss, stopped,
                           s.cfg.patience)


def _world() -> Any:
    """The process group torchrun launched this process into, or None (one process: no torch)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    from ..torch_backend.distributed import World

    return World.from_env()


class _Tolerant:
    """A text stream whose failures to write (a closed pipe, a terminal gone, a closed file) are
    swallowed: after the first one it stays silent. None stands for sys.stdout as it is at each
    write."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.broken = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except (OSError, ValueError):
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _finite_or_none(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def train(cfg: TrainConfig, run_dir: str | Path, **kwargs: Any) -> TrainResult:
    """Train from scratch (or `resume=True`) in `run_dir`; see `Trainer` for the options."""
    return Trainer(cfg, run_dir, **kwargs).run()
