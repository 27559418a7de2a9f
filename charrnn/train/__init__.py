"""Training: truncated BPTT over B parallel streams, checkpoints, exact resume.

One step: take the next (B, T) window of every stream, run forward and BPTT from the hidden
state carried out of the previous window, clip, update. The state is zeroed only when the data
wraps into a new epoch. Everything a step depends on (parameters, optimizer slots, the carried
state, the data position, the random generators, the step count that drives the schedule) is in
the checkpoint, so a run stopped and resumed is bit-identical to one that never stopped.

    state.py     TrainState: the counters and positions a checkpoint carries, and their validator
    setup.py     Setup: a run set up fresh or resumed, saved and restored in one place
    loop.py      Trainer: the loop, reports, checkpoints, signals and divergence recovery
    schedule.py  the learning-rate schedule and the optimizer's options
"""

from .loop import Diverged, Interrupted, Trainer, TrainResult, train
from .schedule import lr_at, optimizer_options
from .setup import (AUTO_EPOCHS, AUTO_EVALS, AUTO_MIN_STEPS, AUTO_PATIENCE, AUTO_TIME_BUDGET, MEMORY_FRACTION,
                    RESUMABLE, Setup, estimate_memory, fresh_run, physical_memory, resume_run)
from .state import TrainState, restore_generator

__all__ = [
    "AUTO_EPOCHS", "AUTO_EVALS", "AUTO_MIN_STEPS", "AUTO_PATIENCE", "AUTO_TIME_BUDGET", "MEMORY_FRACTION",
    "RESUMABLE", "Diverged", "Interrupted", "Setup", "TrainResult", "TrainState", "Trainer",
    "estimate_memory", "fresh_run", "lr_at", "optimizer_options", "physical_memory", "restore_generator",
    "resume_run", "train",
]
