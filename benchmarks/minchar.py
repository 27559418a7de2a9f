"""A batch-1 character RNN written the way the seed min-char-rnn writes it: the benchmark baseline.

One training step over a window of `seq_length` characters, exactly in the seed's style:
per-step column vectors kept in dicts keyed by time, the input as a dense one-hot column
multiplied by W_xh, the backward pass walking the same dicts in reverse, every gradient clipped
to [-5, 5] element by element, then Adagrad with lr 0.1. Nothing is vectorised over time.

This is a fresh implementation for `charrnn bench`, not the seed's code; it keeps the seed's
algorithm and data layout because the benchmark measures that layout's cost. The benchmark runs
this file as its own process (`python benchmarks/minchar.py SPEC`, see charrnn/bench/protocol.py). The
weights use charrnn's names in the seed's roles: Wxh = rnn.weight_ih_l0, Whh = rnn.weight_hh_l0,
bh = rnn.bias_ih_l0 + rnn.bias_hh_l0, Why = head.weight, by = head.bias (as columns).
"""

from __future__ import annotations

import numpy as np


class MinCharRNN:
    """Parameters and Adagrad memory of the seed's network, in the seed's column layout."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 0.1) -> None:
        dtype = params["rnn.weight_hh_l0"].dtype
        self.Wxh = params["rnn.weight_ih_l0"].copy()  # (H, V)
        self.Whh = params["rnn.weight_hh_l0"].copy()  # (H, H)
        self.Why = params["head.weight"].copy()  # (V, H)
        self.bh = (params["rnn.bias_ih_l0"] + params["rnn.bias_hh_l0"]).reshape(-1, 1)
        self.by = params["head.bias"].reshape(-1, 1).copy()
        self.vocab_size = self.Why.shape[0]
        self.lr = lr
        self.dtype = dtype
        self.mem = [np.zeros_like(p) for p in self.weights()]

    def weights(self) -> list[np.ndarray]:
        return [self.Wxh, self.Whh, self.Why, self.bh, self.by]

    def loss_fun(self, inputs: list[int], targets: list[int], hprev: np.ndarray):
        """Loss (summed over the window, nats), gradients and the last hidden state."""
        Wxh, Whh, Why, bh, by = self.weights()
        xs, hs, ys, ps = {}, {}, {}, {}
        hs[-1] = np.copy(hprev)
        loss = 0.0
        for t in range(len(inputs)):
            xs[t] = np.zeros((self.vocab_size, 1), dtype=self.dtype)  # one-hot column
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
            ys[t] = np.dot(Why, hs[t]) + by
            ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))  # as the seed: no max shift
            loss += -np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
        dbh, dby = np.zeros_like(bh), np.zeros_like(by)
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1  # softmax + cross-entropy: p - onehot(y)
            dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(Why.T, dy) + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(Whh.T, dhraw)
        for dparam in (dWxh, dWhh, dWhy, dbh, dby):
            np.clip(dparam, -5, 5, out=dparam)
        return loss, [dWxh, dWhh, dWhy, dbh, dby], hs[len(inputs) - 1]

    def train_step(self, inputs: list[int], targets: list[int], hprev: np.ndarray):
        """One window: loss_fun, then the seed's Adagrad update. Returns (loss, new hprev)."""
        loss, grads, hprev = self.loss_fun(inputs, targets, hprev)
        for param, dparam, mem in zip(self.weights(), grads, self.mem):
            mem += dparam * dparam
            param += -self.lr * dparam / np.sqrt(mem + 1e-8)
        return loss, hprev


class Job:
    """The benchmark's side: one seed-style training step per call on a fresh window."""

    def __init__(self, spec: dict) -> None:
        from safetensors.numpy import load_file

        from charrnn.bench.sides import Windows

        self.spec, self.windows = spec, Windows
        self.net = MinCharRNN(load_file(spec["params"]), lr=0.1)
        H = self.net.Whh.shape[0]
        self.h = np.zeros((H, 1), dtype=self.net.dtype)
        self.data = Windows(1, spec["T"], spec["calls"], spec["data_seed"])
        self.chars = spec["T"]

    def check(self) -> float:
        x, y = self.windows(1, self.spec["T"], 1, self.spec["data_seed"])()
        return float(self.net.loss_fun(x[0].tolist(), y[0].tolist(), self.h)[0]) / self.spec["T"]

    def __call__(self) -> None:
        x, y = self.data()
        self.net.train_step(x[0].tolist(), y[0].tolist(), self.h)


if __name__ == "__main__":
    from charrnn.bench.protocol import serve

    serve(Job)
