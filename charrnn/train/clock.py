"""The training loop's clock: intervals given in seconds, and a closing validation inside the budget.

Under a time budget, validations and samples not given as step intervals follow the clock
(settings.resolve sets --eval-seconds and --sample-seconds). The speed is measured once, over the
steps after an invocation's first (which compiles and warms up), and turns those seconds into step
intervals, which are recorded in the configuration (config.json, the checkpoints) and the state's
`step_seconds`: a resumed run keeps them and measures nothing, so exact resume holds; tests put a
fixed speed in `Clock.measure_step_seconds`.

A time budget bounds the whole command: the loop stops early enough to leave the closing
validation the time it needs, at most CLOSING_SHARE of the budget, and when the whole validation
split would take longer the closing validation scores a sample of it, which is said as such.
"""

from __future__ import annotations

import time
from typing import Any, Callable

# The speed is measured over this many steps after an invocation's first, and taken at this step
# of the run at the earliest, so that where the intervals change does not depend on where a run
# was stopped and resumed.
MEASURE_STEPS = 10
MEASURE_AT = 11
# The closing validation of a run with a time budget takes at most this share of it: beyond, a
# sample of the validation split is scored instead of the whole.
CLOSING_SHARE = 0.1


class Clock:
    """Seconds for one run of the loop (a Trainer's `run()`), started when the loop starts."""

    def __init__(self, objective: Any, budget: float, say: Callable[[str], None]) -> None:
        self.objective, self.budget, self.say = objective, budget, say
        self.started = time.perf_counter()
        self._first_step = True  # this invocation's first step compiles and warms up: not timed
        self._steps, self._busy = 0, 0.0
        self.val_rate: float | None = None  # seconds a validation takes per unit it scores

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        """Whether the loop must stop to leave the closing validation its time."""
        return bool(self.budget and self.elapsed() + self.reserve() >= self.budget)

    # -- intervals in seconds -------------------------------------------------------------------

    def timed(self) -> bool:
        cfg = self.objective.cfg
        return bool(cfg.eval_seconds or getattr(cfg, "sample_seconds", 0.0))

    def step_done(self, busy: float) -> None:
        """After a training step of `busy` seconds: until the speed is measured, time the steps
        and measure once enough are timed."""
        s = self.objective
        if s.state.step_seconds or not self.timed():
            return
        if self._first_step:
            self._first_step = False
            return
        self._steps += 1
        self._busy += busy
        if self._steps >= MEASURE_STEPS and s.state.step >= MEASURE_AT:
            self.set_intervals(self.measure_step_seconds(self._busy, self._steps))

    def measure_step_seconds(self, busy: float, steps: int) -> float:
        """Seconds per step, from `steps` timed steps (tests put a fixed speed here)."""
        return busy / steps

    def set_intervals(self, seconds: float) -> None:
        """The step intervals of eval_seconds and sample_seconds at `seconds` per step: chosen once,
        recorded in the configuration (config.json, the checkpoints) and the state."""
        s = self.objective
        cfg, st = s.cfg, s.state
        st.step_seconds = max(seconds, 1e-9)
        changes: dict[str, int] = {}
        if cfg.eval_seconds and s.validates:
            steps = max(1, round(cfg.eval_seconds / st.step_seconds))
            changes["eval_every"] = min(cfg.eval_every, steps) if cfg.eval_every else steps
        if getattr(cfg, "sample_seconds", 0.0) and cfg.sample_every:
            changes["sample_every"] = min(cfg.sample_every, max(1, round(cfg.sample_seconds / st.step_seconds)))
        s.cfg = cfg.replace(**changes)
        if s.engine.writes:
            s.write_config()
        if changes:
            said = [f"validating every {changes['eval_every']:,} steps"] if "eval_every" in changes else []
            said += [f"sampling every {changes['sample_every']:,}"] if "sample_every" in changes else []
            self.say(f"charrnn: {1 / st.step_seconds:,.1f} steps/s: {', '.join(said)}")

    # -- the closing validation -----------------------------------------------------------------

    def validated(self, seconds: float, scored: int) -> None:
        """A validation took `seconds` for `scored` units: the rate the closing one is judged by."""
        if scored:
            self.val_rate = seconds / scored

    def reserve(self) -> float:
        """Seconds kept at the end of the budget for the closing validation: the whole split's
        estimated time, or at most CLOSING_SHARE of the budget (then a sample of it is scored)."""
        full = self.closing_cost()
        return 0.0 if full is None else min(full, CLOSING_SHARE * self.budget)

    def closing_cost(self) -> float | None:
        """Estimated seconds to validate on the whole split (None: no estimate yet, or no budget)."""
        s = self.objective
        if not (self.budget and s.validates):
            return None
        rate = self.val_rate
        if rate is None and s.state.step_seconds:  # before any validation: a forward pass is about a third of a step
            rate = s.state.step_seconds / s.units_per_step / 3
        return None if rate is None else rate * s.val_size

    def closing_limit(self) -> int | None:
        """What the closing validation may score: None for the whole split, else a number of
        units, when the whole would not fit in what is left of the budget (or the share kept)."""
        full, s = self.closing_cost(), self.objective
        if full is None:
            return None
        allowed = max(self.budget - self.elapsed(), CLOSING_SHARE * self.budget)
        return None if full <= allowed else max(1, int(s.val_size * allowed / full))
