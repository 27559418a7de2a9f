"""Scoring the task models: loss and accuracy for validation during training, and the full
reports of `charrnn classify eval` / `charrnn tag eval` (accuracy, macro-F1, per-label precision,
recall and F1, the confusion matrix)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model.task import log_softmax
from ..data.labelled import Encoded, eval_batches


def scores(model: Any, enc: Encoded, batch_size: int = 64) -> tuple[float, np.ndarray]:
    """(mean loss, predictions) with dropout off. classify: one prediction per text (n,), loss
    the mean over texts; tag: the concatenated per-character predictions of every text in order,
    loss the mean over characters, both teacher-forced when the tagger feeds its tags back."""
    total, count = 0.0, 0
    preds: list[Any] = [None] * len(enc)
    for idx in eval_batches(enc.lengths, batch_size):
        inputs, targets = enc.batch(idx)
        if model.task == "classify":
            logp = log_softmax(model.logits(inputs).astype(np.float64))
            total -= logp[np.arange(len(idx)), targets].sum()
            count += len(idx)
            for i, p in zip(idx, logp.argmax(axis=1)):
                preds[i] = p
        else:
            logp = log_softmax(model.logits(inputs, previous=targets if model.feedback else None).astype(np.float64))
            for j, i in enumerate(idx):
                n = len(targets[j])
                lp = logp[j, :n]
                total -= lp[np.arange(n), targets[j]].sum()
                count += n
                preds[i] = lp.argmax(axis=1)
    out = np.array(preds, dtype=np.intp) if model.task == "classify" else np.concatenate(preds)
    return total / max(count, 1), out


def truth(enc: Encoded) -> np.ndarray:
    return enc.targets if isinstance(enc.targets, np.ndarray) else np.concatenate(enc.targets)


def decode_all(model: Any, enc: Encoded, beam: int = 1, batch_size: int = 64) -> np.ndarray:
    """The tagger's own tags (free-running with feedback: its previous predictions are fed back),
    concatenated over the texts in order."""
    preds: list[Any] = [None] * len(enc)
    for idx in eval_batches(enc.lengths, batch_size):
        inputs, _ = enc.batch(idx)
        for i, p in zip(idx, model.decode(inputs, beam=beam)):
            preds[i] = p
    return np.concatenate(preds)


def report(names: list[str], y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """accuracy, macro_f1 (over the labels present in y or pred), per-label precision / recall /
    F1 / support, and the confusion matrix: confusion[i][j] = items of label i predicted as j."""
    K = len(names)
    confusion = np.bincount(y * K + pred, minlength=K * K).reshape(K, K)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
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
    }


def format_report(r: dict[str, Any], what: str, show_confusion: bool = True) -> str:
    """The report as a table for people."""
    lines = [f"accuracy {r['accuracy']:.4f}   macro-F1 {r['macro_f1']:.4f}   ({r['count']:,} {what})"]
    if "teacher_forced_accuracy" in r:
        lines.append(f"teacher-forced accuracy {r['teacher_forced_accuracy']:.4f} (the true previous tags fed back)")
    width = max(8, *(len(n) for n in r["labels"]))
    lines.append(f"{'label':<{width}}  precision  recall     f1  support")
    for name in r["labels"]:
        p = r["per_label"][name]
        lines.append(f"{name:<{width}}  {p['precision']:9.4f}  {p['recall']:6.4f}  {p['f1']:.4f}  {p['support']:7,}")
    if show_confusion and len(r["labels"]) <= 20:
        lines.append("confusion (rows: true label, columns: predicted, in the order above)")
        lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in r["confusion"]]
    return "\n".join(lines)
