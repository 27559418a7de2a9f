"""charrnn export: a model in another framework's format."""

from __future__ import annotations

import argparse
import sys

from ..settings import EXPORT_FORMATS
from ._common import command, load_for_inference


@command("export", "export a model for PyTorch (safetensors with nn.RNN / nn.Linear names) or Keras (.keras)",
         outputs=("OUT",))
def _export(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("out", metavar="OUT", help="OUT.safetensors (torch) or OUT.keras (keras, with OUT.vocab.json beside it)")
    p.add_argument("--format", default=EXPORT_FORMATS[0], choices=EXPORT_FORMATS)
    p.add_argument("--force", action="store_true", help="replace OUT if it is an existing regular file")

    def run(a: argparse.Namespace) -> int:
        from ..interop.export import export

        path = export(load_for_inference(a.run), a.out, a.format, force=a.force)
        print(f"wrote {path}", file=sys.stderr)
        return 0

    return run
