"""The `charrnn` command line: a thin shell over the Python API.

Every user error is one line on stderr and exit status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import CharRNNError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Handler]]] = {}


def command(name: str, summary: str):
    """Register a function that adds a subcommand's flags and returns its handler."""

    def register(fn):
        COMMANDS[name] = (summary, fn)
        return fn

    return register


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) and exit 2 like our own errors."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ----------------------------------------------------------------------------------------------


@command("hello", "the seed's walkthrough on one word, as a lesson")
def _hello(p: argparse.ArgumentParser):
    from .hello import HelloConfig

    d = HelloConfig()
    p.description = "The seed's walkthrough on one word: one-hot vectors, BPTT, SGD, greedy generation."
    p.add_argument("--text", default=d.text, help=f"the word to learn (default {d.text!r})")
    p.add_argument("--hidden-size", type=positive_int, default=d.hidden_size)
    p.add_argument("--steps", type=positive_int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)

    def run(a: argparse.Namespace) -> int:
        from .hello import run_hello

        cfg = HelloConfig(text=a.text, hidden_size=a.hidden_size, steps=a.steps, lr=a.lr, seed=a.seed)
        return 0 if run_hello(cfg) == a.text else 1

    return run


@command("gradcheck", "prove the BPTT gradients against finite differences")
def _gradcheck(p: argparse.ArgumentParser):
    p.description = (
        "Check the analytic BPTT gradients of a random float64 model against finite differences "
        "and print the largest relative error of every parameter and of h0."
    )
    p.add_argument("--vocab-size", type=positive_int, default=5)
    p.add_argument("--hidden-size", type=positive_int, default=4)
    p.add_argument("--num-layers", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=3)
    p.add_argument("--seq-len", type=positive_int, default=6)
    p.add_argument("--max-per-param", type=positive_int, default=None, help="check a random subset of elements")
    p.add_argument("--seed", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        from .gradcheck import TOLERANCE, gradcheck, random_problem

        if a.vocab_size < 2:
            raise CharRNNError("--vocab-size must be at least 2")
        model, x, y, h0 = random_problem(a.vocab_size, a.hidden_size, a.num_layers, a.batch_size, a.seq_len, a.seed)
        print(f"{model}, B={a.batch_size}, T={a.seq_len}, float64, 4th-order central differences")
        print(f"{'array':<20} {'checked':>9} {'max rel err':>12} {'max abs err':>12}")
        results = gradcheck(model, x, y, h0, max_per_param=a.max_per_param)
        for r in results:
            flag = "" if r.ok else "   <-- FAIL"
            print(f"{r.name:<20} {r.checked:>4}/{r.size:<4} {r.max_rel_error:>12.2e} {r.max_abs_error:>12.2e}{flag}")
        ok = all(r.ok for r in results)
        print(f"{'PASS' if ok else 'FAIL'}: every relative error {'<=' if ok else 'should be <='} {TOLERANCE:g}")
        return 0 if ok else 1

    return run


# ----------------------------------------------------------------------------------------------


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = _Parser(prog="charrnn", description="Character-level recurrent language models.")
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers = {}
    for name, (summary, add) in COMMANDS.items():
        sp = sub.add_parser(name, help=summary, description=summary)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        handlers[name] = add(sp)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except CharRNNError as e:
        if args.debug:
            raise
        print(f"charrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `charrnn sample ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
