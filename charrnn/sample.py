"""Autoregressive generation: prime the state with text, then feed each chosen character back in.

Choosing the next character from the logits o:
    greedy            argmax o
    temperature tau   p = softmax(o / tau); tau < 1 sharpens toward greedy, tau > 1 flattens
    top-k             keep the k most likely characters, renormalise
    top-p (nucleus)   keep the fewest most likely characters whose probability reaches p
Draws use the Gumbel-max trick (see `choose`) and the generator passed in, so the same seed
gives the same text.

Several samples from one prime (`generate_many`) step their streams together, so that one matrix
product per layer serves them all, and share the streams out among the worker threads
(threads.py) as training does. Stream i draws from its own generator, the i-th that `rng.spawn`
gives, so each sample is the one that `generate` would draw with that generator: the same text
whether the streams run together, apart, or on any number of cores (up to the float rounding of
products over different numbers of streams, which can move a draw only at a near-tie). A few
streams are made one after another (core/tuning.py's MIN_STEPPED_TOGETHER).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import stopping, threads
from .data.text import Vocab
from .checks import counted
from .errors import ConfigError, DataError
from .core import tuning
from .model import CharRNN
from .model.parallel import min_shard_work, run_shards, stream_shards


MAX_LENGTH = 100_000_000  # generated ids are kept in memory until returned


@dataclass
class SampleConfig:
    length: int = 500  # characters to generate after the prime
    temperature: float = 1.0  # softmax temperature (> 0)
    top_k: int = 0  # keep only the k most likely characters (0 = all)
    top_p: float = 1.0  # keep the smallest set with this much probability (1 = all)
    greedy: bool = False  # always take the most likely character (ignores the three above)

    def validate(self) -> None:
        if not 0 <= self.length <= MAX_LENGTH:
            raise ConfigError(f"--length must be between 0 and {MAX_LENGTH:,}, got {self.length}")
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise ConfigError(f"--temperature must be a positive number, got {self.temperature} (use --greedy for argmax)")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")


def choose(logits: np.ndarray, cfg: SampleConfig, rng: np.random.Generator) -> int:
    """The next token id from one position's logits (V,).

    Draws with the Gumbel-max trick: argmax(o / tau + g) with g standard Gumbel noise is an exact
    draw from softmax(o / tau), and characters cut by top-k / top-p simply get -inf. One vector of
    noise per character from `rng`, so the same seed gives the same text.
    """
    if cfg.greedy:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / cfg.temperature
    if cfg.top_k and cfg.top_k < z.size:
        z[z < np.partition(z, -cfg.top_k)[-cfg.top_k]] = -np.inf
    if cfg.top_p < 1.0:
        p = np.exp(z - z.max())
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = np.searchsorted(cum, cfg.top_p * cum[-1]) + 1  # the fewest that reach top_p
        z[order[keep:]] = -np.inf
    return int(np.argmax(z + rng.gumbel(size=z.size)))


def choose_rows(logits: np.ndarray, cfg: SampleConfig, rngs: list[np.random.Generator]) -> np.ndarray:
    """`choose` for every row of (b, V) logits, row r drawing from rngs[r]: the same ids as
    calling `choose` row by row, with the arithmetic done for all rows at once."""
    if cfg.greedy:
        return np.argmax(logits, axis=1)
    z = logits.astype(np.float64) / cfg.temperature
    b, V = z.shape
    if cfg.top_k and cfg.top_k < V:
        z[z < np.partition(z, -cfg.top_k, axis=1)[:, -cfg.top_k, None]] = -np.inf
    if cfg.top_p < 1.0:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        order = np.argsort(-p, axis=1, kind="stable")
        cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
        keep = (cum < cfg.top_p * cum[:, -1:]).sum(axis=1) + 1  # searchsorted's count, per row
        cut = np.arange(V)[None, :] >= keep[:, None]  # in sorted order
        np.put_along_axis(z, order, np.where(cut, -np.inf, np.take_along_axis(z, order, axis=1)), axis=1)
    noise = np.stack([r.gumbel(size=V) for r in rngs])
    return np.argmax(z + noise, axis=1)


def _stop_at(stop: np.ndarray | None) -> np.ndarray | None:
    """The stop sequence as ids, checked; None for none."""
    if stop is None:
        return None
    stop = np.asarray(stop, dtype=np.intp).reshape(-1)
    if stop.size == 0:
        raise ConfigError("the stop string is empty")
    return stop


def check_count(n: int) -> None:
    """Refuse a number of samples that is not an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the number of samples must be an integer >= 1, got {n!r}")


def peak_memory(model: CharRNN, n: int, length: int, prime_length: int = 1) -> int:
    """Bytes that making `n` samples of `length` ids from a prime of `prime_length` holds at its
    peak, roughly: every sample's ids (kept until returned: the (n, length) array and the copies
    returned), and per stream its state and the gate buffers of each layer, the per-step arrays
    of choosing (logits, noise, sorting, in float64) and the prime's forward pass (its logits and
    one layer's gates per character)."""
    item = np.dtype(model.dtype).itemsize
    V, H, L = model.vocab_size, model.hidden_size, model.num_layers
    G = model.cell_module.GATES
    state = (len(model.cell_module.STATE) + G) * L * H * item
    choosing = 6 * V * 8
    prime = max(prime_length - 1, 0) * (V + (G + 1) * H) * item
    return n * (2 * length * np.dtype(np.intp).itemsize + state + choosing + prime)


def check_memory(model: CharRNN, n: int, length: int, prime_length: int = 1) -> None:
    """Refuse, before any work, samples whose estimated peak memory (`peak_memory`) exceeds the
    share of this machine's memory that training may take (train.lm's MEMORY_FRACTION): they
    would otherwise allocate until the system gives out, many seconds later."""
    from .train.lm import MEMORY_FRACTION, physical_memory  # the same limit as training's

    need = peak_memory(model, n, length, prime_length)
    have = physical_memory()
    if have and need > MEMORY_FRACTION * have:
        raise ConfigError(
            f"{counted(n, 'sample')} of {counted(length, 'character')} {'needs' if n == 1 else 'need'} about "
            f"{need / 2**30:,.1f} GiB, "
            f"more than this machine's {have / 2**30:,.1f} GiB allows: ask for fewer samples or shorter ones"
        )


def _check_prime(prime_ids: np.ndarray) -> np.ndarray:
    prime_ids = np.asarray(prime_ids, dtype=np.intp).reshape(-1)
    if prime_ids.size == 0:
        raise DataError("the prime is empty")
    return prime_ids


def encode_prime(vocab: Vocab, prime: str | bytes, skip_unknown: bool) -> tuple[np.ndarray, int]:
    """Prime text -> ids; unknown characters are an error naming them, or dropped and counted."""
    ids, n_unknown, _ = vocab.encode_counting(prime, unknown="skip" if skip_unknown else "error")
    return ids.astype(np.intp), n_unknown


def default_prime(vocab: Vocab, rng: np.random.Generator) -> np.ndarray:
    """A newline when the vocabulary has one (text tends to restart there), else a random symbol."""
    newline = ord("\n")
    hits = np.flatnonzero(vocab.code_points == newline)
    return np.array([hits[0] if hits.size else rng.integers(vocab.size)], dtype=np.intp)


def generate(
    model: CharRNN,
    prime_ids: np.ndarray,
    cfg: SampleConfig,
    rng: np.random.Generator,
    on_token: Callable[[int], None] | None = None,
    stop: np.ndarray | None = None,
) -> np.ndarray:
    """Feed `prime_ids` (K >= 1,) and generate up to `cfg.length` more ids, returned (n,).

    The prime runs through the network in one forward pass; then each step feeds the last
    character and chooses the next. `on_token` is called with every new id as it is chosen.

    `stop` (M >= 1,) ids: generation ends at the first occurrence of that sequence among the
    generated ids, which is left out of the result; `cfg.length` is then a cap. `on_token` hears
    of an id only once it cannot be part of the stop sequence (at most M - 1 ids later), so a
    stream shows exactly what is returned.
    """
    cfg.validate()
    prime_ids = _check_prime(prime_ids)
    stop = _stop_at(stop)
    m = 0 if stop is None else stop.size
    h = None
    if prime_ids.size > 1:
        _, h = model.logits(prime_ids[None, :-1])
    stepper = model.stepper(1, h)  # keeps its state and buffers between characters
    out = np.empty(cfg.length, dtype=np.intp)
    current = int(prime_ids[-1])
    emitted = 0  # ids handed to on_token so far
    n = cfg.length
    for i in range(cfg.length):
        stopping.check()
        current = choose(stepper(current)[0], cfg, rng)
        out[i] = current
        if m and i + 1 >= m and current == stop[-1] and np.array_equal(out[i + 1 - m : i + 1], stop):
            n = i + 1 - m
            break
        if on_token is not None:
            # ids before the last m - 1 can no longer start a match of the stop sequence
            while emitted <= i - (m - 1 if m else 0):
                on_token(int(out[emitted]))
                emitted += 1
    if on_token is not None:
        while emitted < n:
            on_token(int(out[emitted]))
            emitted += 1
    return out[:n]


def generate_many(
    model: CharRNN,
    prime_ids: np.ndarray,
    n: int,
    cfg: SampleConfig,
    rng: np.random.Generator,
    on_token: Callable[[int], None] | None = None,
    stop: np.ndarray | None = None,
) -> list[np.ndarray]:
    """`n` samples from the same prime, their streams stepped together and shared out among the
    worker threads (module docstring): sample i is `generate(model, prime_ids, cfg, rng.spawn(n)[i],
    stop=stop)`. `on_token` hears the first sample's ids as they are chosen (a terminal shows one
    sample as it grows while the others are made beside it)."""
    cfg.validate()
    prime_ids = _check_prime(prime_ids)
    stop = _stop_at(stop)
    check_count(n)
    rngs = rng.spawn(n)
    # the NumPy model's streams go to the worker threads; a torch model runs them as one batch
    # and each worker gets tuning.MIN_STEPPED_TOGETHER streams at least: streams generated one after
    # another in two threads queue for the GIL between their small steps
    workers = min(threads.workers(), n // tuning.MIN_STEPPED_TOGETHER)
    shards = (stream_shards(n, model.hidden_size, max(1, workers), min_shard_work(model.cell))
              if isinstance(model, CharRNN) else [slice(0, n)])

    def shard(sl: slice) -> list[np.ndarray]:
        return _streams(model, prime_ids, cfg, rngs[sl], stop, on_token if sl.start == 0 else None)

    return [ids for part in run_shards(shard, shards) for ids in part]


def _streams(model: CharRNN, prime_ids: np.ndarray, cfg: SampleConfig, rngs: list[np.random.Generator],
             stop: np.ndarray | None, on_token: Callable[[int], None] | None) -> list[np.ndarray]:
    """The samples of len(rngs) streams from the same prime (generate_many): stepped together, or
    below tuning.MIN_STEPPED_TOGETHER streams one after another, each exactly as `generate` makes it."""
    b = len(rngs)
    if b < tuning.MIN_STEPPED_TOGETHER:
        return [generate(model, prime_ids, cfg, r, on_token if i == 0 else None, stop) for i, r in enumerate(rngs)]
    h = None
    if prime_ids.size > 1:  # the prime once per stream: one forward pass for all of them
        _, h = model.logits(np.repeat(prime_ids[None, :-1], b, axis=0))
    stepper = model.stepper(b, h)
    out = np.empty((b, cfg.length), dtype=np.intp)
    ends = np.full(b, cfg.length)  # each stream's length: cut at its stop sequence when found
    m = 0 if stop is None else stop.size
    current = np.full(b, prime_ids[-1], dtype=np.intp)
    emitted = 0
    for i in range(cfg.length):
        stopping.check()  # in a worker thread, which a signal's exception never reaches
        current = choose_rows(stepper(current), cfg, rngs)
        out[:, i] = current
        if m and i + 1 >= m:
            for r in np.flatnonzero((current == stop[-1]) & (ends == cfg.length)):
                if np.array_equal(out[r, i + 1 - m : i + 1], stop):
                    ends[r] = i + 1 - m
            if (ends < cfg.length).all():
                break
        if on_token is not None:
            while emitted <= min(i - (m - 1 if m else 0), ends[0] - 1):
                on_token(int(out[0, emitted]))
                emitted += 1
    if on_token is not None:
        while emitted < ends[0]:
            on_token(int(out[0, emitted]))
            emitted += 1
    return [out[r, : ends[r]].copy() for r in range(b)]
