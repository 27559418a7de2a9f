"""Choosing characters: greedy, temperature, top-k, top-p, and generation against `model.step`."""

import numpy as np
import pytest

from charrnn import CharRNN
from charrnn.errors import ConfigError
from charrnn.sample import SampleConfig, choose, generate

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
