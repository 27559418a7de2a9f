"""charrnn hello: the hello walkthrough (a network learns the word "hello") on one word."""

from __future__ import annotations

import argparse

from ._common import command, positive_int, seed_int


@command("hello", "the hello walkthrough: a network learns one word, printed as a lesson", outputs=())
def _hello(p: argparse.ArgumentParser):
    from ..hello import HelloConfig

    d = HelloConfig()
    p.description = "The hello walkthrough, the classic first example of a character-level RNN, on one word: one-hot vectors, BPTT, SGD, greedy generation."
    p.add_argument("--text", default=d.text, help=f"the word to learn (default {d.text!r})")
    p.add_argument("--hidden-size", type=positive_int, default=d.hidden_size)
    p.add_argument("--steps", type=positive_int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=seed_int, default=d.seed)

    def run(a: argparse.Namespace) -> int:
        from ..hello import run_hello

        cfg = HelloConfig(text=a.text, hidden_size=a.hidden_size, steps=a.steps, lr=a.lr, seed=a.seed)
        return 0 if run_hello(cfg) == a.text else 1

    return run
