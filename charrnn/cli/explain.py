"""charrnn explain-update: one training step of a small tanh RNN, every number shown (the BasicRNNCell question)."""

from __future__ import annotations

import argparse

from ._common import command, positive_int


@command("explain-update", "how one training step updates a tanh RNN cell on characters, every number shown",
         outputs=())
def _explain(p: argparse.ArgumentParser):
    p.description = (
        "Run one training step of a small tanh RNN on a short text and show every weight's gradient, "
        "the one-hot effect on the input weights, the updates SGD and Adam make, the same numbers from "
        "PyTorch's nn.RNNCell and Keras's SimpleRNNCell when installed, and the gradient check of "
        "the BasicRNNCell question's mistaken NumPy backward (h_{t-1} for h_t, no chain through time) "
        "beside the correct one."
    )
    p.add_argument("--text", default="hello", help="the text (at most 200 characters; default 'hello')")
    p.add_argument("--hidden-size", type=positive_int, default=4)
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of the SGD and Adam steps shown")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    p.add_argument("--no-frameworks", action="store_true", help="leave PyTorch and Keras out")

    def run(a: argparse.Namespace) -> int:
        from ..errors import ConfigError
        from ..explain import explain_update, render

        if a.hidden_size > 16:
            raise ConfigError(f"--hidden-size must be at most 16 here (every number is printed), got {a.hidden_size}")
        ex = explain_update(a.text, a.hidden_size, a.lr, a.seed, frameworks=not a.no_frameworks)
        print(render(ex))
        return 0

    return run
