"""Scoring the task models: loss and accuracy for validation during training, and the full
reports of `charrnn classify eval` / `charrnn tag eval` (accuracy, macro-F1, per-label precision,
recall and F1, the confusion matrix).

A model with huge weights can overflow float32: its logits become infinite, or NaN where +inf
and -inf meet. Infinite logits are scored as their limit (the labels at +inf share the
probability); an item whose logits hold NaN has no prediction (NO_PREDICTION), which counts as
wrong, and no probability is ever shown as NaN."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import stopping
from ..checks import counted
from ..model.task import log_softmax
from ..data.labelled import Encoded, eval_batches

# The prediction of an item whose scores are not numbers (module docstring).
NO_PREDICTION = -1


def finite_log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis in float64, of logits that may have overflowed: in a row
    with +inf logits those share the probability and the others get none (the limit as they
    grow); a row holding NaN stays NaN."""
    z = np.asarray(logits, dtype=np.float64)
    top = np.isposinf(z)
    z = np.where(top.any(axis=-1, keepdims=True), np.where(top, 0.0, -np.inf), z)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return log_softmax(z)


def _predictions(logp: np.ndarray) -> np.ndarray:
    """argmax over the last axis, NO_PREDICTION where the row is NaN."""
    pred = np.argmax(np.nan_to_num(logp, nan=-np.inf), axis=-1)
    return np.where(np.isnan(logp).any(axis=-1), NO_PREDICTION, pred)


def class_probabilities(model: Any, ids: list[np.ndarray]) -> np.ndarray:
    """(B, K) probabilities of each text's classes, float64; NaN rows for texts without scores."""
    with np.errstate(all="ignore"):
        return np.exp(finite_log_softmax(model.logits(ids)))


def tags_of(model: Any, ids: list[np.ndarray], beam: int = 1) -> list[np.ndarray]:
    """The tagger's own tags of each text (decode), NO_PREDICTION at the characters whose
    scores, given the tags chosen before them, are not numbers."""
    with np.errstate(all="ignore"):
        tags = model.decode(ids, beam=beam)
        logits = model.logits(ids, previous=tags if model.feedback else None)  # (B, T, K), padded
    out = []
    for b, t in enumerate(tags):
        bad = np.isnan(logits[b, : len(t)]).any(axis=-1)
        out.append(np.where(bad, NO_PREDICTION, t))
    return out


def scores(model: Any, enc: Encoded, batch_size: int = 64) -> tuple[float, np.ndarray]:
    """(mean loss, predictions) with dropout off. classify: one prediction per text (n,), loss
    the mean over texts; tag: the concatenated per-character predictions of every text in order,
    loss the mean over characters, both teacher-forced when the tagger feeds its tags back. An
    item whose scores are not numbers is NO_PREDICTION, and the loss then NaN."""
    total, count = 0.0, 0
    preds: list[Any] = [None] * len(enc)
    for idx in eval_batches(enc.lengths, batch_size):
        stopping.check()
        inputs, targets = enc.batch(idx)
        with np.errstate(all="ignore"):  # overflow is handled, not warned about (module docstring)
            if model.task == "classify":
                logp = finite_log_softmax(model.logits(inputs))
                total -= logp[np.arange(len(idx)), targets].sum()
                count += len(idx)
                for i, p in zip(idx, _predictions(logp)):
                    preds[i] = p
            else:
                logp = finite_log_softmax(model.logits(inputs, previous=targets if model.feedback else None))
                for j, i in enumerate(idx):
                    n = len(targets[j])
                    lp = logp[j, :n]
                    total -= lp[np.arange(n), targets[j]].sum()
                    count += n
                    preds[i] = _predictions(lp)
    out = np.array(preds, dtype=np.intp) if model.task == "classify" else np.concatenate(preds)
    return total / max(count, 1), out


def truth(enc: Encoded) -> np.ndarray:
    return enc.targets if isinstance(enc.targets, np.ndarray) else np.concatenate(enc.targets)


def decode_all(model: Any, enc: Encoded, beam: int = 1, batch_size: int = 64) -> np.ndarray:
    """The tagger's own tags (free-running with feedback: its previous predictions are fed back),
    concatenated over the texts in order (`tags_of`)."""
    preds: list[Any] = [None] * len(enc)
    for idx in eval_batches(enc.lengths, batch_size):
        stopping.check()
        inputs, _ = enc.batch(idx)
        for i, p in zip(idx, tags_of(model, inputs, beam)):
            preds[i] = p
    return np.concatenate(preds)


def report(names: list[str], y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """accuracy, macro_f1 (over the labels present in y or pred), per-label precision / recall /
    F1 / support, and the confusion matrix: confusion[i][j] = items of label i predicted as j.
    Items without a prediction (NO_PREDICTION) count as wrong, and are counted in `unscored`."""
    K = len(names)
    scored = pred != NO_PREDICTION
    confusion = np.bincount(y[scored] * K + pred[scored], minlength=K * K).reshape(K, K)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = np.bincount(y, minlength=K)
    precision = np.divide(tp, predicted, out=np.zeros(K), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(K), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(K), where=(precision + recall) > 0)
    present = (support > 0) | (predicted > 0)
    per = {names[k]: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                      "support": int(support[k])} for k in range(K)}
    return {
        "accuracy": float(tp.sum() / max(len(y), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_label": per,
        "labels": list(names),
        "confusion": confusion.tolist(),
        "unscored": int((~scored).sum()),
    }


def format_report(r: dict[str, Any], noun: str, show_confusion: bool = True) -> str:
    """The report as a table for people; `noun` is what was counted ("text", "character")."""
    forced = "teacher_forced_accuracy" in r  # a tagger with output recurrence: two accuracies, each named
    lines = [f"accuracy {r['accuracy']:.4f}{' free-running' if forced else ''}   macro-F1 {r['macro_f1']:.4f}   "
             f"({counted(r['count'], noun)})"]
    if r.get("unscored"):
        lines.append(f"{counted(r['unscored'], noun)} without a prediction: the model's outputs there are not numbers "
                     "(its weights overflow float32), counted as wrong")
    if forced:
        lines.append(f"free-running accuracy {r['accuracy']:.4f} (its own previous tags fed back, as in use; the "
                     f"scores below), teacher-forced {r['teacher_forced_accuracy']:.4f} (the true previous tags fed "
                     "back, as in training's validation)")
    width = max(8, *(len(n) for n in r["labels"]))
    lines.append(f"{'label':<{width}}  precision  recall     f1  support")
    for name in r["labels"]:
        p = r["per_label"][name]
        lines.append(f"{name:<{width}}  {p['precision']:9.4f}  {p['recall']:6.4f}  {p['f1']:.4f}  {p['support']:7,}")
    if show_confusion and len(r["labels"]) <= 20:
        lines += confusion_table(r["labels"], r["confusion"])
    return "\n".join(lines)


CONFUSION_COLUMN = 10  # at most this many characters of a label head a column (the rows show it whole)


def confusion_table(labels: list[str], confusion: list[list[int]]) -> list[str]:
    """The confusion matrix with its headers: a row per true label (named whole), a column per
    predicted label (named by its first CONFUSION_COLUMN characters, in the rows' order)."""
    cells = max(6, *(len(f"{v:,}") for row in confusion for v in row))
    cols = [n[:CONFUSION_COLUMN] for n in labels]
    cells = max(cells, *(len(c) for c in cols))
    corner = "true \\ predicted"
    width = max(len(corner), *(len(n) for n in labels))
    lines = ["confusion (rows: the true label, columns: the predicted one)",
             f"{corner:<{width}}  " + " ".join(f"{c:>{cells}}" for c in cols)]
    lines += [f"{name:<{width}}  " + " ".join(f"{v:>{cells},}" for v in row) for name, row in zip(labels, confusion)]
    return lines
