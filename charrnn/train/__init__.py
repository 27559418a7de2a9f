"""Training: one loop for every objective, checkpoints, exact resume.

    loop.py       Trainer: the loop, reports, validation, checkpoints, signals and divergence recovery
    objective.py  what the loop asks of an objective
    lm.py         the language model's objective: truncated BPTT over B streams of a text
    tasks.py      the classifier's and tagger's objective: batches of whole texts
    engine.py     what computes a step: charrnn's NumPy engine, or torch (torch_backend/)
    schedule.py   the learning-rate schedule and the optimizer's options
    request.py    a request to train, from the command line or Python, turned into settings
"""

from .loop import Diverged, Interrupted, Trainer, TrainResult, train
from .schedule import lr_at, optimizer_options
from ..io.state import TrainState, restore_generator

__all__ = ["Diverged", "Interrupted", "TrainResult", "TrainState", "Trainer", "lr_at", "optimizer_options",
           "restore_generator", "train"]
