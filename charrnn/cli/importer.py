"""charrnn import: a model from another framework (Keras 3) as a run directory."""

from __future__ import annotations

import argparse
import sys

from ._common import command, needs_run


@command("import", "bring a Keras model (SimpleRNN / LSTM / GRU + Dense over one-hot input) in as a run directory",
         outputs=(), run_dirs=("--out",), reads={"--out --force": "run"})
def _import(p: argparse.ArgumentParser):
    p.add_argument("model", metavar="MODEL.keras", help="a Keras 3 model file")
    p.add_argument("--vocab", metavar="FILE", required=True,
                   help="JSON list of the symbols of the one-hot input, in order (as `charrnn export --format keras` writes)")
    p.add_argument("--out", metavar="RUN_DIR", required=True, help="run directory to write")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")

    def run(a: argparse.Namespace) -> int:
        from ..interop.keras import load_keras, save_imported

        if a.force:
            needs_run(a.out, "import --force replaces a run of your own")
        model, vocab = load_keras(a.model, a.vocab)
        path = save_imported(model, vocab, a.out, a.force)
        print(f"wrote {path}: {model!r}, {vocab.size} symbols. Sample with: charrnn sample {a.out}", file=sys.stderr)
        return 0

    return run
