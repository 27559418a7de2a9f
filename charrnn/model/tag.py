"""Many-to-many: one tag per character, optionally with seed 002's output-to-hidden recurrence R.

    a_t = W h_{t-1} + U x_t + R y_{t-1} + b      (first layer; every gate of an LSTM / GRU)
    o_t = V h_t + c,    p_t = softmax(o_t)
    loss = mean over the real characters of the batch of -log p_t[y_t]

Without R (feedback off) the tags are independent given the text, as in the seed's first
network; with it, y_{t-1} is the one-hot previous tag (zeros before the first character):
in training the true one (teacher forcing), at inference the model's own previous choice, kept
as the best K hypotheses by beam search (`decode(beam=K)`; K = 1 is greedy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import DType, Range, checked
from ..errors import ConfigError
from .params import FEEDBACK_WEIGHT, HEAD_BIAS, HEAD_WEIGHT, input_index, input_weight
from .stack import StackCache, layer_params
from .task import TaskModel, check_ids, log_softmax, pad_batch


@dataclass
class TagCache:
    mask: np.ndarray  # (T, B) True at real positions
    top: np.ndarray  # (T, B, H)
    dlogits: np.ndarray  # (T, B, K), zero at padding
    stack: StackCache | None
    params: dict


class CharTagger(TaskModel):
    """model = CharTagger(vocab_size=V, num_tags=K, hidden_size=H, cell=..., feedback=True)
    loss, grads = model.loss_and_grads(inputs, targets)      # targets: one tag id per character
    tags = model.decode(inputs, beam=1)                       # a list of (len_b,) arrays

    inputs / targets: lists of integer sequences (target b as long as input b), or (B, T)
    arrays with `lengths`."""

    task = "tag"

    @checked(vocab_size=Range(1), num_tags=Range(2), hidden_size=Range(1), num_layers=Range(1), seed=Range(0),
             dropout=Range(0, 1, high_open=True))
    def __init__(self, vocab_size: int, num_tags: int, hidden_size: int = 128, num_layers: int = 1,
                 dtype: DType = "float32", seed: int | None = 0, init: str = "pytorch", *, cell: str = "rnn",
                 dropout: float = 0.0, feedback: bool = False, residual: bool = False, layer_norm: bool = False,
                 params: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(vocab_size, num_tags, hidden_size, num_layers, dtype, seed, init, cell=cell,
                         dropout=dropout, feedback=feedback, residual=residual, layer_norm=layer_norm, params=params)

    def _prepare_pair(self, inputs: Any, targets: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, lens = self._prepare(inputs, lengths)
        y, ylens = pad_batch(targets, lengths, "targets")
        if y.shape[0] != x.shape[0] or not np.array_equal(ylens, lens) or y.shape[1] < x.shape[1]:
            raise ConfigError("targets must hold one tag per character of each input")
        y = y[:, : x.shape[1]]
        check_ids(y, lens, self.num_outputs, "targets")
        return x, y, lens

    def _previous(self, y: np.ndarray) -> np.ndarray:
        """Teacher forcing: the true previous tag of every position, -1 (none) at t = 0."""
        prev = np.full_like(y, -1)
        prev[:, 1:] = y[:, :-1]
        return prev

    @checked()
    def forward(self, inputs: Any, targets: Any, lengths: Any = None, train: bool = True) -> tuple[float, TagCache]:
        """The mean loss over the batch's real characters and the cache for `backward`."""
        x, y, lens = self._prepare_pair(inputs, targets, lengths)
        B, T = x.shape
        top, stack, params = self._layers_forward(x, self._previous(y) if self.feedback else None, train)
        logits = self._head(top.reshape(T * B, -1)).reshape(T, B, -1)
        mask = np.arange(T)[:, None] < lens[None, :]  # (T, B)
        logp = log_softmax(logits.astype(np.float64))
        yt = y.T  # (T, B)
        n = int(mask.sum())
        picked = np.take_along_axis(logp, yt[..., None], axis=2)[..., 0]
        loss = float(-picked[mask].sum() / n)
        d = np.exp(logp)
        np.put_along_axis(d, yt[..., None], np.take_along_axis(d, yt[..., None], axis=2) - 1.0, axis=2)
        d *= (mask / n)[..., None]
        return loss, TagCache(mask, top, d.astype(self.dtype), stack, params)

    @checked()
    def backward(self, cache: TagCache) -> dict[str, np.ndarray]:
        if cache.stack is None:
            raise RuntimeError("this forward cache has already been used by backward(); run forward again")
        stack, cache.stack = cache.stack, None
        grads = self.zero_grads()
        T, B, H = cache.top.shape
        d = cache.dlogits.reshape(T * B, -1)
        grads[HEAD_WEIGHT] += d.T @ cache.top.reshape(T * B, H)
        grads[HEAD_BIAS] += d.sum(axis=0)
        dtop = (d @ self.params[HEAD_WEIGHT]).reshape(T, B, H)
        self._layers_backward(cache.params, stack, dtop, grads)
        return grads

    @checked()
    def loss_and_grads(self, inputs: Any, targets: Any, lengths: Any = None) -> tuple[float, dict[str, np.ndarray]]:
        """(loss, grads): mean nats per real character (teacher-forced with feedback), dL/dparam."""
        loss, cache = self.forward(inputs, targets, lengths)
        return loss, self.backward(cache)

    @checked()
    def logits(self, inputs: Any, lengths: Any = None, previous: Any = None) -> np.ndarray:
        """Forward only, dropout off: logits (B, T, K) of the padded batch. With feedback,
        `previous` gives the tags fed back (teacher forcing: the true tags of the same texts)."""
        prev = None
        if self.feedback:
            if previous is None:
                raise ConfigError("a tagger with feedback needs the previous tags (or use decode)")
            x, y, lens = self._prepare_pair(inputs, previous, lengths)
            prev = self._previous(y)
        else:
            x, lens = self._prepare(inputs, lengths)
        top, _, _ = self._layers_forward(x, prev, train=False, need_cache=False)
        T, B, H = top.shape
        return self._head(top.reshape(T * B, H)).reshape(T, B, -1).transpose(1, 0, 2)

    # -- inference on the model's own previous tags -------------------------------------------------

    @checked(beam=Range(1))
    def decode(self, inputs: Any, lengths: Any = None, beam: int = 1) -> list[np.ndarray]:
        """The most probable tag sequence of each text: exact argmax per character without
        feedback; with it, beam search over the fed-back tags keeping `beam` hypotheses per text
        (1: greedy). Returns one (len_b,) array of tag ids per text."""
        x, lens = self._prepare(inputs, lengths)
        if not self.feedback:
            best = self.logits(x, lens).argmax(axis=2)
            return [best[b, : lens[b]].copy() for b in range(len(lens))]
        return self._beam_search(x, lens, int(beam))

    def _beam_search(self, x: np.ndarray, lens: np.ndarray, width: int) -> list[np.ndarray]:
        """All texts at once: beam j of text b is row b * width + j of the stepped batch."""
        B, T = x.shape
        V, K, L = self.vocab_size, self.num_outputs, self.num_layers
        N = B * width
        p = self.params
        u_r = np.concatenate([p[input_weight(self.cell, 0)], p[FEEDBACK_WEIGHT]], axis=1)  # [U R]
        first = list(layer_params(self.cell_module, p, 0))
        first[input_index(self.cell)] = u_r
        step = self.cell_module.step
        state = [tuple(part[k] for part in self._zero_state(N)) for k in range(L)]
        score = np.full((B, width), -np.inf)
        score[:, 0] = 0.0  # one hypothesis to start from; the others join as it branches
        prev = np.full(N, -1, dtype=np.intp)
        back = np.zeros((T, B, width), dtype=np.intp)  # the beam each hypothesis came from
        tags = np.zeros((T, B, width), dtype=np.intp)  # the tag it chose
        final = np.zeros((B, width))
        rows = np.arange(N)
        for t in range(T):
            inp = np.zeros((N, V + K), dtype=self.dtype)
            inp[rows, np.repeat(x[:, t], width)] = 1.0
            has = prev >= 0
            inp[rows[has], V + prev[has]] = 1.0
            h = inp
            for k in range(L):
                w = tuple(first) if k == 0 else layer_params(self.cell_module, p, k)
                u, _ = self.stack.norm_in(p, k, h)
                state[k] = step(u, w, state[k])
                h = self.stack.join(k, h, state[k][0])
            h, _ = self.stack.norm_top(p, h)
            logp = log_softmax(self._head(h).astype(np.float64)).reshape(B, width, K)
            cand = (score[:, :, None] + logp).reshape(B, width * K)
            order = np.argsort(-cand, axis=1, kind="stable")[:, :width]  # (B, width)
            score = np.take_along_axis(cand, order, axis=1)
            back[t], tags[t] = order // K, order % K
            done = lens - 1 == t
            final[done] = score[done]
            # reorder the states (and the fed-back tags) to follow the surviving hypotheses
            src = (np.arange(B)[:, None] * width + back[t]).reshape(-1)
            state = [tuple(part[src] for part in s) for s in state]
            prev = tags[t].reshape(-1)
        out = []
        for b in range(B):
            j = int(np.argmax(final[b]))
            seq = np.empty(lens[b], dtype=np.intp)
            for t in range(lens[b] - 1, -1, -1):
                seq[t] = tags[t, b, j]
                j = back[t, b, j]
            out.append(seq)
        return out
