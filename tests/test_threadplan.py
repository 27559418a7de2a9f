"""Training's count of cores, decided per configuration: the rule, the measurement's bookkeeping
(with a stand-in clock: nothing here is timed), the cache, and the record a run keeps and reuses
on resume. The measurements themselves are injected."""

import contextlib
import io
import itertools
import json

import numpy as np
import pytest

from charrnn import CharRNN, threadplan, threads
from charrnn.core import tuning
from charrnn.io.checkpoint import LATEST, load_checkpoint
from charrnn.train import Trainer

from conftest import SONNET, tiny_config


@pytest.fixture
def planning(monkeypatch, tmp_path):
    """Nothing chose a count (no variable, no set_threads), two usable cores, tiny windows split,
    and the cache in a folder of the test's own."""
    for var in threads.BLAS_ENV_VARS + (threads.ENV_VAR,):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "_state", {"applied": False, "threads": None, "source": None})
    monkeypatch.setattr(threads, "_blas_already_limited", lambda: False)  # this process's BLAS is pinned by conftest
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK", 1)
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK_COMPILED", 1)
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(threadplan, "busy_now", lambda: False)  # the machine's condition, injected
    return tmp_path / "cache" / threadplan.CACHE_NAME


def timings(as_is: float, busy: float) -> dict:
    """Step times whose speedups of two workers over one are `as_is` and `busy`."""
    return {"as is": {1: as_is, 2: 1.0}, "busy": {1: busy, 2: 1.0}}


class Measure:
    """A stand-in for measure_step_times: counts its calls and answers fixed speedups."""

    def __init__(self, as_is: float = 1.5, busy: float = 1.2):
        self.calls, self.answer = [], timings(as_is, busy)

    def __call__(self, model, batch_size, seq_len, cores):
        self.calls.append((model.cell, batch_size, seq_len, cores))
        return self.answer


def never(*args):
    raise AssertionError("measured where nothing should be")


# ------------------------------------------------------------------------------------------------
# the rule and the measurement


def test_every_core_is_kept_only_where_faster_by_the_margin_in_the_machine_s_condition():
    m = tuning.THREADS_MIN_SPEEDUP
    assert threadplan.decide(timings(m, m), 2) == (2, {"as is": pytest.approx(m), "busy": pytest.approx(m)})
    assert threadplan.decide(timings(m, m), 2, busy=True)[0] == 2
    assert threadplan.decide(timings(1.6, 1.2), 2, busy=True)[0] == 2
    # the GRU at H=128 beside a busy process: two workers on a free machine, one beside the process
    assert threadplan.decide(timings(1.6, m * 0.999), 2)[0] == 2
    assert threadplan.decide(timings(1.6, m * 0.999), 2, busy=True)[0] == 1
    assert threadplan.decide(timings(m * 0.999, 1.6), 2)[0] == 1
    assert threadplan.decide(timings(0.9, 0.9), 2)[0] == 1
    assert threadplan.decide({}, 2)[0] == 1  # nothing timed: nothing won


@pytest.mark.parametrize("running, busy", [([1, 1, 1, 1, 1], False), ([2, 2, 1, 2, 2], True), ([1, 2, 1, 1, 1], False)])
def test_the_machine_counts_as_busy_when_other_processes_run_as_the_run_starts(monkeypatch, running, busy):
    readings = itertools.cycle([f"0.50 0.40 0.30 {n}/200 12345\n" for n in running])
    real_open = open

    def fake_open(path, *args, **kw):
        if path == "/proc/loadavg":
            return io.StringIO(next(readings))
        return real_open(path, *args, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(threadplan.time, "sleep", lambda s: None)
    assert threadplan.others_running() == pytest.approx(sum(running) / len(running) - 1)
    assert threadplan.busy_now() is busy


def test_a_busy_machine_takes_one_worker_where_two_lose_beside_a_busy_process(planning, monkeypatch):
    model = CharRNN(11, 8, seed=0, cell="gru")
    plan(model, measure=Measure(as_is=1.6, busy=0.9))
    threads.set_threads(1, source="default")
    assert plan(model, measure=never).threads == 2  # free: the cached figure as is decides
    monkeypatch.setattr(threadplan, "busy_now", lambda: True)
    said = []
    got = plan(model, measure=never, say=said.append)
    assert (got.threads, got.source, got.condition) == (1, "cache", "busy") and threads.workers() == 1
    assert "busy now" in said[0] and "0.90x busy" in said[0]


def test_a_long_step_is_timed_over_a_shorter_window_and_fewer_repeats():
    reps, budget, low = tuning.THREADS_MEASURE_REPEATS, tuning.THREADS_MEASURE_SECONDS, tuning.THREADS_MEASURE_MIN_STEPS
    assert threadplan._measured_window(100, 1e-6) == (100, reps)  # a quick step: the run's own window
    per_step = budget / (4 * reps * 40)  # 40 time steps fit
    assert threadplan._measured_window(100, per_step) == (40, reps)
    T, r = threadplan._measured_window(100, budget)  # far too long: the fewest steps and repeats
    assert (T, r) == (low, tuning.THREADS_MEASURE_MIN_REPEATS)
    assert threadplan._measured_window(5, budget) == (5, tuning.THREADS_MEASURE_MIN_REPEATS)


def test_the_measurement_times_both_counts_in_both_conditions_and_leaves_the_model_as_found(planning):
    model = CharRNN(11, 8, 2, seed=0, cell="gru", dropout=0.3)
    before = model.dropout_rng.bit_generator.state
    params = {k: v.copy() for k, v in model.params.items()}
    seen, inside = [], []
    now = [0.0]

    def clock():  # one worker's step takes 2 "seconds", two workers' 1
        now[0] += 2.0 if threads.workers() == 1 else 1.0
        return now[0]

    @contextlib.contextmanager
    def neighbour():
        inside.append(True)
        yield
        inside.append(False)

    original = model.loss_and_grads

    def spy(x, y, h0=None):
        seen.append((threads.workers(), x.shape, bool(inside) and inside[-1]))
        return original(x, y, h0)

    model.loss_and_grads = spy
    got = threadplan.measure_step_times(model, 4, 50, 2, clock=clock, neighbour=neighbour)
    assert got == {"as is": {1: 2.0, 2: 1.0}, "busy": {1: 2.0, 2: 1.0}}
    assert inside == [True, False]  # one busy neighbour, stopped after
    timed = [s for s in seen if s[1][1] != threadplan.GAUGE_STEPS]
    # 2 "seconds" a short window: the timed window is cut to the fewest time steps
    assert {s[1] for s in timed} == {(4, tuning.THREADS_MEASURE_MIN_STEPS)}
    n = tuning.THREADS_MEASURE_MIN_REPEATS
    assert [s[2] for s in timed[1:]] == [False] * 2 * n + [True] * 2 * n  # after the pool's warm-up call
    assert [s[0] for s in timed[1:]] == [1, 2] * 2 * n  # alternating
    assert model.dropout_rng.bit_generator.state == before and threads.workers() == 2
    assert all(np.array_equal(params[k], model.params[k]) for k in params)


def test_the_busy_neighbour_runs_while_the_block_does_and_is_stopped_after():
    with threadplan.busy_neighbour() as proc:
        assert proc.poll() is None
    assert proc.poll() is not None


# ------------------------------------------------------------------------------------------------
# the cache


def plan(model, B=8, T=5, **kw):
    return threadplan.plan_training(model, B, T, **kw)


def test_a_decision_is_measured_once_then_read_from_the_cache(planning):
    model, measure = CharRNN(11, 8, seed=0, cell="lstm"), Measure()
    said = []
    got = plan(model, measure=measure, say=said.append)
    assert got.threads == 2 and got.source == "measured" and measure.calls == [("lstm", 8, 5, 2)]
    assert threads.thread_info()["source"] == "measured" and threads.workers() == 2
    assert len(said) == 1 and "1.50x as is" in said[0] and str(planning) in said[0]
    doc = json.loads(planning.read_text())
    (key, entry), = doc["plans"].items()
    assert key.startswith("train lstm H=8 L=1 B=8 T=5 V=11 float32") and entry["speedups"] == {"as is": 1.5, "busy": 1.2}
    assert entry["machine"] == threadplan.fingerprint()
    threads.set_threads(1, source="default")  # another run in this process starts from the default
    assert plan(model, measure=never) == threadplan.Plan(2, "cache", {"as is": 1.5, "busy": 1.2}, "as is")
    # another configuration, or a slower second core: measured, and both kept
    slow = Measure(as_is=0.95, busy=0.95)
    assert plan(model, B=6, measure=slow).threads == 1 and len(slow.calls) == 1
    assert threads.workers() == 1
    assert len(json.loads(planning.read_text())["plans"]) == 2


def test_another_machine_is_measured_again(planning, monkeypatch):
    model = CharRNN(11, 8, seed=0)
    plan(model, measure=Measure())
    machine = threadplan.fingerprint()
    monkeypatch.setattr(threadplan, "fingerprint", lambda: machine | {"cpu": "another processor"})
    measure = Measure(as_is=0.9)
    assert plan(model, measure=measure) == threadplan.Plan(1, "measured", {"as is": 0.9, "busy": 1.2}, "as is")
    assert len(measure.calls) == 1 and len(json.loads(planning.read_text())["plans"]) == 2


@pytest.mark.parametrize("content", [b"\x00\xff not json", b"[1, 2]", b'{"format": "other", "version": 1, "plans": {}}',
                                     b'{"format": "charrnn-thread-plans", "version": 2, "plans": []}',
                                     b'{"format": "charrnn-thread-plans", "version": 1, "plans": {}}', "entry"])
def test_a_corrupt_cache_is_measured_again_and_replaced(planning, content):
    model = CharRNN(11, 8, seed=0)
    planning.parent.mkdir(parents=True)
    if content == "entry":  # a well-formed file whose entry holds no speedups a plan could use
        plan(model, measure=Measure())
        doc = json.loads(planning.read_text())
        for entry in doc["plans"].values():
            entry["speedups"] = {"as is": "fast", "busy": 1.2}
        content = json.dumps(doc).encode()
        threads.set_threads(1, source="default")
    planning.write_bytes(content)
    measure = Measure()
    assert plan(model, measure=measure).source == "measured" and len(measure.calls) == 1
    assert json.loads(planning.read_text())["plans"]  # replaced by a good one
    threads.set_threads(1, source="default")
    assert plan(model, measure=never).source == "cache"


def test_a_cache_that_cannot_be_written_is_ignored(planning, tmp_path):
    model = CharRNN(11, 8, seed=0)
    blocked = tmp_path / "a file" / threadplan.CACHE_NAME
    blocked.parent.write_text("not a folder")
    said = []
    assert plan(model, measure=Measure(), cache=blocked, say=said.append).threads == 2
    assert "cannot be written" in said[0] and blocked.parent.read_text() == "not a folder"
    assert threadplan.write_plans(blocked, {}) is False


# ------------------------------------------------------------------------------------------------
# when nothing is measured


@pytest.mark.parametrize("how", ["given", "set_threads", "CHARRNN_THREADS", "OPENBLAS_NUM_THREADS", "BLAS limit"])
def test_nothing_is_measured_where_a_count_was_chosen(planning, monkeypatch, how):
    model = CharRNN(11, 8, seed=0)
    kw = {}
    if how == "given":
        kw["given"] = 1
    elif how == "set_threads":
        threads.set_threads(1)
    elif how == "BLAS limit":
        monkeypatch.setattr(threads, "_blas_already_limited", lambda: True)
    else:
        monkeypatch.setenv(how, "1")
    assert plan(model, measure=never, **kw) is None
    assert threads.workers() == 1 and not planning.exists()


def test_a_recorded_count_and_a_window_of_one_shard_are_not_measured(planning, monkeypatch):
    model = CharRNN(11, 8, seed=0)
    assert plan(model, recorded=2, measure=never) == threadplan.Plan(2, "checkpoint")
    assert threads.workers() == 2 and threads.thread_info()["source"] == "checkpoint"
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK", 10**6)
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK_COMPILED", 10**6)
    assert plan(model, measure=never) == threadplan.Plan(2, "one worker")
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    assert plan(model, measure=never) == threadplan.Plan(1, "one worker")
    assert not planning.exists()


# ------------------------------------------------------------------------------------------------
# a run's record, and resume


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(SONNET * 6, encoding="utf-8")
    return path


def params_of(run):
    return load_checkpoint(run / LATEST).model.params


def same_params(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_a_run_records_the_measured_count_and_resumes_with_it_without_measuring(planning, monkeypatch, tmp_path, text):
    cfg = tiny_config(text, sample_every=0, eval_every=3, dropout=0.2, lr_schedule="constant")
    measure = Measure()
    monkeypatch.setattr(threadplan, "measure_step_times", measure)
    Trainer(cfg.replace(steps=6), tmp_path / "whole", quiet=True).run()
    assert len(measure.calls) == 1  # the second run of the same configuration reads the cache
    Trainer(cfg.replace(steps=3), tmp_path / "parts", quiet=True).run()
    assert len(measure.calls) == 1
    assert load_checkpoint(tmp_path / "parts" / LATEST).state["workers"] == 2
    env = json.loads((tmp_path / "parts" / "environment.json").read_text())
    assert [(e["threads"], e["threads_from"]) for e in env] == [(2, "cache")]
    # resumed with nothing given: the recorded count, not measured, and exactly the run that never stopped
    planning.unlink()
    monkeypatch.setattr(threadplan, "measure_step_times", never)
    threads.set_threads(1, source="default")
    out = io.StringIO()
    Trainer(cfg.replace(steps=6), tmp_path / "parts", resume=True, progress=False, stream=out).run()
    assert "worker thread(s)" not in out.getvalue() and not planning.exists()
    assert same_params(params_of(tmp_path / "whole"), params_of(tmp_path / "parts"))
    env = json.loads((tmp_path / "parts" / "environment.json").read_text())
    assert env[-1]["threads_from"] == "checkpoint" and env[-1]["threads"] == 2


@pytest.mark.parametrize("given, exact", [(2, True), (1, False)])
def test_a_count_given_on_resume_overrides_the_record_and_is_exact_only_when_it_is_the_same(
        planning, monkeypatch, tmp_path, text, given, exact):
    cfg = tiny_config(text, sample_every=0, eval_every=3, lr_schedule="constant")
    monkeypatch.setattr(threadplan, "measure_step_times", Measure())
    Trainer(cfg.replace(steps=6), tmp_path / "whole", quiet=True).run()
    Trainer(cfg.replace(steps=3), tmp_path / "parts", quiet=True).run()
    monkeypatch.setattr(threadplan, "measure_step_times", never)
    out = io.StringIO()
    Trainer({"steps": 6, "threads": given}, tmp_path / "parts", resume=True, progress=False, stream=out).run()
    assert threads.workers() == given and threads.thread_info()["source"] == "set_threads"
    assert ("trained with 2 worker thread(s) and continues with 1" in out.getvalue()) is not exact
    assert same_params(params_of(tmp_path / "whole"), params_of(tmp_path / "parts")) is exact
