"""Classification metrics without scikit-learn: accuracy, macro-F1, per-class table, confusion matrix."""
from __future__ import annotations

from typing import Sequence


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    n = len(labels)
    confusion = [[0] * n for _ in range(n)]  # rows: true label, columns: predicted label
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[t][p] += 1
    per_class = {}
    f1s = []
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        fp = sum(confusion[r][i] for r in range(n)) - tp
        fn = sum(confusion[i]) - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
        f1s.append(f1)
    total = len(y_true)
    correct = sum(confusion[i][i] for i in range(n))
    return {
        "accuracy": correct / total if total else 0.0,
        "macro_f1": sum(f1s) / n if n else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "labels": list(labels),
        "support": total,
    }
