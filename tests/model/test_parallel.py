"""The streams shared out among worker threads: the same numbers as the plain single-thread path,
for every cell, with layers and dropout, in training and in evaluation."""

import numpy as np
import pytest

from charrnn import CharRNN, threads
from charrnn.core import cell_names
from charrnn.core import tuning
from charrnn.model import parallel
from charrnn.model.parallel import stream_shards

CELLS = cell_names()  # the built-in cells, as registered when the tests are collected


@pytest.fixture
def workers(monkeypatch):
    """Run with n workers whatever the machine (and split even tiny windows)."""
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK", 1)
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK_COMPILED", 1)

    def use(n):
        monkeypatch.setattr(threads, "workers", lambda: n)

    return use


def window(V, B, T, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-11), ("float32", 2e-5)])
def test_shards_agree_with_the_plain_path(cell, dtype, rtol, workers):
    V, H, B, T = 11, 6, 7, 5
    x, y = window(V, B, T)
    out = {}
    for n in (1, 2, 3):
        workers(n)
        model = CharRNN(V, H, 2, dtype, seed=3, cell=cell, dropout=0.3)
        h0 = model.initial_state(B)
        h0 = tuple(p + 0.1 for p in h0) if isinstance(h0, tuple) else h0 + 0.1
        loss, grads, h_last = model.loss_and_grads(x, y, h0)
        ev, h_ev = model.loss(x, y, h0)
        nll, _ = model.nll(x, y, h0)
        out[n] = loss, grads, h_last, ev, h_ev, nll, model.dropout_rng.random()
    ref = out[1]
    for n in (2, 3):
        loss, grads, h_last, ev, h_ev, nll, after = out[n]
        assert loss == pytest.approx(ref[0], rel=rtol) and ev == pytest.approx(ref[3], rel=rtol)
        for name in grads:
            np.testing.assert_allclose(grads[name], ref[1][name], rtol=rtol, atol=rtol * np.abs(ref[1][name]).max(),
                                       err_msg=name)
        for a, b in zip(np.atleast_1d(h_last) if not isinstance(h_last, tuple) else h_last,
                        np.atleast_1d(ref[2]) if not isinstance(ref[2], tuple) else ref[2]):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(nll, ref[5], rtol=rtol * 10)
        assert nll.shape == (B, T) and nll.mean() == pytest.approx(ev, rel=rtol * 10)
        assert after == ref[6]  # the dropout generator is left where the plain path leaves it


def test_a_fixed_worker_count_gives_identical_numbers(workers):
    workers(2)
    x, y = window(9, 6, 4)
    runs = [CharRNN(9, 5, 1, seed=1, cell="gru").loss_and_grads(x, y) for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_shards_cover_the_streams_and_small_work_stays_whole():
    assert stream_shards(7, 4096, 3) == [slice(0, 3), slice(3, 5), slice(5, 7)]
    assert stream_shards(64, 128, 2) == [slice(0, 32), slice(32, 64)]
    assert stream_shards(32, 128, 2) == [slice(0, 32)]  # 16 streams of 128 units: too small a shard
    assert stream_shards(1, 512, 4) == [slice(0, 1)]  # one stream: nothing to share
    assert stream_shards(64, 8, 2) == [slice(0, 64)]  # too little work per step to be worth it
    assert stream_shards(64, 128, 1) == [slice(0, 64)]
    # gated cells' compiled steps hold no GIL: they share out finer, the tanh cell's NumPy steps not
    assert stream_shards(32, 128, 2, parallel.min_shard_work("lstm")) == [slice(0, 16), slice(16, 32)]
    assert stream_shards(32, 128, 2, parallel.min_shard_work("rnn")) == [slice(0, 32)]


def test_gated_cells_share_out_finer_only_when_their_steps_are_compiled(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 2)
    assert CharRNN(9, 128, 1, cell="gru").workers_for(32) == 2
    assert CharRNN(9, 128, 1, cell="rnn").workers_for(32) == 1
    monkeypatch.setenv("CHARRNN_JIT", "0")  # NumPy steps: the tanh cell's rule
    assert CharRNN(9, 128, 1, cell="gru").workers_for(32) == 1
    assert CharRNN(9, 128, 1, cell="gru").workers_for(64) == 2


def test_an_error_in_a_worker_is_raised_after_all_finish():
    done = []

    def fn(sl):
        if sl.start == 1:
            raise ValueError("boom")
        done.append(sl.start)
        return sl.start

    with pytest.raises(ValueError, match="boom"):
        parallel.run_shards(fn, [slice(0, 1), slice(1, 2), slice(2, 3)])
    assert sorted(done) == [0, 2]
    assert parallel.run_shards(lambda sl: sl.start, [slice(0, 1), slice(1, 2)]) == [0, 1]


def test_all_cores_are_the_usable_ones_within_the_cgroup_quota(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(str(tmp_path)) is None
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.0)
    assert threads.usable_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(threads, "_affinity_cpus", lambda: 3)
    assert threads.usable_cpus() == 3
    for var in threads.BLAS_ENV_VARS + (threads.ENV_VAR,):
        monkeypatch.delenv(var, raising=False)
    assert threads.requested_threads() == (3, "default")  # DEFAULT_CORES "all", from the measurements
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.requested_threads() == (2, threads.ENV_VAR)
    monkeypatch.delenv(threads.ENV_VAR)
    monkeypatch.setattr(threads, "DEFAULT_CORES", 1)
    assert threads.requested_threads() == (1, "default")
    with pytest.raises(Exception, match="'all'"):
        threads.set_threads("some")


def test_resume_is_exact_for_a_fixed_worker_count_and_says_when_it_changes(tmp_path, workers):
    import io

    from charrnn.io.checkpoint import LATEST, load_checkpoint
    from charrnn.train import Trainer

    from conftest import SONNET
    from conftest import tiny_config

    path = tmp_path / "text.txt"
    path.write_text(SONNET * 6, encoding="utf-8")
    workers(2)
    cfg = tiny_config(path, sample_every=0, eval_every=3, dropout=0.2, lr_schedule="constant")
    Trainer(cfg.replace(steps=6), tmp_path / "one", quiet=True).run()
    Trainer(cfg.replace(steps=3), tmp_path / "two", quiet=True).run()
    assert load_checkpoint(tmp_path / "two" / LATEST).state["workers"] == 2
    Trainer(cfg.replace(steps=6), tmp_path / "two", resume=True, quiet=True).run()
    a, b = (load_checkpoint(tmp_path / d / LATEST).model.params for d in ("one", "two"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # another count continues, and says that it is no longer bit-identical
    workers(1)
    out = io.StringIO()
    Trainer(cfg.replace(steps=8), tmp_path / "two", resume=True, progress=False, stream=out).run()
    assert "trained with 2 worker thread(s) and continues with 1" in out.getvalue()
