"""charrnn export: a model in another framework's format."""

from __future__ import annotations

import argparse
import sys

from ..settings import EXPORT_FORMATS
from ._common import command, load_for_inference, tell


@command("export", "export a model for PyTorch (safetensors with nn.RNN / nn.Linear names), Keras (.keras) or "
         "ONNX Runtime (.onnx)", outputs=("OUT",), reads={"RUN": "model"})
def _export(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory, checkpoint file or shipped model (charrnn models)")
    p.add_argument("out", metavar="OUT", help="OUT.safetensors (torch), OUT.keras (keras, with OUT.vocab.json beside it) or OUT.onnx (onnx)")
    p.add_argument("--format", default=EXPORT_FORMATS[0], choices=EXPORT_FORMATS)
    p.add_argument("--force", action="store_true", help="replace OUT if it is an existing regular file")

    def run(a: argparse.Namespace) -> int:
        from ..interop.export import export
        from ..interop.onnx import DTYPE as ONNX_DTYPE

        c = load_for_inference(a.run)
        path = export(c, a.out, a.format, force=a.force)
        if a.format == "onnx" and c.model.dtype != ONNX_DTYPE:
            tell(f"charrnn export: the model is {c.model.dtype.name}; the ONNX model holds and computes in "
                 f"{ONNX_DTYPE.name}")
        print(f"wrote {path}", file=sys.stderr)
        return 0

    return run
