"""Choosing characters: greedy, temperature, top-k, top-p, and generation against `model.step`."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.errors import ConfigError
from charrnn import threads
from charrnn.sample import SampleConfig, choose, choose_rows, generate, generate_many

LOGITS = np.log(np.array([0.05, 0.4, 0.1, 0.3, 0.15]))


def draws(cfg, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return np.bincount([choose(LOGITS, cfg, rng) for _ in range(n)], minlength=5) / n


def test_sampling_follows_the_softmax():
    freq = draws(SampleConfig())
    assert np.allclose(freq, np.exp(LOGITS), atol=0.03)


def test_greedy_and_low_temperature_take_the_most_likely():
    assert choose(LOGITS, SampleConfig(greedy=True), np.random.default_rng(0)) == 1
    assert draws(SampleConfig(temperature=0.05))[1] > 0.99
    flat = draws(SampleConfig(temperature=100.0))
    assert np.allclose(flat, 0.2, atol=0.03)  # a high temperature flattens toward uniform


def test_top_k_and_top_p_keep_only_the_likeliest():
    k2 = draws(SampleConfig(top_k=2))
    assert set(np.flatnonzero(k2)) == {1, 3}
    assert np.isclose(k2[1], 0.4 / 0.7, atol=0.03)
    p = draws(SampleConfig(top_p=0.75))  # 0.4 + 0.3 = 0.7 < 0.75, so 0.15 joins
    assert set(np.flatnonzero(p)) == {1, 3, 4}
    assert set(np.flatnonzero(draws(SampleConfig(top_p=0.3)))) == {1}


@pytest.mark.parametrize("bad", [dict(temperature=0), dict(temperature=-1), dict(top_k=-1), dict(top_p=0),
                                 dict(top_p=1.5), dict(length=-1), dict(temperature=float("nan"))])
def test_bad_settings(bad):
    with pytest.raises(ConfigError):
        SampleConfig(**bad).validate()


@pytest.mark.parametrize("layers", [1, 2])
def test_generate_equals_a_loop_over_model_step(layers):
    model = CharRNN(7, 12, layers, seed=3)
    prime = np.array([1, 4, 2, 6])
    cfg = SampleConfig(length=60, temperature=0.9, top_k=5)
    got = generate(model, prime, cfg, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    _, h = model.logits(prime[None, :-1])
    current, want = prime[-1], []
    for _ in range(60):
        logits, h = model.step(np.array([current]), h)
        current = choose(logits[0], cfg, rng)
        want.append(current)
    assert got.tolist() == want
    again = generate(model, prime, cfg, np.random.default_rng(11))
    other = generate(model, prime, cfg, np.random.default_rng(12))
    assert np.array_equal(got, again) and not np.array_equal(got, other)


@pytest.mark.parametrize("cfg", [SampleConfig(), SampleConfig(greedy=True), SampleConfig(temperature=0.7, top_k=3),
                                 SampleConfig(top_p=0.6), SampleConfig(temperature=1.3, top_k=6, top_p=0.8)])
def test_choosing_for_many_rows_is_choosing_row_by_row(cfg):
    logits = np.random.default_rng(4).standard_normal((9, 11)) * 3
    logits[2, :4] = logits[2, 4]  # ties: top-k and top-p keep or cut them as the one-row rule does
    for seed in range(20):
        want = [choose(row, cfg, r) for row, r in zip(logits, np.random.default_rng(seed).spawn(9))]
        got = choose_rows(logits, cfg, np.random.default_rng(seed).spawn(9))
        assert got.tolist() == want


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("workers, together", [(1, 1), (3, 1), (3, 3), (3, 100)])
def test_many_samples_are_each_what_generate_draws_with_its_own_generator(cell, workers, together, monkeypatch):
    """Stream i of generate_many is generate() with the i-th spawned generator, whatever the number
    of streams stepped together and of threads sharing them (all 7 in one; 3, 2 and 2 in three;
    4 and 3 in two; one after another) (float64: no near-ties)."""
    from charrnn.core import tuning

    monkeypatch.setattr(tuning, "MIN_SHARD_WORK", 1)  # small enough to be split
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK_COMPILED", 1)
    monkeypatch.setattr(tuning, "MIN_STEPPED_TOGETHER", together)
    monkeypatch.setattr(threads, "workers", lambda: workers)
    model = CharRNN(9, 16, 2, dtype="float64", seed=5, cell=cell)
    prime = np.array([1, 4, 2, 6, 0])
    cfg = SampleConfig(length=80, temperature=0.9, top_p=0.95)
    stop = np.array([2, 2])
    heard = []
    got = generate_many(model, prime, 7, cfg, np.random.default_rng(21), on_token=heard.append, stop=stop)
    own = np.random.default_rng(21).spawn(7)
    want = [generate(model, prime, cfg, own[i], stop=stop) for i in range(7)]
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
    assert heard == want[0].tolist()  # the first sample streamed, the stop sequence left out
    # the first sample stops early (so its stream is cut) while others run on past it
    assert len(want[0]) < 80 and max(len(w) for w in want) > len(want[0])
    assert len({tuple(w.tolist()) for w in want}) == 7  # the streams draw apart


def test_many_samples_refuse_bad_counts_and_stops():
    model = CharRNN(5, 4, 1, seed=0)
    for bad in (0, -2, True, 2.0):
        with pytest.raises(ConfigError, match="number of samples"):
            generate_many(model, np.array([1]), bad, SampleConfig(length=3), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="stop string is empty"):
        generate_many(model, np.array([1]), 2, SampleConfig(length=3), np.random.default_rng(0), stop=np.array([]))


def test_a_stop_request_ends_every_worker_thread_at_its_next_step(monkeypatch):
    """The exception of a signal reaches the main thread only; the streams in the worker threads
    stop at their next step because every long loop checks charrnn.stopping's flag."""
    import threading

    import charrnn.sample as sample
    from charrnn.core import tuning
    from charrnn import stopping

    monkeypatch.setattr(tuning, "MIN_SHARD_WORK", 1)
    monkeypatch.setattr(tuning, "MIN_SHARD_WORK_COMPILED", 1)
    monkeypatch.setattr(threads, "workers", lambda: 2)
    steps: dict[str, int] = {}
    real = sample.choose_rows

    worker_stepped = threading.Event()

    def counting(logits, cfg, rngs):
        name = threading.current_thread().name
        steps[name] = steps.get(name, 0) + 1
        if name != threading.main_thread().name:
            worker_stepped.set()
        elif steps[name] == 5:
            worker_stepped.wait(60)  # on a loaded machine the worker may not have started yet
            stopping.request(15)  # what the command line's handler does on SIGTERM
        return real(logits, cfg, rngs)

    monkeypatch.setattr(sample, "choose_rows", counting)
    model = CharRNN(5, 8, 1, seed=0)
    try:
        with pytest.raises(stopping.Stopped) as e:
            generate_many(model, np.array([1]), 16, SampleConfig(length=100_000), np.random.default_rng(0))
    finally:
        stopping.clear()
    assert e.value.signum == 15
    assert len(steps) == 2 and max(steps.values()) < 1000, steps  # both threads, stopped long before the end
    # and a single sample, made in the caller's thread, checks it too
    stopping.request(2)
    try:
        with pytest.raises(stopping.Stopped):
            generate(model, np.array([1]), SampleConfig(length=100_000), np.random.default_rng(0))
    finally:
        stopping.clear()


def test_samples_too_large_for_memory_are_refused_before_any_work(monkeypatch):
    import charrnn.train.lm as setup
    from charrnn.sample import check_memory, peak_memory

    model = CharRNN(5, 8, 2, seed=0, cell="lstm")
    one = peak_memory(model, 1, 1000)
    # every sample's ids (kept until returned), then the streams' state and a long prime's pass
    assert peak_memory(model, 10, 1000) == 10 * one
    assert peak_memory(model, 1, 2000) - one == 2 * 1000 * np.dtype(np.intp).itemsize
    assert peak_memory(model, 1, 1000, prime_length=101) > one
    monkeypatch.setattr(setup, "physical_memory", lambda: 2**30)
    check_memory(model, 10, 1000)
    with pytest.raises(ConfigError, match=r"^1,000,000 samples of 100,000,000 characters need about 1,490,1\d\d\.\d GiB, "
                                          r"more than this machine's 1\.0 GiB allows"):
        check_memory(model, 1_000_000, 100_000_000)
    with pytest.raises(ConfigError, match="^1 sample of 100,000,000 characters needs about"):
        check_memory(model, 1, 100_000_000)
    monkeypatch.setattr(setup, "physical_memory", lambda: None)  # unknown: nothing to judge by
    check_memory(model, 1_000_000, 100_000_000)
