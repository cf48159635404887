"""Classification metrics from label arrays: plain numpy, no torch."""

from __future__ import annotations

import numpy as np

from moodstream.shared.labels import LABELS, NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """(n, n) counts; row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, macro precision / recall / F1, a per-class table and the confusion matrix.

    A class never predicted has precision 0; a class absent from ``y_true`` is
    left out of the macro averages (its recall is undefined) and reported with
    ``support`` 0.
    """
    cm = confusion_matrix(y_true, y_pred)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(LABELS)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(LABELS),
    }


def format_report(report: dict) -> str:
    """The report as a readable table."""
    lines = [f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, row in report["per_class"].items():
        lines.append(f"{name:<12}{row['precision']:>10.3f}{row['recall']:>10.3f}"
                     f"{row['f1']:>10.3f}{row['support']:>10d}")
    lines.append(f"{'macro':<12}{report['macro_precision']:>10.3f}{report['macro_recall']:>10.3f}"
                 f"{report['macro_f1']:>10.3f}{report['n']:>10d}")
    lines.append(f"accuracy {report['accuracy']:.4f} on {report['n']} images")
    return "\n".join(lines)
