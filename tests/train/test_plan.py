"""The time-budget plan (train/plan.py): the rule, with the machine's speed injected, and a run
that records it, resumes without measuring again and lets every given setting win."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charrnn import cli
from charrnn.io.checkpoint import load_checkpoint
from charrnn.io.layout import CONFIG, LATEST
from charrnn.model.params import count_parameters
from charrnn.train import plan as planmod
from charrnn.train.plan import (DROPOUT_BY_PASSES, MAX_PARAMS_PER_CHAR, MIN_CHARS_PER_PARAM, RECIPES, TRAIN_SHARE,
                                Planner, dropout_for, measure_speed)
from conftest import SONNET

V = 65


def flops_speed(rate: float):
    """A machine that trains `rate` parameters x characters per second: a recipe's speed falls as
    its size grows, as on a real machine."""
    def measure(self, settings):
        return rate / count_parameters(self.vocab_size, settings["hidden_size"], settings["num_layers"],
                                       settings["cell"])
    return measure


def planned(monkeypatch, rate: float, n_train: int = 1_000_000, budget: float = 600.0, **given):
    monkeypatch.setattr(Planner, "measure", flops_speed(rate))
    return Planner(V, n_train, budget, 32, 64, given=given).plan()


def params_of(s: dict) -> int:
    return count_parameters(V, s["hidden_size"], s["num_layers"], s["cell"])


def test_a_faster_machine_or_a_longer_budget_buys_a_larger_model(monkeypatch):
    sizes = [params_of(planned(monkeypatch, rate)[0]) for rate in (1e9, 1e10, 1e11, 1e12)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    by_budget = [params_of(planned(monkeypatch, 1e10, budget=b)[0]) for b in (60, 600, 6000)]
    assert by_budget == sorted(by_budget) and by_budget[0] < by_budget[-1]


def test_the_chosen_recipe_is_the_largest_that_sees_enough_characters_per_parameter(monkeypatch):
    budget, rate = 600.0, 5e10
    settings, reason = planned(monkeypatch, rate, budget=budget)
    n = params_of(settings)
    chars = rate / n * budget * TRAIN_SHARE
    assert chars >= MIN_CHARS_PER_PARAM * n
    larger = [r.settings for r in RECIPES if params_of(r.settings) > n]
    assert larger, "the case must leave a larger recipe out"
    nxt = min(larger, key=params_of)
    assert rate / params_of(nxt) * budget * TRAIN_SHARE < MIN_CHARS_PER_PARAM * params_of(nxt)
    assert f"{n:,} parameters" in reason and "measured chars/s" in reason


def test_a_small_text_gets_a_small_model_however_fast_the_machine(monkeypatch):
    small, _ = planned(monkeypatch, 1e15, n_train=20_000)
    assert small == dict(RECIPES[0].settings, dropout=small["dropout"])
    large, _ = planned(monkeypatch, 1e15, n_train=100_000_000)
    assert params_of(large) > params_of(small)
    assert params_of(large) <= MAX_PARAMS_PER_CHAR * 100_000_000


def test_dropout_follows_the_passes_over_the_text(monkeypatch):
    assert [dropout_for(at) for at, _ in DROPOUT_BY_PASSES] == [p for _, p in DROPOUT_BY_PASSES]
    assert dropout_for(0.5) == 0.0
    few, _ = planned(monkeypatch, 1e10, n_train=50_000_000)
    many, _ = planned(monkeypatch, 1e10, n_train=300_000)
    assert few["dropout"] < many["dropout"]


def test_every_given_setting_wins(monkeypatch):
    s, reason = planned(monkeypatch, 1e11, cell="gru")
    assert s["cell"] == "gru" and "lr" not in s and "the cell's lr" in reason  # the GRU keeps its own rate
    s, _ = planned(monkeypatch, 1e11, hidden_size=96, dropout=0.05)
    assert s["hidden_size"] == 96 and s["dropout"] == 0.05
    s, _ = planned(monkeypatch, 1e15, num_layers=1, hidden_size=64)
    assert (s["num_layers"], s["hidden_size"], s["lr"]) == (1, 64, RECIPES[0].settings["lr"])


def test_measure_speed_times_real_steps_with_a_given_clock():
    ticks = iter(np.arange(0.0, 100.0, 0.25))
    speed = measure_speed(V, {"cell": "lstm", "hidden_size": 8, "num_layers": 1}, 4, 8, "float32",
                          clock=lambda: float(next(ticks)))
    assert speed > 0 and np.isfinite(speed)


def test_a_run_without_steps_records_its_plan_and_a_resume_measures_nothing(tmp_path, monkeypatch):
    from charrnn.train.clock import Clock

    calls = []

    def measure(self, settings):
        calls.append(settings)
        return 1e12 / params_of(settings)

    monkeypatch.setattr(Planner, "measure", measure)
    monkeypatch.setattr(Clock, "measure_step_seconds", lambda self, busy, steps: 0.01)
    text = tmp_path / "t.txt"
    text.write_text(SONNET * 200)
    run = tmp_path / "run"
    args = ["train", str(text), "--out", str(run), "--quiet", "--time-budget", "3", "--sample-every", "0",
            "--seq-len", "16", "--batch-size", "4"]
    assert cli.main(args) == 0
    cfg = json.loads((run / CONFIG).read_text())
    assert calls and cfg["plan"].startswith("3 s: ") and cfg["steps"] == 0 and cfg["patience"] == 5
    chosen = {k: cfg[k] for k in planmod.PLANNED}
    assert load_checkpoint(run / LATEST).config.plan == cfg["plan"]
    assert params_of(chosen) <= MAX_PARAMS_PER_CHAR * len(SONNET * 200)

    def refuse(self, settings):
        raise AssertionError("a resumed run measured its plan again")

    monkeypatch.setattr(Planner, "measure", refuse)
    assert cli.main(["train", "--resume", str(run), "--time-budget", "1", "--quiet"]) == 0
    again = json.loads((run / CONFIG).read_text())
    assert {k: again[k] for k in planmod.PLANNED} == chosen and again["plan"] == cfg["plan"]


@pytest.mark.parametrize("case", ["steps", "preset", "fine-tuning"])
def test_no_plan_where_the_run_fixes_its_length_or_its_model(tmp_path, monkeypatch, case):
    def refuse(self, settings):
        raise AssertionError("planned")

    monkeypatch.setattr(Planner, "measure", refuse)
    text = tmp_path / "t.txt"
    text.write_text(SONNET * 40)
    common = ["--quiet", "--sample-every", "0"]
    extra = {"steps": ["--steps", "3"], "preset": ["--preset", "min-char-rnn", "--time-budget", "1"],
             "fine-tuning": ["--init-from", str(tmp_path / "source"), "--time-budget", "1"]}[case]
    if case == "fine-tuning":
        assert cli.main(["train", str(text), "--out", str(tmp_path / "source"), "--steps", "2", "--hidden-size", "8",
                         *common]) == 0
    assert cli.main(["train", str(text), "--out", str(tmp_path / "run"), *common, *extra]) == 0
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["plan"] is None
