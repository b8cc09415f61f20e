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
        precision, recall, f1 = _prf(tp, fp, fn)
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


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


THRESHOLD_GRID = [round(0.05 * i, 2) for i in range(1, 20)]


def tune_thresholds(y_true: Sequence[Sequence[int]], probs: Sequence[Sequence[float]],
                    min_positives: int = 5) -> list[float]:
    """Per label, the threshold in 0.05..0.95 with the best F1 on these rows; 0.5 for a label with fewer than
    ``min_positives`` positive rows (a threshold fitted to one or two examples would be noise)."""
    thresholds = []
    for j in range(len(probs[0]) if probs else 0):
        truth = [row[j] for row in y_true]
        if sum(truth) < min_positives:
            thresholds.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for t in THRESHOLD_GRID:
            tp = sum(1 for y, p in zip(truth, probs) if y and p[j] >= t)
            fp = sum(1 for y, p in zip(truth, probs) if not y and p[j] >= t)
            f1 = _prf(tp, fp, sum(truth) - tp)[2]
            if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
                best, best_f1 = t, f1
        thresholds.append(best)
    return thresholds


def multilabel_metrics(y_true: Sequence[Sequence[int]], probs: Sequence[Sequence[float]], labels: Sequence[str],
                       thresholds: Sequence[float]) -> dict:
    """Per-label precision/recall/F1 at each label's threshold, macro and micro F1, and exact-match accuracy."""
    predicted = [[int(p >= t) for p, t in zip(row, thresholds)] for row in probs]
    per_class, totals = {}, [0, 0, 0]
    for j, label in enumerate(labels):
        tp = sum(1 for y, p in zip(y_true, predicted) if y[j] and p[j])
        fp = sum(1 for y, p in zip(y_true, predicted) if not y[j] and p[j])
        fn = sum(1 for y, p in zip(y_true, predicted) if y[j] and not p[j])
        precision, recall, f1 = _prf(tp, fp, fn)
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn,
                            "threshold": thresholds[j]}
        totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
    n = len(y_true)
    return {
        "accuracy": sum(1 for y, p in zip(y_true, predicted) if list(y) == p) / n if n else 0.0,  # exact match
        "macro_f1": sum(m["f1"] for m in per_class.values()) / len(labels) if labels else 0.0,
        "micro_f1": _prf(*totals)[2],
        "per_class": per_class,
        "labels": list(labels),
        "thresholds": dict(zip(labels, thresholds)),
        "support": n,
        "multi_label": True,
    }
