"""charrnn gradcheck: the analytic gradients of any cell against finite differences."""

from __future__ import annotations

import argparse

from ..settings import cell_names
from ..errors import CharRNNError
from ._common import command, dropout_probability, positive_int, seed_int


@command("gradcheck", "prove the BPTT gradients against finite differences", outputs=())
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
    p.add_argument("--cell", choices=cell_names(), default="rnn", help="the recurrent cell to check")
    p.add_argument("--dropout", type=dropout_probability, default=0.0,
                   help="check with dropout on (the same masks for every evaluation)")
    p.add_argument("--max-per-param", type=positive_int, default=None, help="check a random subset of elements")
    p.add_argument("--seed", type=seed_int, default=0)

    def run(a: argparse.Namespace) -> int:
        from ..gradcheck import TOLERANCE, gradcheck, random_problem

        if a.vocab_size < 2:
            raise CharRNNError("--vocab-size must be at least 2")
        model, x, y, h0 = random_problem(a.vocab_size, a.hidden_size, a.num_layers, a.batch_size, a.seq_len, a.seed,
                                         cell=a.cell, dropout=a.dropout)
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
