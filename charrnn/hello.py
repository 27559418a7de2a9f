"""`charrnn hello`: the whole method on one word, printed as a lesson.

Vocabulary and mappings -> one-hot vectors -> the hidden state stepping through the word ->
training by backpropagation through time with plain SGD -> greedy autoregressive generation.
Everything runs through the same engine as real training (`CharRNN.loss_and_grads`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ConfigError
from .model import CharRNN


@dataclass
class HelloConfig:
    text: str = "hello"  # the word to learn
    hidden_size: int = 8  # H: a handful of units is plenty for one word
    steps: int = 300  # full-batch SGD steps over the word
    lr: float = 0.5  # plain SGD learning rate; the loss is a mean over 4 positions, hence large
    seed: int = 0  # seeds the initial weights: the same seed prints the same lesson
    report_every: int = 25  # print the loss every this many steps


def _fmt(v: np.ndarray) -> str:
    return "[" + " ".join(f"{x:+.4f}" for x in v) + "]"


def run_hello(cfg: HelloConfig = HelloConfig(), out: Callable[[str], None] = print) -> str:
    """Print the lesson for `cfg.text` and return the greedily generated text."""
    text = cfg.text
    if len(text) < 2:
        raise ConfigError("--text needs at least two characters: one to read and one to predict")
    chars = sorted(set(text))
    if len(chars) < 2:
        raise ConfigError("--text needs at least two different characters")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {cfg.lr}")
    char_to_idx = {c: i for i, c in enumerate(chars)}
    idx_to_char = {i: c for i, c in enumerate(chars)}
    V, H = len(chars), cfg.hidden_size
    # made before anything is printed: a size it refuses is the one line the lesson prints
    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=1, dtype="float64", seed=cfg.seed)

    out(f"1. The text is {text!r}. Its vocabulary, sorted: {chars}")
    out(f"   char_to_idx: {char_to_idx}")
    out(f"   idx_to_char: {idx_to_char}")
    out("")
    out("2. Each character becomes a one-hot vector of length V = %d:" % V)
    for c in chars:
        out(f"   {c!r}: {np.eye(V, dtype=int)[char_to_idx[c]]}")
    out("")

    out(f"3. The network: {model}")
    out("   a_t = W h_(t-1) + U x_t + b,   h_t = tanh(a_t),   o_t = V h_t + c,   p_t = softmax(o_t)")
    for name, p in model.params.items():
        out(f"   {name:<18} {str(p.shape):<8}")
    out("   (U = rnn.weight_ih_l0, W = rnn.weight_hh_l0, b = rnn.bias_ih_l0 + rnn.bias_hh_l0,")
    out("    V = head.weight, c = head.bias; U x_t is just column x_t of U.)")
    out("")

    out("   The hidden state at every step of the untrained network, starting from h_0 = 0.")
    out("   Repeated characters get different states: the state remembers what came before.")
    h = None
    for c in text:
        _, h = model.step(np.array([char_to_idx[c]]), h)
        out(f"   {c!r}  h = {_fmt(h[0, 0])}")
    out("")

    inputs = np.array([[char_to_idx[c] for c in text[:-1]]])  # (1, T)
    targets = np.array([[char_to_idx[c] for c in text[1:]]])  # the next character of each input
    out(f"4. Training. Inputs {text[:-1]!r} -> targets {text[1:]!r} (ids {inputs[0].tolist()} -> {targets[0].tolist()}).")
    out("   Each step: forward through the word, backpropagate through time, then plain SGD,")
    out(f"   param -= {cfg.lr} * grad. The loss is the mean -log p(next char) in nats;")
    out(f"   guessing uniformly would score log({V}) = {np.log(V):.4f}.")
    loss = float("nan")
    for step in range(cfg.steps):
        loss, grads, _ = model.loss_and_grads(inputs, targets)
        for name, p in model.params.items():
            p -= cfg.lr * grads[name]
        if step % cfg.report_every == 0 or step == cfg.steps - 1:
            out(f"   step {step:4d}  loss {loss:.4f}")
    out("")

    out(f"5. Generation: start from {text[0]!r}, feed each prediction back in as the next input")
    out("   (autoregressive), always taking the most likely character (greedy).")
    h = None
    current = char_to_idx[text[0]]
    result = text[0]
    for _ in range(len(text) - 1):
        logits, h = model.step(np.array([current]), h)
        p = np.exp(logits[0] - logits[0].max())
        p /= p.sum()
        current = int(np.argmax(p))
        result += idx_to_char[current]
        out(f"   after {result[-2]!r}: p = {_fmt(p)} -> {idx_to_char[current]!r}")
    out("")
    verdict = "learned" if result == text else "not learned exactly (try more --steps)"
    out(f"   generated: {result}   ({verdict})")
    return result
