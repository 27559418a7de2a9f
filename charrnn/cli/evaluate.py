"""charrnn eval: nats and bits per character of a text."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..errors import DataError
from ._common import add_backend_flags, apply_threads, command, inference_model, load_for_inference


# Each eval encodes its text into a folder of the system's temporary directory named with its pid,
# so that one left by a killed process can be told from one in use.
EVAL_TMP_PREFIX = "charrnn-eval-"


def remove_stale_temporaries() -> None:
    """Remove the folders of evals killed before they could (their pid no longer runs here)."""
    import re
    import shutil
    import tempfile

    from ..rundir import pid_alive

    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        m = re.fullmatch(re.escape(EVAL_TMP_PREFIX) + r"(\d+)-\w+", entry.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


@command("eval", "score a text: nats and bits per character, perplexity")
def _eval(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("text", metavar="TEXT_FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=int, default=0)
    add_backend_flags(p)

    def run(a: argparse.Namespace) -> int:
        import json
        import tempfile

        from ..data import encode_file
        from ..evaluate import evaluate_ids

        c = load_for_inference(a.run)
        model = inference_model(c.model, a.backend, a.device)
        apply_threads(a.threads)
        remove_stale_temporaries()
        with tempfile.TemporaryDirectory(prefix=f"{EVAL_TMP_PREFIX}{os.getpid()}-") as tmp:
            enc = encode_file(a.text, Path(tmp) / "ids.bin", vocab=c.vocab, unknown="skip")
            result = evaluate_ids(model, enc.ids, streams=1)
            del enc.ids  # release the memory map before the directory goes
        if result.chars == 0:
            raise DataError(f"{a.text}: fewer than 2 characters the model knows: there is nothing to score")
        unknown = sorted(enc.unknown_symbols, key=str)[:20]
        if a.json:
            def finite(x: float) -> float | None:  # strict JSON has no Infinity: null says "too large"
                return x if math.isfinite(x) else None

            print(json.dumps({
                "nats_per_char": finite(result.nats_per_char), "bits_per_char": finite(result.bits_per_char),
                "perplexity": finite(result.perplexity), "chars": result.chars,
                "unknown_chars": enc.n_unknown, "unknown_symbols": unknown,
            }, allow_nan=False))
        else:
            print(f"{result.nats_per_char:.4f} nats/char   {result.bits_per_char:.4f} bits/char   "
                  f"perplexity {result.perplexity:.3f}   {result.chars:,} characters scored")
        if enc.n_unknown:
            print(f"charrnn eval: {enc.n_unknown:,} character(s) outside the vocabulary were not scored: "
                  f"{', '.join(repr(u) for u in unknown)}", file=sys.stderr)
        return 0

    return run
