"""What `charrnn classify` and `charrnn tag` share: train | eval | predict subcommands over the
one trainer (train/loop.py with train/tasks.py), a flag for every setting of settings.SETTINGS
that the task models have."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..settings import TASK_DATASETS
from ..checks import counted
from ..errors import ConfigError, DataError
from ..train.request import fresh_run_dir
from ._common import (Parser, add_setting_flags, apply_threads, escape_what_stdout_cannot_show, given_settings,
                      needs_run, positive_int, run_dir_arg)


def add_task_commands(p: argparse.ArgumentParser, task: str) -> Any:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    fmt = "TSV file: text<TAB>label per line" if task == "classify" else 'JSON Lines: {"text": ..., "tags": [...]}'
    datasets = TASK_DATASETS[task]

    noun = "classifier" if task == "classify" else "tagger"
    t = sub.add_parser("train", help=f"train a {noun}", description=f"train a {noun} on DATA ({fmt})")
    t.add_argument("data", nargs="?", metavar="DATA", help=fmt)
    t.add_argument("--out", metavar="RUN_DIR", type=run_dir_arg,
                   help=f"run directory (default: runs/{task}-<name of DATA>)")
    t.add_argument("--resume", metavar="RUN_DIR", type=run_dir_arg,
                   help="continue the run in RUN_DIR exactly where it stopped")
    t.add_argument("--force", action="store_true", help="replace a run already in --out")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--json-log", action="store_true", help="print each metrics record as a JSON line on stdout")
    add_setting_flags(t, "task", skip=("balance",) if task == "tag" else ("feedback",),
                      choices={"dataset": datasets}, notes={"dataset": f"({', '.join(datasets)}) instead of DATA"})

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
    from ..train.loop import Diverged, Interrupted, Trainer

    given = given_settings(a, "task")  # a flag given at its default value is still a request
    if a.resume:
        if a.out and a.out != a.resume:
            raise ConfigError("give the run directory once: --resume RUN_DIR (without --out)")
        run_dir = needs_run(a.resume, f"--resume continues a {task} run of your own")
    else:
        if given.get("data") is None and given.get("dataset") is None:
            raise ConfigError("give a data file to train on, or --dataset")
        if given.get("data") is not None and given.get("dataset") is not None:
            raise ConfigError("give either a data file or --dataset, not both")
        name = given.get("dataset") or Path(str(given.get("data"))).stem or "run"
        run_dir = a.out or str(fresh_run_dir(f"{task}-{name}"))
    apply_threads(given.get("threads"))
    trainer = Trainer(given | {"task": task}, run_dir, resume=bool(a.resume), force=a.force, quiet=a.quiet,
                      json_log=a.json_log, progress=False)
    try:
        result = trainer.run()
    except Interrupted as e:
        print(f"charrnn {task} train: {e}", file=sys.stderr)
        return e.status
    except Diverged as e:
        print(f"charrnn {task} train: error: {e}", file=sys.stderr)
        return 3
    if not a.quiet:
        from ..train.tasks import accuracy_words

        val = "" if result.val_accuracy is None else f", validation accuracy {accuracy_words(result, 4)}"
        dataset = trainer.objective.cfg.dataset
        data = f"--dataset {dataset}" if dataset else "DATA"  # built-in data: its test part
        print(f"charrnn {task}: {counted(result.step, 'step')}{val} ({result.stopped}). "
              f"Evaluate with: charrnn {task} eval {result.run_dir} {data}", file=sys.stderr)
    return 0


def _eval(a: argparse.Namespace, task: str) -> int:
    import numpy as np

    from ..io.task_checkpoint import load_task_checkpoint
    from ..data.labelled import encode, read_examples
    from ..evaluate import finite_or_none
    from ..evaluate.tasks import decode_all, format_report, report, scores, truth

    c = load_task_checkpoint(needs_run(a.run, f"a {task} model is a run of your own"), task)
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
        out = report(c.labels.names, truth(enc), pred) | {"count": len(enc), "loss": finite_or_none(loss)}
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
        print(json.dumps(out, allow_nan=False))  # ASCII: the labels in JSON's own escapes
    else:
        escape_what_stdout_cannot_show(f"{task} eval", c.labels.names)
        print(format_report(out, "text" if task == "classify" else "character"))
    if enc.n_unknown:
        print(f"charrnn {task} eval: {enc.n_unknown:,} character(s) unseen in training were read as no input: "
              f"{', '.join(repr(u) for u in unknown[:20])}", file=sys.stderr)
    return 0


def _predict(a: argparse.Namespace, task: str) -> int:
    import numpy as np

    from ..evaluate.tasks import NO_PREDICTION, class_probabilities, tags_of
    from ..io.task_checkpoint import load_task_checkpoint

    c = load_task_checkpoint(needs_run(a.run, f"a {task} model is a run of your own"), task)
    apply_threads(a.threads)
    for i, text in enumerate(a.texts):
        if not text:
            raise DataError(f"TEXT {i + 1} is empty: there is nothing to {task}")
    ids = [c.symbols.encode(t) for t in a.texts]
    # texts and labels as given, or in escapes where stdout cannot show them (then JSON's own)
    ascii_json = escape_what_stdout_cannot_show(f"{task} predict", [*a.texts, *c.labels.names])
    unscored = 0
    if task == "classify":
        probs = class_probabilities(c.model, ids)
        k = min(a.top, c.labels.size)
        for text, p in zip(a.texts, probs):
            top = None
            if not np.isnan(p).any():
                order = np.argsort(-p, kind="stable")[:k]
                top = [{"label": c.labels.names[j], "probability": float(p[j])} for j in order]
            unscored += top is None
            if a.json:
                print(json.dumps({"text": text, "labels": top}, ensure_ascii=ascii_json))
            elif top is None:
                print(f"{text}\t(no prediction)")
            else:
                print(f"{text}\t" + "  ".join(f"{t['label']} {t['probability']:.3f}" for t in top))
    else:
        for text, tags in zip(a.texts, tags_of(c.model, ids, a.beam)):
            names = [None if j == NO_PREDICTION else c.labels.names[j] for j in tags]
            unscored += names.count(None)
            if a.json:
                print(json.dumps({"text": text, "tags": names}, ensure_ascii=ascii_json))
                continue
            start = 0
            for j in range(1, len(text) + 1):  # one line per run of equal tags: tag, then its characters
                if j == len(text) or names[j] != names[start]:
                    print(f"{'(no prediction)' if names[start] is None else names[start]}\t{text[start:j]!r}")
                    start = j
            print()
    if unscored:
        noun = "text" if task == "classify" else "character"
        print(f"charrnn {task} predict: no prediction for {counted(unscored, noun)}: the model's outputs there are "
              "not numbers (its weights overflow float32)", file=sys.stderr)
    unknown = sorted(c.symbols.unknown_in(a.texts))
    if unknown:
        print(f"charrnn {task} predict: character(s) unseen in training were read as no input: "
              f"{', '.join(repr(u) for u in unknown[:20])}", file=sys.stderr)
    return 0
