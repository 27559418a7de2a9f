"""charrnn bench: speed side by side (its own options: charrnn bench --help)."""

from __future__ import annotations

import argparse

from ._common import command


@command("bench", "speed against PyTorch and Karpathy's min-char-rnn loop, side by side (needs: pip install 'charrnn[bench]')",
         outputs=("--json",))
def _bench(p: argparse.ArgumentParser):
    # The benchmark has its own options (charrnn bench --help); main() hands them over untouched.
    def run(a: argparse.Namespace) -> int:
        from ..bench import main as bench_main

        return bench_main(a.bench_args)

    return run
