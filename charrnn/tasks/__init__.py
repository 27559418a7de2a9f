"""Seed 002's other two uses of the network: classifying a whole text (many-to-one) and tagging
every character (many-to-many, optionally with the output-to-hidden recurrence R).

    data.py        reading TSV / JSON Lines (errors name file and line), characters, labels,
                   the stratified split, length-bucketed batches
    config.py      TaskConfig: every default of a run
    train.py       TaskTrainer: the loop (optimizers, schedule, clipping, checkpoints, exact resume,
                   early stopping, divergence recovery) over batches of whole texts
    checkpoint.py  task checkpoints: safetensors + JSON metadata
    evaluate.py    loss, accuracy, macro-F1, per-label scores, confusion matrix
    datasets.py    built-in data: the language of a word (wordfreq), Python token types (tokenize)

The models themselves are charrnn.model's CharClassifier and CharTagger.
"""

from .config import TaskConfig
from .train import TaskTrainer, train_task

__all__ = ["TaskConfig", "TaskTrainer", "train_task"]
