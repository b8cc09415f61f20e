"""What a trained model's validation scores are worth, computed once after training on the same split:

- the majority-class baseline and the trust warnings (worker/ml/trust.py), with bootstrap intervals of the
  scores (worker/ml/intervals.py);
- the TF-IDF + logistic-regression baseline (worker/ml/baseline.py) and whether the model is clearly better;
- single-label: a temperature fitted on the validation logits and the calibration error before and after
  (worker/ml/calibration.py).

``score_card`` returns plain JSON the training job stores in the model version's metrics; the temperature also
goes into the artifact's metadata, so every prediction path applies it.
"""
from __future__ import annotations

from typing import Sequence

from worker.ml.baseline import compare_to_baseline, tfidf_baseline
from worker.ml.calibration import calibrate
from worker.ml.intervals import score_intervals
from worker.ml.trust import majority_baseline, trust_warnings


def _truth(val_labels: Sequence, labels: Sequence[str], multi: bool) -> list:
    """Validation targets as the intervals take them: class ids, or 0/1 rows for multi-label."""
    if multi:
        return [[int(label in set(s)) for label in labels] for s in val_labels]
    index = {label: i for i, label in enumerate(labels)}
    return [index[v] for v in val_labels]


def _tfidf(texts, labels_of, result, truth, labels, multi: bool) -> tuple[dict, dict]:
    """The TF-IDF baseline's record (without its predictions) and how the model compares to it."""
    split, config = result.split, result.config
    baseline = tfidf_baseline([texts[i] for i in split.train_idx], [labels_of[i] for i in split.train_idx],
                              [texts[i] for i in split.val_idx], [labels_of[i] for i in split.val_idx], labels,
                              class_weights=config.class_weights, multi_label=multi)
    try:
        comparison = compare_to_baseline(truth, result.val_predictions, baseline, len(labels), config.select_metric)
    except Exception as exc:  # noqa: BLE001 - a baseline never fails the training job
        comparison = {"clearly_better": None, "line": f"no comparison with the TF-IDF baseline: {exc}"[:300]}
    record = {k: v for k, v in baseline.items() if k not in ("predictions", "metrics")}
    if "metrics" in baseline:
        record["per_class"] = baseline["metrics"].get("per_class")
    return record, comparison


def _calibration(result, truth) -> dict | None:
    """Single-label: the fitted temperature, ECE and NLL before/after, reliability bins; None for multi-label."""
    if result.config.multi_label or not result.val_logits:
        return None
    return calibrate(result.val_logits, truth)


def score_card(texts: Sequence[str], labels_of: Sequence, result) -> dict:
    """The record to store beside a ``TrainResult``'s metrics (see the module doc); ``texts``/``labels_of`` are
    the documents the result was trained on, in the order its split indexes."""
    split, multi = result.split, result.config.multi_label
    labels = list(result.label_map.labels)
    train_labels = [labels_of[i] for i in split.train_idx]
    val_labels = [labels_of[i] for i in split.val_idx]
    truth = _truth(val_labels, labels, multi)
    intervals = score_intervals(truth, result.val_predictions, len(labels), seed=result.config.seed)
    majority = majority_baseline(train_labels, val_labels, labels)
    warnings = trust_warnings({**result.metrics, "intervals": intervals}, majority, val_labels)
    tfidf, comparison = _tfidf(texts, labels_of, result, truth, labels, multi)
    return {"majority_baseline": majority, "intervals": intervals, "trust_warnings": warnings,
            "tfidf_baseline": tfidf, "tfidf_comparison": comparison, "calibration": _calibration(result, truth)}


def temperature_of(card: dict) -> float | None:
    """The temperature to store in the artifact's metadata (None: no calibration, scores as they are)."""
    calibration = card.get("calibration")
    return calibration["temperature"] if calibration else None
