"""charrnn eval: nats and bits per character of a text."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..checks import counted
from ..errors import DataError
from ._common import add_backend_flags, apply_threads, command, inference_model, load_for_inference, positive_int


# Each eval encodes its text into a folder of the system's temporary directory named with its pid,
# so that one left by a killed process can be told from one in use.
EVAL_TMP_PREFIX = "charrnn-eval-"


def remove_stale_temporaries() -> None:
    """Remove the folders of evals killed before they could (their pid no longer runs here)."""
    import re
    import shutil
    import tempfile

    from ..io.lock import pid_alive

    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        m = re.fullmatch(re.escape(EVAL_TMP_PREFIX) + r"(\d+)-\w+", entry.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


@command("eval", "score a text: nats and bits per character, perplexity", outputs=(), reads={"RUN": "model"})
def _eval(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory, checkpoint file or shipped model (charrnn models)")
    p.add_argument("text", metavar="TEXT_FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=int, default=0, help="cores to use (default: every usable core, or CHARRNN_THREADS)")
    p.add_argument("--streams", type=positive_int, default=None,
                   help="score the text as this many streams (default: up to 64; 1 = one state through the whole text)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_flags(p)

    def run(a: argparse.Namespace) -> int:
        import json
        import tempfile

        from ..data.text import encode_file
        from ..evaluate import finite_or_none
        c = load_for_inference(a.run)
        model = inference_model(c.model, a.backend, a.device)
        apply_threads(a.threads)
        remove_stale_temporaries()
        with tempfile.TemporaryDirectory(prefix=f"{EVAL_TMP_PREFIX}{os.getpid()}-") as tmp:
            enc = encode_file(a.text, Path(tmp) / "ids.bin", vocab=c.vocab, unknown="skip")
            result = _score(model, enc.ids, a.streams, a.quiet)
            del enc.ids  # release the memory map before the directory goes
        if result.chars == 0:
            raise DataError(f"{a.text}: fewer than 2 characters the model knows: there is nothing to score")
        unknown = sorted(enc.unknown_symbols, key=str)[:20]
        if a.json:
            print(json.dumps({
                "nats_per_char": finite_or_none(result.nats_per_char),
                "bits_per_char": finite_or_none(result.bits_per_char),
                "perplexity": finite_or_none(result.perplexity), "chars": result.chars,
                "unknown_chars": enc.n_unknown, "unknown_symbols": unknown,
            }, allow_nan=False))
        elif math.isnan(result.nats):
            print(f"no score: the model's outputs on this text are not numbers (its weights overflow float32)   "
                  f"{counted(result.chars, 'character')} read")
        else:
            print(f"{result.nats_per_char:.4f} nats/char   {result.bits_per_char:.4f} bits/char   "
                  f"perplexity {result.perplexity:.3f}   {counted(result.chars, 'character')} scored")
        if enc.n_unknown:
            print(f"charrnn eval: {enc.n_unknown:,} character(s) outside the vocabulary were not scored: "
                  f"{', '.join(repr(u) for u in unknown)}", file=sys.stderr)
        return 0

    return run


def _score(model, ids, streams, quiet):
    """evaluate_ids with a progress bar on stderr (shown on a terminal only)."""
    from tqdm import tqdm

    import numpy as np

    from ..evaluate.lm import evaluate_ids

    # a model whose outputs overflow scores inf or NaN, which the report says; NumPy's warnings
    # of each overflow would only bury it
    with tqdm(total=max(len(ids) - 1, 0), unit="char", unit_scale=True, disable=True if quiet else None,
              file=sys.stderr, leave=False) as bar, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return evaluate_ids(model, ids, streams=streams, progress=bar.update)
