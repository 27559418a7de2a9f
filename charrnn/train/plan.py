"""The time-budget plan: the model and optimisation that a text and a budget buy on this machine.

A user's first question is how good a model their machine gives them in the time they have. A
model too small for the budget stops learning long before the time is up; one too large sees too
few characters to learn what it could. So a run that gives no --steps spends its budget
(--time-budget, or settings.AUTO_TIME_BUDGET seconds) on the largest recipe of RECIPES that

  * sees at least MIN_CHARS_PER_PARAM characters per parameter in the budget, at the speed this
    machine measures for it in the first seconds (`measure`: a few training steps of the recipe at
    the run's batch, window, dtype and cores), and
  * is no larger than MAX_PARAMS_PER_CHAR parameters per character of the training text (a small
    text is memorised by a large model long before it generalises);

the smallest recipe when none qualifies. Its dropout follows the passes over the text the budget
allows (DROPOUT_BY_PASSES): one pass needs none, many need more. The run then trains for the
whole budget, the learning rate's cosine following the time used, validating about twenty times,
keeping the best model and stopping early once validation stops improving.

Every setting the user gives wins: it replaces that entry of every recipe before the rule
compares them, so `--cell gru` plans GRUs and `--hidden-size 512` plans the depth and dropout of
512-unit layers. The plan is made once, when a run starts: its choices become the run's settings
(config.json and the checkpoint hold them) and `plan` records the reason, with the speeds it
measured, so a resumed run continues with the same settings and measures nothing. Tests inject
the measurement (`Planner.measure`).

The constants come from the measurements in BENCHMARKS.md ("The time-budget plan").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..model.params import count_parameters

# The share of the budget spent training (the rest: periodic validations, samples, the closing
# validation, start-up), when estimating the characters a recipe trains.
TRAIN_SHARE = 0.85
# The smallest number of characters trained per parameter for a recipe to be chosen.
MIN_CHARS_PER_PARAM = 3.0
# The largest number of parameters per character of the training text.
MAX_PARAMS_PER_CHAR = 3.5
# (passes over the training text at least, dropout): the last row whose passes are reached.
DROPOUT_BY_PASSES = ((0.0, 0.0), (3.0, 0.1), (8.0, 0.2))
# What the plan may choose: the settings of a recipe. Any of them given by the user wins.
PLANNED = ("cell", "hidden_size", "num_layers", "dropout", "lr")


@dataclass(frozen=True)
class Recipe:
    """One candidate: its settings (a subset of PLANNED; dropout is chosen by the passes)."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)


# Ordered from the smallest model to the largest; the rule takes the last that qualifies.
RECIPES: tuple[Recipe, ...] = (
    Recipe("lstm-128", {"cell": "lstm", "hidden_size": 128, "num_layers": 1, "lr": 5e-3}),
    Recipe("lstm-256", {"cell": "lstm", "hidden_size": 256, "num_layers": 1, "lr": 5e-3}),
    Recipe("lstm-512", {"cell": "lstm", "hidden_size": 512, "num_layers": 1, "lr": 3e-3}),
    Recipe("lstm-2x512", {"cell": "lstm", "hidden_size": 512, "num_layers": 2, "lr": 2e-3}),
    Recipe("lstm-2x1024", {"cell": "lstm", "hidden_size": 1024, "num_layers": 2, "lr": 1e-3}),
)


def dropout_for(passes: float) -> float:
    """The dropout for a run that sees its training text `passes` times."""
    return [p for at, p in DROPOUT_BY_PASSES if passes >= at][-1]


@dataclass
class Choice:
    """A candidate as the rule judges it."""

    settings: dict[str, Any]
    params: int
    chars_per_s: float | None = None  # measured; None until then

    def chars(self, seconds: float) -> float:
        return (self.chars_per_s or 0.0) * seconds


@dataclass
class Planner:
    """The plan for one run: `plan()` returns the settings it chooses and the reason."""

    vocab_size: int
    n_train: int  # training characters (tokens)
    budget: float  # seconds
    batch_size: int
    seq_len: int
    dtype: str = "float32"
    given: dict[str, Any] = field(default_factory=dict)  # the user's settings among PLANNED
    recipes: Iterable[Recipe] = RECIPES

    def candidates(self) -> list[Choice]:
        """The recipes with the given settings in place, smallest first; of recipes that the given
        settings make the same model, the first (a smaller model's learning rate suits a model
        held small)."""
        out: list[Choice] = []
        seen: set[tuple] = set()
        for r in self.recipes:
            s = dict(r.settings)
            if "cell" in self.given and self.given["cell"] != s.get("cell"):
                s.pop("lr", None)  # a recipe's rate is its cell's: another cell keeps its own default
            s.update(self.given)
            model = (s["cell"], s["hidden_size"], s["num_layers"])
            if model in seen:
                continue
            seen.add(model)
            out.append(Choice(s, count_parameters(self.vocab_size, s["hidden_size"], s["num_layers"], s["cell"])))
        return sorted(out, key=lambda c: c.params)

    def plan(self) -> tuple[dict[str, Any], str]:
        """(the settings chosen, the reason in one line)."""
        seconds = self.budget * TRAIN_SHARE
        cands = self.candidates()
        chosen = cands[0]  # measured below like the others: its speed gives the passes
        for c in cands:
            if c.params > MAX_PARAMS_PER_CHAR * self.n_train and c is not cands[0]:
                break
            c.chars_per_s = self.measure(c.settings)
            if c.chars(seconds) < MIN_CHARS_PER_PARAM * c.params and c is not cands[0]:
                break
            chosen = c
        passes = chosen.chars(seconds) / max(1, self.n_train)
        settings = dict(chosen.settings)
        if "dropout" not in self.given:
            settings["dropout"] = dropout_for(passes)
        measured = ", ".join(f"{_describe(c.settings)} {c.chars_per_s:,.0f}" for c in cands if c.chars_per_s)
        lr = f"lr {settings['lr']:g}" if "lr" in settings else "the cell's lr"
        reason = (f"{self.budget:g} s: {_describe(settings)}, dropout {settings['dropout']:g}, {lr} "
                  f"({chosen.params:,} parameters, about {chosen.chars(seconds) / 1e6:.1f}M characters trained: "
                  f"{passes:.1f} passes over the text; measured chars/s: {measured})")
        return settings, reason

    def measure(self, settings: dict[str, Any]) -> float:
        """Characters per second of a training step of `settings` on this machine (tests replace it)."""
        return measure_speed(self.vocab_size, settings, self.batch_size, self.seq_len, self.dtype)


def _describe(s: dict[str, Any]) -> str:
    return f"{s['cell']} {s['num_layers']}x{s['hidden_size']}" if s["num_layers"] > 1 else f"{s['cell']} {s['hidden_size']}"


# A measurement times at least this many steps and at least this many seconds, after a first,
# untimed step (which compiles the kernels on a first use and fills the caches).
MEASURE_MIN_STEPS = 2
MEASURE_MIN_SECONDS = 0.3


def measure_speed(vocab_size: int, settings: dict[str, Any], batch_size: int, seq_len: int, dtype: str,
                  clock: Callable[[], float] = time.perf_counter) -> float:
    """Characters per second of the model's training step (forward and backward over a window of
    random characters, at the cores the run uses): the optimizer's update, a pass over the
    parameters, is a small share of a step and left out."""
    from ..model import CharRNN

    model = CharRNN(vocab_size, settings["hidden_size"], settings["num_layers"], dtype, 0, "pytorch",
                    cell=settings["cell"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab_size, size=(batch_size, seq_len))
    y = rng.integers(0, vocab_size, size=(batch_size, seq_len))
    model.loss_and_grads(x, y)
    steps, start = 0, clock()
    while steps < MEASURE_MIN_STEPS or clock() - start < MEASURE_MIN_SECONDS:
        model.loss_and_grads(x, y)
        steps += 1
    return steps * batch_size * seq_len / max(clock() - start, 1e-9)
