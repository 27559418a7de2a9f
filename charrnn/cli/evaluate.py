"""charrnn eval: nats and bits per character of a text."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from ..checks import counted
from ..errors import ConfigError, DataError
from ._common import (add_backend_flags, apply_threads, bounded, command, inference_model, load_for_inference,
                      positive_int)


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
    from ..evaluate.dynamic import MAX_DECAY, MAX_LR, MAX_SEGMENT
    p.add_argument("--dynamic", action="store_true",
                   help="dynamic evaluation: the model adapts to the text as it scores it; the hyper-parameters are "
                        "tuned on the text's first half and the second half is scored (one stream)")
    p.add_argument("--dynamic-lr", type=bounded(float, 0.0, MAX_LR, low_open=True), default=None, metavar="ETA",
                   help=f"--dynamic: the step size eta, in (0, {MAX_LR:g}] (default: tuned on the first half)")
    p.add_argument("--dynamic-decay", type=bounded(float, 0.0, MAX_DECAY), default=None, metavar="LAMBDA",
                   help=f"--dynamic: the decay lambda toward the trained weights, in [0, {MAX_DECAY:g}] "
                        "(default: tuned on the first half)")
    p.add_argument("--dynamic-segment", type=bounded(int, 1, MAX_SEGMENT), default=None, metavar="N",
                   help=f"--dynamic: characters per segment, one step after each, in [1, {MAX_SEGMENT:,}] "
                        "(default: tuned on the first half)")

    def run(a: argparse.Namespace) -> int:
        import json
        import tempfile

        from ..data.text import encode_file
        from ..evaluate import finite_or_none
        _check_dynamic_flags(a)
        c = load_for_inference(a.run)
        model = inference_model(c.model, a.backend, a.device)
        apply_threads(a.threads)
        remove_stale_temporaries()
        with tempfile.TemporaryDirectory(prefix=f"{EVAL_TMP_PREFIX}{os.getpid()}-") as tmp:
            enc = encode_file(a.text, Path(tmp) / "ids.bin", vocab=c.vocab, unknown="skip")
            if a.dynamic:
                try:
                    result = _score_dynamically(model, enc.ids, a)
                except DataError as e:  # a text too short to split
                    raise DataError(f"{a.text}: {e}") from None
            else:
                result = _score(model, enc.ids, a.streams, a.quiet)
            del enc.ids  # release the memory map before the directory goes
        if result.chars == 0:
            raise DataError(f"{a.text}: fewer than 2 characters the model knows: there is nothing to score")
        unknown = sorted(enc.unknown_symbols, key=str)[:20]
        if a.json:
            print(json.dumps({
                "dynamic": a.dynamic,
                "nats_per_char": finite_or_none(result.nats_per_char),
                "bits_per_char": finite_or_none(result.bits_per_char),
                "perplexity": finite_or_none(result.perplexity), "chars": result.chars,
                "unknown_chars": enc.n_unknown, "unknown_symbols": unknown,
                **(_dynamic_fields(result) if a.dynamic else {}),
            }, allow_nan=False))
        elif a.dynamic:
            print(_dynamic_line(result))
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


def _check_dynamic_flags(a: argparse.Namespace) -> None:
    """The dynamic options only with --dynamic, and --dynamic only where it can run: refused in
    one line before any work."""
    given = [flag for flag, value in (("--dynamic-lr", a.dynamic_lr), ("--dynamic-decay", a.dynamic_decay),
                                      ("--dynamic-segment", a.dynamic_segment)) if value is not None]
    if not a.dynamic:
        if given:
            raise ConfigError(f"{given[0]} needs --dynamic")
        return
    if a.streams not in (None, 1):
        raise ConfigError(f"--dynamic scores one stream in text order; --streams {a.streams} cannot go with it")
    if a.backend != "numpy":
        # the update works in place on the NumPy model's parameters; the torch backend's model has no
        # gradients to give it
        raise ConfigError(f"--dynamic runs on the numpy backend only, not --backend {a.backend}")


def _score_dynamically(model, ids, a: argparse.Namespace):
    """evaluate_dynamic with a progress bar on stderr (shown on a terminal only)."""
    from tqdm import tqdm

    import numpy as np

    from ..evaluate.dynamic import dynamic_work, evaluate_dynamic

    fixed = {"lr": a.dynamic_lr, "decay": a.dynamic_decay, "segment": a.dynamic_segment}
    with tqdm(total=dynamic_work(len(ids), **fixed), unit="char", unit_scale=True, disable=True if a.quiet else None,
              file=sys.stderr, leave=False) as bar, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return evaluate_dynamic(model, ids, progress=bar.update, **fixed)


def _dynamic_fields(r) -> dict[str, Any]:
    """What --json adds for a dynamic score: the static score beside it and the hyper-parameters."""
    from ..evaluate import finite_or_none

    return {"static_nats_per_char": finite_or_none(r.static.nats_per_char),
            "static_bits_per_char": finite_or_none(r.static.bits_per_char),
            "lr": r.lr, "decay": r.decay, "segment": r.segment, "tuned": list(r.tuned), "tuning_chars": r.tuning_chars}


def _dynamic_line(r) -> str:
    """One line that cannot be taken for a static score: it says so first, then the static score
    of the same characters and the hyper-parameters."""
    how = (f"{', '.join(r.tuned)} tuned on the first {counted(r.tuning_chars, 'character')}" if r.tuned
           else "all given")
    return (f"dynamic: {r.nats_per_char:.4f} nats/char   {r.bits_per_char:.4f} bits/char   "
            f"perplexity {r.perplexity:.3f}   (static {r.static.nats_per_char:.4f} nats/char)   "
            f"{counted(r.chars, 'character')} scored, the text's second half   "
            f"lr {r.lr:g}, decay {r.decay:g}, segment {r.segment} ({how})")


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
