"""Honest numbers: the majority-class baseline beside a model's scores, and one-line warnings when the model
is not clearly better than it or the validation split is too small to say."""
from __future__ import annotations

from collections import Counter
from statistics import NormalDist
from typing import Sequence

from worker.ml.metrics import classification_metrics, multilabel_metrics

MIN_VALIDATION = 50  # texts
MIN_PER_CLASS = 5  # validation texts per class (per label for multi-label)


def _is_multi(labels: Sequence) -> bool:
    return bool(labels) and not isinstance(labels[0], str)


def majority_baseline(train_labels: Sequence, val_labels: Sequence, labels: Sequence[str]) -> dict:
    """Scores on the validation texts of always predicting the most frequent training label (for label sets:
    the most frequent training label set). Equal counts go to the first in ``labels`` order.

    {"label": the label (or sorted list of labels) predicted, "accuracy", "macro_f1"}"""
    if not train_labels:
        raise ValueError("no training labels")
    if _is_multi(train_labels):
        counts = Counter(tuple(sorted(set(s))) for s in train_labels)
        label_set = min(counts, key=lambda s: (-counts[s], [labels.index(x) for x in s]))
        row = [float(label in label_set) for label in labels]
        truth = [[int(label in set(s)) for label in labels] for s in val_labels]
        m = multilabel_metrics(truth, [row] * len(truth), labels, [0.5] * len(labels))
        return {"label": list(label_set), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    counts = Counter(train_labels)
    majority = min(counts, key=lambda label: (-counts[label], list(labels).index(label)))
    index = {label: i for i, label in enumerate(labels)}
    m = classification_metrics([index[v] for v in val_labels], [index[majority]] * len(val_labels), labels)
    return {"label": majority, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def _validation_size_warnings(val_labels: Sequence, labels: Sequence[str] | None) -> list[str]:
    warnings = []
    if len(val_labels) < MIN_VALIDATION:
        warnings.append(f"validation split of {len(val_labels)} texts is too small to judge this model "
                        f"(fewer than {MIN_VALIDATION})")
    counts = Counter(x for s in val_labels for x in set(s)) if _is_multi(val_labels) else Counter(val_labels)
    few = sorted((label for label in (labels or counts) if counts[label] < MIN_PER_CLASS),
                 key=lambda label: (counts[label], label))
    if few:
        shown = ", ".join(f"{label!r} ({counts[label]})" for label in few[:5]) + (" ..." if len(few) > 5 else "")
        warnings.append(f"fewer than {MIN_PER_CLASS} validation texts for {shown}: their scores are noise")
    return warnings


def _macro_f1_low(metrics: dict, interval: dict | None, confidence: float = 0.95) -> tuple[float, str]:
    """The lower end of macro-F1's interval, and how it is shown; without an interval, a normal approximation."""
    if interval is None:
        interval = (metrics.get("intervals") or {}).get("macro_f1")
    if interval is not None:
        return interval["low"], f"95% interval {interval['low']:.3f}-{interval['high']:.3f}"
    p, n = metrics["macro_f1"], max(metrics.get("support") or 0, 1)
    half = NormalDist().inv_cdf(1 - (1 - confidence) / 2) * (p * (1 - p) / n) ** 0.5
    return p - half, f"±{half:.3f}"


def _never_predicted(metrics: dict) -> list[str]:
    confusion = metrics.get("confusion_matrix")
    if not confusion or not metrics.get("support"):
        return []
    return [label for j, label in enumerate(metrics["labels"]) if not any(row[j] for row in confusion)]


def trust_warnings(metrics: dict, baseline: dict, val_labels: Sequence, interval: dict | None = None) -> list[str]:
    """One-line warnings for a model version (empty: nothing to say).

    ``metrics``: the validation metrics (``classification_metrics`` or ``multilabel_metrics``, optionally with
    ``intervals`` from ``score_intervals``); ``baseline``: from ``majority_baseline``; ``interval``: macro-F1's
    {"low", "high"} when ``metrics`` has none."""
    warnings = []
    low, shown = _macro_f1_low(metrics, interval)
    if low <= baseline["macro_f1"]:
        predicted = baseline["label"]
        warnings.append(f"macro-F1 {metrics['macro_f1']:.3f} is not clearly above the majority-class baseline "
                        f"{baseline['macro_f1']:.3f} (always {predicted!r}; {shown})")
    never = _never_predicted(metrics)
    if never:
        warnings.append("never predicts " + ", ".join(repr(label) for label in never[:5])
                        + (" ..." if len(never) > 5 else "") + " on the validation split")
    return warnings + _validation_size_warnings(val_labels, metrics.get("labels"))
