"""What `charrnn classify` and `charrnn tag` share: train | eval | predict subcommands over the
task trainer (train/tasks.py), with flags built from TaskConfig's fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..settings import DTYPES, INITS, OPTIMIZERS, SCHEDULES, cell_names
from ..errors import ConfigError, DataError
from ..train.request import fresh_run_dir
from ._common import Parser, apply_threads, positive_int

HELPS = {
    "val": "validation file in the same format (default: a seeded random --val-frac of the training file"
           " , stratified by class for classify)",
    "val_frac": "fraction of the training file held out for validation when no --val is given (0 = none)",
    "balance": "skewed classes: none, weights (loss weighted by 1 / class frequency) or sampling (balanced batches)",
    "cell": "recurrent cell: rnn (tanh), lstm or gru",
    "hidden_size": "hidden units per layer",
    "num_layers": "stacked recurrent layers",
    "dropout": "dropout between layers and before the head, in training only",
    "batch_size": "texts per step (grouped by length)",
    "steps": "total steps, resumed ones included (default: 10 epochs and at least 500 steps, at most 15 min, "
             "stopping early when validation stops improving)",
    "time_budget": "seconds to train in this invocation",
    "patience": "stop after this many validations without a better validation loss (0 = never)",
    "eval_every": "steps between validation + checkpoint (0 = at the end only)",
    "clip_norm": "clip the global gradient norm to this (0 = off)",
    "seed": "seed of the weights, the split and the batches",
    "threads": "BLAS threads (0 = charrnn's default)",
}
CHOICES = {"optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES, "init": INITS, "dtype": DTYPES,
           "balance": ("none", "weights", "sampling")}


def add_task_commands(p: argparse.ArgumentParser, task: str) -> Any:
    from ..task_settings import TASK_DATASETS, TaskConfig

    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    fmt = "TSV file: text<TAB>label per line" if task == "classify" else 'JSON Lines: {"text": ..., "tags": [...]}'
    datasets = TASK_DATASETS[task]

    noun = "classifier" if task == "classify" else "tagger"
    t = sub.add_parser("train", help=f"train a {noun}", description=f"train a {noun} on DATA ({fmt})")
    t.add_argument("data", nargs="?", metavar="DATA", help=fmt)
    t.add_argument("--dataset", choices=datasets, help=f"built-in data instead of DATA: {', '.join(datasets)}")
    t.add_argument("--out", metavar="RUN_DIR", help=f"run directory (default: runs/{task}-<name of DATA>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    t.add_argument("--force", action="store_true", help="replace a run already in --out")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--json-log", action="store_true", help="print each metrics record as a JSON line on stdout")
    if task == "tag":
        t.add_argument("--output-recurrence", dest="feedback", action="store_true", default=None,
                       help="feed the previous tag back into the first layer (R y_{t-1}); teacher forcing in "
                            "training, the model's own tags (greedy or --beam) at inference")
    skip = {"task", "data", "dataset", "feedback"} | ({"balance"} if task == "tag" else set())
    d = TaskConfig()
    for f in dataclasses.fields(TaskConfig):
        if f.name in skip:
            continue
        default = getattr(d, f.name)
        kind = type(default) if default is not None else str
        # the cells are asked now, when the parser is built: a cell registered before is offered
        choices = cell_names() if f.name == "cell" else CHOICES.get(f.name)
        extra = {"choices": choices} if choices else {}
        shown = "" if default is None or (not default and f.name in ("steps", "time_budget")) else f" (default {default})"
        t.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, help=HELPS.get(f.name, "") + shown,
                       metavar=None if extra else f.name.split("_")[-1].upper(), **extra)

    e = sub.add_parser("eval", help="score a labelled file", description=f"score RUN's model on DATA ({fmt})")
    e.add_argument("run", metavar="RUN", help="run directory (its best checkpoint) or checkpoint file")
    e.add_argument("data", nargs="?", metavar="DATA", help=fmt)
    e.add_argument("--dataset", choices=datasets, help="the test part of built-in data instead of DATA")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    if task == "tag":
        e.add_argument("--beam", type=positive_int, default=1, help="beam width of decoding with output recurrence "
                                                                     "(1 = greedy)")
    e.add_argument("--threads", type=int, default=0)

    r = sub.add_parser("predict", help="label texts given on the command line")
    r.add_argument("run", metavar="RUN")
    r.add_argument("texts", nargs="+", metavar="TEXT")
    r.add_argument("--json", action="store_true", help="print one JSON object per text")
    if task == "classify":
        r.add_argument("--top", type=positive_int, default=3, help="show the K most probable labels (default 3)")
    else:
        r.add_argument("--beam", type=positive_int, default=1, help="beam width (1 = greedy)")
    r.add_argument("--threads", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        if a.action is None:
            p.print_help()
            return 2
        return {"train": _train, "eval": _eval, "predict": _predict}[a.action](a, task)

    return run


def _train(a: argparse.Namespace, task: str) -> int:
    from ..task_settings import TaskConfig
    from ..train.tasks import TaskTrainer
    from ..train.loop import Diverged, Interrupted

    fields = [f.name for f in dataclasses.fields(TaskConfig)]
    overrides = {k: getattr(a, k) for k in fields if k not in ("task", "data") and getattr(a, k, None) is not None}
    cfg = TaskConfig(task=task, data=a.data).replace(**overrides)
    if a.resume:
        if a.out and a.out != a.resume:
            raise ConfigError("give the run directory once: --resume RUN_DIR (without --out)")
        run_dir = a.resume
    else:
        if cfg.data is None and cfg.dataset is None:
            raise ConfigError("give a data file to train on, or --dataset")
        if cfg.data is not None and cfg.dataset is not None:
            raise ConfigError("give either a data file or --dataset, not both")
        run_dir = a.out or str(fresh_run_dir(f"{task}-{cfg.dataset or Path(cfg.data).stem or 'run'}"))
    apply_threads(cfg.threads)
    trainer = TaskTrainer(cfg, run_dir, resume=bool(a.resume), force=a.force, quiet=a.quiet, json_log=a.json_log,
                          asked=overrides)  # the flags given: one at its default value is still a request
    try:
        result = trainer.run()
    except Interrupted as e:
        print(f"charrnn {task} train: {e}", file=sys.stderr)
        return e.status
    except Diverged as e:
        print(f"charrnn {task} train: error: {e}", file=sys.stderr)
        return 3
    if not a.quiet:
        val = "" if result["val_accuracy"] is None else f", validation accuracy {result['val_accuracy']:.4f}"
        print(f"charrnn {task}: {result['step']:,} steps{val} ({result['stopped']}). "
              f"Evaluate with: charrnn {task} eval {result['run_dir']} DATA", file=sys.stderr)
    return 0


def _eval(a: argparse.Namespace, task: str) -> int:
    import numpy as np

    from ..io.task_checkpoint import load_task_checkpoint
    from ..data.labelled import encode, read_examples
    from ..evaluate.tasks import decode_all, format_report, report, scores, truth

    c = load_task_checkpoint(a.run, task)
    apply_threads(a.threads)
    if (a.data is None) == (a.dataset is None):
        raise ConfigError("give a data file to score, or --dataset (its test part)")
    if a.dataset is not None:
        from ..data.task_corpora import dataset_files

        path = dataset_files(a.dataset)["test"]
    else:
        path = Path(a.data)
    examples = read_examples(task, path)
    enc = encode(task, examples, c.symbols, c.labels, path)
    model = c.model
    out: dict[str, Any]
    if task == "classify":
        loss, pred = scores(model, enc)
        out = report(c.labels.names, truth(enc), pred) | {"count": len(enc), "loss": loss}
    else:
        y = truth(enc)
        pred = decode_all(model, enc, beam=a.beam)
        out = report(c.labels.names, y, pred) | {"count": int(len(y)), "texts": len(enc), "beam": a.beam}
        if model.feedback:
            _, forced = scores(model, enc)
            out["teacher_forced_accuracy"] = float((forced == y).mean())
    unknown = sorted(c.symbols.unknown_in([e.text for e in examples]))
    out["unknown_chars"] = enc.n_unknown
    longest = c.state.get("max_length")
    if isinstance(longest, int) and len(enc) and int(np.max(enc.lengths)) > longest:
        print(f"charrnn {task} eval: some texts are longer than any in training ({int(np.max(enc.lengths)):,} "
              f"characters against {longest:,}); the model reads them all the same", file=sys.stderr)
    if a.json:
        print(json.dumps(out, allow_nan=False))
    else:
        print(format_report(out, "texts" if task == "classify" else "characters"))
    if enc.n_unknown:
        print(f"charrnn {task} eval: {enc.n_unknown:,} character(s) unseen in training were read as no input: "
              f"{', '.join(repr(u) for u in unknown[:20])}", file=sys.stderr)
    return 0


def _predict(a: argparse.Namespace, task: str) -> int:
    import numpy as np

    from ..io.task_checkpoint import load_task_checkpoint

    c = load_task_checkpoint(a.run, task)
    apply_threads(a.threads)
    for i, text in enumerate(a.texts):
        if not text:
            raise DataError(f"TEXT {i + 1} is empty: there is nothing to {task}")
    ids = [c.symbols.encode(t) for t in a.texts]
    if task == "classify":
        probs = c.model.predict_proba(ids)
        k = min(a.top, c.labels.size)
        for text, p in zip(a.texts, probs):
            order = np.argsort(-p, kind="stable")[:k]
            top = [{"label": c.labels.names[j], "probability": float(p[j])} for j in order]
            if a.json:
                print(json.dumps({"text": text, "labels": top}, ensure_ascii=False))
            else:
                print(f"{text}\t" + "  ".join(f"{t['label']} {t['probability']:.3f}" for t in top))
    else:
        for text, tags in zip(a.texts, c.model.decode(ids, beam=a.beam)):
            names = [c.labels.names[j] for j in tags]
            if a.json:
                print(json.dumps({"text": text, "tags": names}, ensure_ascii=False))
                continue
            start = 0
            for j in range(1, len(text) + 1):  # one line per run of equal tags: tag, then its characters
                if j == len(text) or names[j] != names[start]:
                    print(f"{names[start]}\t{text[start:j]!r}")
                    start = j
            print()
    unknown = sorted(c.symbols.unknown_in(a.texts))
    if unknown:
        print(f"charrnn {task} predict: character(s) unseen in training were read as no input: "
              f"{', '.join(repr(u) for u in unknown[:20])}", file=sys.stderr)
    return 0
