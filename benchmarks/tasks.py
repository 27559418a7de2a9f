"""The task models on the built-in data against simple baselines written here in a few lines.

    python benchmarks/tasks.py [--budget 120] [--only wordlang|pytokens] [--json results.json]

wordlang (language of a word, 10 languages, test split): a character n-gram (1-3 and 1-4, with word
boundaries) multinomial naive Bayes against `charrnn classify train --dataset wordlang` (LSTM, the
defaults) trained for --budget seconds.

pytokens (token type of every character of Python source, test files): the most frequent tag of
each character, and of each (previous character, character) pair, against `charrnn tag train
--dataset pytokens` for --budget seconds each without and with --output-recurrence. For the
tagger with R: free-running accuracy (greedy and --beam 4), and the teacher-forced one. Where R
helps is measured on three kinds of positions: tag boundaries (the true tag differs from the
previous one), and characters inside strings and comments.

Each model trains in this process with one BLAS thread, in a temporary run directory; the
numbers are test-set accuracies. The Python version is printed, as the pytokens tags come from
its tokenize.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charrnn.settings import TaskConfig  # noqa: E402
from charrnn.train import Trainer  # noqa: E402
from charrnn.io.task_checkpoint import load_task_checkpoint  # noqa: E402
from charrnn.data.labelled import encode, read_examples  # noqa: E402
from charrnn.data.task_corpora import dataset_files  # noqa: E402
from charrnn.evaluate.tasks import decode_all, report, scores, truth  # noqa: E402
from charrnn.threads import set_threads  # noqa: E402


def naive_bayes(train, test, n=3, alpha=0.1):
    """Multinomial naive Bayes over the character 1..n-grams of "^word$"."""
    def grams(w):
        s = f"^{w}$"
        return [s[i : i + k] for k in range(1, n + 1) for i in range(len(s) - k + 1)]

    counts, totals, prior = defaultdict(Counter), Counter(), Counter()
    for e in train:
        prior[e.label] += 1
        g = grams(e.text)
        counts[e.label].update(g)
        totals[e.label] += len(g)
    vocab = len(set().union(*counts.values()))
    labels = sorted(prior)
    right = 0
    for e in test:
        g = grams(e.text)
        best = max(labels, key=lambda c: math.log(prior[c]) + sum(
            math.log((counts[c][x] + alpha) / (totals[c] + alpha * vocab)) for x in g))
        right += best == e.label
    return right / len(test)


def frequent_tag(train, test, context):
    """The most frequent tag of each character (context 1) or (previous character, character)
    pair (context 2), falling back to the character's, then the most frequent tag overall."""
    by_char, by_pair, overall = defaultdict(Counter), defaultdict(Counter), Counter()
    for e in train:
        for i, (c, t) in enumerate(zip(e.text, e.label)):
            by_char[c][t] += 1
            by_pair[(e.text[i - 1] if i else "", c)][t] += 1
            overall[t] += 1
    top = overall.most_common(1)[0][0]
    right = total = 0
    for e in test:
        for i, (c, t) in enumerate(zip(e.text, e.label)):
            pair = (e.text[i - 1] if i else "", c)
            table = by_pair[pair] if context == 2 and pair in by_pair else by_char.get(c)
            guess = table.most_common(1)[0][0] if table else top
            right += guess == t
            total += 1
    return right / total


def train_model(task, dataset, budget, run_dir, **kw):
    cfg = TaskConfig(task=task, dataset=dataset, time_budget=budget, eval_every=250, patience=0, **kw)
    started = time.perf_counter()
    result = Trainer(cfg, run_dir, quiet=True).run()
    return load_task_checkpoint(run_dir, task), result.step, time.perf_counter() - started


def where(y, pred, names):
    """Accuracy at tag boundaries and inside STRING / COMMENT characters."""
    prev = np.r_[-1, y[:-1]]
    out = {"boundaries": float((pred == y)[y != prev].mean())}
    for name in ("STRING", "COMMENT"):
        k = names.index(name)
        out[name.lower()] = float((pred == y)[y == k].mean())
    return out


def bench_wordlang(budget, tmp):
    files = dataset_files("wordlang")
    train, test = read_examples("classify", files["train"]), read_examples("classify", files["test"])
    rows = {f"naive Bayes, char 1-{n}-grams": naive_bayes(train, test, n=n) for n in (3, 4)}
    c, steps, secs = train_model("classify", "wordlang", budget, Path(tmp) / "wordlang")
    enc = encode("classify", test, c.symbols, c.labels, files["test"])
    _, pred = scores(c.model, enc)
    r = report(c.labels.names, truth(enc), pred)
    rows[f"charrnn classify, LSTM 1x128, {secs:.0f} s ({steps:,} steps)"] = r["accuracy"]
    return {"test_words": len(test), "accuracy": rows, "macro_f1": r["macro_f1"]}


def bench_pytokens(budget, tmp):
    files = dataset_files("pytokens")
    train, test = read_examples("tag", files["train"]), read_examples("tag", files["test"])
    rows = {"most frequent tag per character": frequent_tag(train, test, 1),
            "most frequent tag per (previous, this) character": frequent_tag(train, test, 2)}
    detail = {}
    for fb in (False, True):
        name = "with R" if fb else "without R"
        c, steps, secs = train_model("tag", "pytokens", budget, Path(tmp) / f"pytokens-{fb}", feedback=fb)
        enc = encode("tag", test, c.symbols, c.labels, files["test"])
        y = truth(enc)
        pred = decode_all(c.model, enc, beam=1)
        label = f"charrnn tag, LSTM 1x128, {name}, {secs:.0f} s ({steps:,} steps)"
        rows[label + (", greedy" if fb else "")] = float((pred == y).mean())
        detail[name] = where(y, pred, c.labels.names) | {"macro_f1": report(c.labels.names, y, pred)["macro_f1"]}
        if fb:
            beam = decode_all(c.model, enc, beam=4)
            rows[label + ", beam 4"] = float((beam == y).mean())
            detail["with R, beam 4"] = where(y, beam, c.labels.names)
            _, forced = scores(c.model, enc)
            rows[label + ", teacher-forced"] = float((forced == y).mean())
    return {"python": sys.version.split()[0], "test_chars": int(sum(len(e.text) for e in test)), "accuracy": rows,
            "where": detail}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    ap.add_argument("--only", choices=("wordlang", "pytokens"))
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    set_threads(1)
    out = {"python": sys.version.split()[0], "budget_s": a.budget}
    with tempfile.TemporaryDirectory(prefix="charrnn-tasks-") as tmp:
        if a.only in (None, "wordlang"):
            out["wordlang"] = bench_wordlang(a.budget, tmp)
        if a.only in (None, "pytokens"):
            out["pytokens"] = bench_pytokens(a.budget, tmp)
    for key in ("wordlang", "pytokens"):
        if key in out:
            print(f"\n{key} (test accuracy)")
            for name, acc in out[key]["accuracy"].items():
                print(f"  {acc:.4f}  {name}")
    if "pytokens" in out:
        print("\npytokens: accuracy at tag boundaries / inside strings / inside comments")
        for name, d in out["pytokens"]["where"].items():
            print(f"  {name:<16} {d['boundaries']:.4f} / {d['string']:.4f} / {d['comment']:.4f}")
    print(f"\nPython {out['python']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
