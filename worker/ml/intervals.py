"""Confidence intervals for validation scores: a seeded bootstrap over the validation texts.

Two models scored on the same texts are compared *paired*: every resample draws the same texts for both, so
the interval of their difference is much narrower than the two intervals side by side (their predictions
agree on most texts). Predictions are class ids (single-label) or 0/1 rows (multi-label); the scores match
``worker.ml.metrics`` (accuracy, or exact match for multi-label; macro-F1 over all labels, 0 for a label
with no true and no predicted text).
"""
from __future__ import annotations

from statistics import NormalDist
from typing import Sequence

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95
METRICS = ("accuracy", "macro_f1")
_CHUNK = 100  # resamples per block: memory is _CHUNK x texts counts


def _indicators(y, n_labels: int) -> np.ndarray:
    """(texts, labels) booleans: one-hot rows for class ids, the rows themselves for multi-label 0/1 rows."""
    arr = np.asarray(y)
    if arr.ndim == 2:
        return arr.astype(bool)
    out = np.zeros((len(arr), n_labels), dtype=bool)
    out[np.arange(len(arr)), arr.astype(int)] = True
    return out


def _scores(weights: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 for each row of ``weights`` (how often each text is drawn)."""
    exact = (truth == predicted).all(axis=1).astype(float)
    tp = weights @ (truth & predicted).astype(float)
    fp = weights @ (~truth & predicted).astype(float)
    fn = weights @ (truth & ~predicted).astype(float)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return {"accuracy": weights @ exact / weights.sum(axis=1), "macro_f1": f1.mean(axis=1)}


def _resample_weights(n: int, resamples: int, seed: int):
    """Blocks of draw counts: row r says how often each of the ``n`` texts is in resample r."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, _CHUNK):
        rows = min(_CHUNK, resamples - start)
        drawn = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        yield np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n).astype(float)


def bootstrap_scores(y_true, predictions: Sequence, n_labels: int, resamples: int = RESAMPLES,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """metric -> (resamples, models) scores of each model's predictions on the same resampled texts."""
    truth = _indicators(y_true, n_labels)
    predicted = [_indicators(p, n_labels) for p in predictions]
    blocks: dict[str, list] = {m: [] for m in METRICS}
    for weights in _resample_weights(len(truth), resamples, seed):
        per_model = [_scores(weights, truth, p) for p in predicted]
        for m in METRICS:
            blocks[m].append(np.stack([s[m] for s in per_model], axis=1))
    return {m: np.concatenate(blocks[m]) for m in METRICS}


def point_scores(y_true, y_pred, n_labels: int) -> dict[str, float]:
    """The scores on the texts as they are (no resampling)."""
    truth = _indicators(y_true, n_labels)
    scores = _scores(np.ones((1, len(truth))), truth, _indicators(y_pred, n_labels))
    return {m: float(v[0]) for m, v in scores.items()}


def interval_bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The equal-tailed percentile interval of bootstrap ``values``."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def score_intervals(y_true, y_pred, n_labels: int, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                    seed: int = 0) -> dict:
    """{"accuracy": {"value", "low", "high"}, "macro_f1": {...}, "confidence", "resamples", "method"}."""
    out: dict = {"confidence": confidence, "resamples": resamples, "method": "bootstrap", "seed": seed}
    if len(y_true) == 0:
        return {**out, **{m: {"value": 0.0, "low": 0.0, "high": 1.0} for m in METRICS}}
    values = point_scores(y_true, y_pred, n_labels)
    resampled = bootstrap_scores(y_true, [y_pred], n_labels, resamples, seed)
    for m in METRICS:
        low, high = interval_bounds(resampled[m][:, 0], confidence)
        out[m] = {"value": values[m], "low": low, "high": high}
    return out


def paired_difference(y_true, pred_a, pred_b, n_labels: int, metric: str = "macro_f1",
                      resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """{"difference", "low", "high"}: ``metric`` of A minus that of B, with its paired bootstrap interval."""
    if len(y_true) == 0:
        return {"difference": 0.0, "low": -1.0, "high": 1.0}
    a, b = point_scores(y_true, pred_a, n_labels)[metric], point_scores(y_true, pred_b, n_labels)[metric]
    resampled = bootstrap_scores(y_true, [pred_a, pred_b], n_labels, resamples, seed)[metric]
    low, high = interval_bounds(resampled[:, 0] - resampled[:, 1], confidence)
    return {"difference": a - b, "low": low, "high": high}


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion (accuracy: correct texts of ``n``); (0, 1) for no texts."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)
