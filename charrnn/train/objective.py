"""What the trainer asks of an objective: the language model's (lm.py) and the task models'
(tasks.py). The loop (loop.py) is one; everything that differs between them is here.

An objective is a run set up in its run directory (fresh, resumed, or continued elsewhere) with
its model, optimizer, data and training state, and these members:

    kind                      "lm", "classify" or "tag"
    run_dir, cfg, state       the directory, the resolved configuration, the TrainState
    model, optimizer          the NumPy record of the run (the engine may compute elsewhere)
    lock, engine              the run directory's lock; the engine (attached by the trainer)
    hidden                    the state carried from one step into the next (None: nothing carried)
    uniform_loss              a uniform guess's loss: a smoothed loss far above it is divergence
    steps_per_epoch           steps in one pass over the training data (the step schedule's period)
    progress                  epochs done, as a fraction
    unit                      what a step's batch counts: "chars" or "examples"
    validates                 whether the run holds data out for validation
    val_size, val_scored      units a whole validation scores, and the last one scored
    units_per_step            units in a step's batch (chars B*T, examples B)
    next_batch() -> batch     the next batch (its `size` in units); may reset `hidden`
    count(batch)              add a trained batch to the state's counters
    loss_and_grads(batch, hidden) -> (loss, grads, hidden)       the NumPy engine's step
    compiled_step()           a compiled whole step (train/fused.py) or None
    validate(full, stream, limit)  the validation loss (None: the run does not validate); `full`:
                              the whole split, at the end (`limit`: a sample of that many units of
                              it); may set objective-specific state fields
    sample(step, batch)       a training-time sample due at `step`, or None
    record(evaluated)         the objective's fields of a metrics record
    postfix()                 the objective's fields of the progress line ("val 1.50 nats (2.16 bits)")
    says_validations          whether a run without a bar says each validation in a line, and
    validation_words()        the words it says
    save(path)                write the whole run to a checkpoint (atomically)
    write_config()            write config.json from cfg (after the intervals were measured)
    load(path) / restore(c)   read a checkpoint of this run / continue from it
    resume_command            how a user continues the run, for messages
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """The language model's batch: inputs and targets (B, T) of one window of every stream."""

    x: np.ndarray
    y: np.ndarray

    @property
    def size(self) -> int:
        return int(self.x.size)


@dataclass
class TextBatch:
    """A task model's batch: example indices, their inputs and targets."""

    idx: np.ndarray
    inputs: list
    targets: object

    @property
    def size(self) -> int:
        return len(self.idx)
