"""Every row with a FLOP count reports the fraction of the same run's all-core float32 peak that
its matrix products reach, beside its ratio, in the table and in --json; the peak row runs
whenever a row needs it. The timings are injected: nothing here is timed."""

import argparse
import json

import pytest

from charrnn import bench, threadplan
from charrnn.bench import Row


def fake_row(setting, repeats, *args, **kwargs):
    """compare()'s row, with a GFLOP/s that says which setting made it: H / 4."""
    g = None if setting.job == "gen" else setting.H / 4
    return Row(f"{setting.job} {setting.cell} H={setting.H}", "fake", 1000.0, 800.0, "PyTorch", gflops=g)


@pytest.fixture
def injected(monkeypatch):
    peaks = iter([200.0, 256.0, 150.0])  # the all-core peak at the start, then at the end (or one core)

    def peak(repeats):
        g = next(peaks)
        return Row("peak", "sgemm", g, None, "", unit="GFLOP/s", gflops=g)

    monkeypatch.setattr(bench, "_peak", peak)
    monkeypatch.setattr(bench, "compare", fake_row)


def args(rows, quick=True, threads=2):
    return argparse.Namespace(rows=rows, cells=["lstm"], quick=quick, backend="numpy", baseline_threads="matched",
                              burn=False, threads=threads)


@pytest.mark.parametrize("quick", [True, False])
def test_train_and_eval_rows_get_the_fraction_of_the_peak_run_for_them(injected, quick):
    rows = bench.run_rows(args(["train", "eval"], quick), 1, 2)
    peaks = [r for r in rows if r.name == "peak"]
    assert len(peaks) == (1 if quick else 2)  # run without being asked; at the start and the end when not quick
    assert not any(r.name == "peak, 1 core" for r in rows)
    peak = bench.peak_fractions(rows)
    assert peak == (200.0 if quick else 256.0)  # the larger of the run's own
    timed = [r for r in rows if r.name != "peak"]
    assert {r.name for r in timed} >= {"train lstm H=512", "train lstm H=128", "eval lstm H=512"}
    for r in timed:
        assert r.peak_fraction == pytest.approx(r.gflops / peak)
    table = bench.format_table(rows).splitlines()
    assert table[0].split("|")[5:7] == [" ratio ", " % of peak "]  # side by side
    line = next(t for t in table if t.startswith("| train lstm H=512 "))
    assert line.split("|")[5:7] == [" 1.25x ", f" {100 * 128 / peak:.0f}% "]


def test_generation_rows_alone_need_no_peak(injected):
    rows = bench.run_rows(args(["gen"]), 1, 2)
    assert [r.name for r in rows] == ["gen lstm H=512"]
    assert bench.peak_fractions(rows) is None and rows[0].peak_fraction is None
    assert "%" not in bench.format_table(rows).splitlines()[-1]


def test_the_peak_rows_asked_for_include_one_core_and_the_json_keeps_every_fraction(injected):
    a = args(["peak", "train"])
    rows = bench.run_rows(a, 1, 2)
    assert [r.name for r in rows[:2]] == ["peak", "peak, 1 core"] or bench.threads.usable_cpus() == 1
    peak = bench.peak_fractions(rows)
    defaults = {"lstm H=128 B=64 T=100": threadplan.Plan(1, "measured", {"as is": 1.1, "busy": 0.9})}
    doc = json.loads(json.dumps(bench.document("charrnn bench --rows peak,train", a, 2, rows, peak,
                                               {k: vars(v) for k, v in defaults.items()}, [1.0, 2.0, 3.0])))
    assert doc["peak_gflops"] == peak == 200.0
    by_name = {r["name"]: r for r in doc["rows"]}
    assert by_name["train lstm H=512"]["peak_fraction"] == pytest.approx(128 / 200)
    assert by_name["train lstm H=512"]["ratio"] == pytest.approx(1.25)
    assert by_name["peak"]["peak_fraction"] == 1.0
    assert doc["training_defaults"]["lstm H=128 B=64 T=100"]["threads"] == 1
    assert doc["load_average"]["start"] == [1.0, 2.0, 3.0]
    assert doc["load_average"]["end"] is None or len(doc["load_average"]["end"]) == 3


@pytest.fixture
def plans(monkeypatch):
    """threadplan.default_plan answering 1 core at H=512 and 2 elsewhere, from the cache; its calls."""
    planned = []

    def default_plan(model, B, T):
        planned.append((model.cell, model.hidden_size, B, T))
        return threadplan.Plan(1 if model.hidden_size == 512 else 2, "cache")

    monkeypatch.setattr(threadplan, "default_plan", default_plan)
    monkeypatch.setattr(bench, "_peak", lambda repeats: Row("peak", "sgemm", 100.0, None, "", gflops=100.0))
    return planned


def test_the_cores_rows_time_trainings_default_count(monkeypatch, plans):
    seen = []

    def compare_cores(s, repeats, cores, workdir, workers=None, label=None):
        seen.append(((s.cell, s.H, s.B, s.T), cores, workers, label))
        return []

    monkeypatch.setattr(bench, "compare_cores", compare_cores)
    a = args(["cores"], threads=2)
    a.cells = ["gru"]
    settings = [("gru", *hbt) for hbt in bench.cores_settings("gru")]
    assert bench.planned_settings(a) == settings  # with --threads: the cores rows' alone
    defaults = bench.training_defaults(bench.planned_settings(a))
    assert plans == settings and len(defaults) == len(settings)
    bench.run_rows(a, 1, 2, defaults)
    all_cores = max(2, bench.threads.usable_cpus())
    assert [s[0] for s in seen] == settings and all(s[1] == all_cores for s in seen)
    assert {s[0][1]: (s[2], s[3]) for s in seen}[512] == (1, "default (1 core, cache)")
    assert {s[0][1]: (s[2], s[3]) for s in seen}[128] == (2, "default (2 cores, cache)")


def test_without_threads_the_train_rows_time_trainings_default_count(monkeypatch, plans):
    seen = []

    def compare(setting, repeats, threads, baseline_threads, workdir, backend="numpy", default=None):
        seen.append((setting.job, setting.H, setting.B, threads, default))

    monkeypatch.setattr(bench, "compare", compare)
    a = args(["train", "eval"], threads=None)
    defaults = bench.training_defaults(bench.planned_settings(a))
    assert {p[1:] for p in plans} == {(512, 64, 100), (128, 64, 100), (100, 1, 25)}  # the train rows only
    bench.run_rows(a, 1, 2, defaults)
    by = {(job, H, B): d for job, H, B, _, d in seen}
    assert by[("train", 512, 64)] == threadplan.Plan(1, "cache") and by[("train", 128, 64)].threads == 2
    assert by[("eval", 512, 64)] is None and all(t == 2 for *_, t, _ in seen)
    assert bench.planned_settings(args(["train"], threads=1)) == []
