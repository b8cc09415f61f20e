"""Bootstrap intervals of validation scores: the point values match the metrics, the bounds are seeded, and
paired differences tell a one-document change from a real one."""
from __future__ import annotations

import random

import pytest

from worker.ml.intervals import paired_difference, point_scores, score_intervals, wilson_interval
from worker.ml.metrics import classification_metrics, multilabel_metrics


def noisy_predictions(n: int, classes: int, accuracy: float, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    truth = [rng.randrange(classes) for _ in range(n)]
    return truth, [t if rng.random() < accuracy else rng.randrange(classes) for t in truth]


def test_point_scores_match_the_metrics_including_a_label_that_never_occurs():
    truth, predicted = noisy_predictions(300, 3, 0.7, seed=1)
    labels = ["a", "b", "c", "unused"]
    expected = classification_metrics(truth, predicted, labels)

    scores = point_scores(truth, predicted, len(labels))

    assert scores["accuracy"] == pytest.approx(expected["accuracy"])
    assert scores["macro_f1"] == pytest.approx(expected["macro_f1"])  # the unused label counts as F1 0


def test_multilabel_rows_score_as_exact_match_and_per_label_f1():
    truth = [[1, 0], [1, 1], [0, 1], [0, 0]]
    predicted = [[1, 0], [1, 0], [0, 1], [1, 0]]
    expected = multilabel_metrics(truth, predicted, ["a", "b"], [0.5, 0.5])

    scores = point_scores(truth, predicted, 2)

    assert scores["accuracy"] == pytest.approx(expected["accuracy"]) == 0.5
    assert scores["macro_f1"] == pytest.approx(expected["macro_f1"])


def test_the_interval_holds_the_value_and_is_the_same_for_the_same_seed():
    truth, predicted = noisy_predictions(500, 2, 0.8, seed=2)

    first = score_intervals(truth, predicted, 2, seed=3)
    again = score_intervals(truth, predicted, 2, seed=3)
    other = score_intervals(truth, predicted, 2, seed=4)

    assert first == again
    assert first["macro_f1"] != other["macro_f1"]
    for metric in ("accuracy", "macro_f1"):
        assert first[metric]["low"] < first[metric]["value"] < first[metric]["high"]


def test_bootstrap_accuracy_bounds_agree_with_the_wilson_interval():
    truth, predicted = noisy_predictions(2000, 2, 0.8, seed=5)
    correct = sum(t == p for t, p in zip(truth, predicted))

    bootstrap = score_intervals(truth, predicted, 2)["accuracy"]
    low, high = wilson_interval(correct, len(truth))

    assert bootstrap["low"] == pytest.approx(low, abs=0.005)
    assert bootstrap["high"] == pytest.approx(high, abs=0.005)


def test_the_interval_narrows_with_more_validation_texts():
    small = score_intervals(*noisy_predictions(100, 2, 0.8, seed=6), 2)["macro_f1"]
    large = score_intervals(*noisy_predictions(2500, 2, 0.8, seed=6), 2)["macro_f1"]

    assert (large["high"] - large["low"]) < (small["high"] - small["low"]) / 3


def test_perfect_predictions_have_a_point_interval_and_no_texts_have_the_whole_range():
    perfect = score_intervals([0, 1, 1, 0], [0, 1, 1, 0], 2)
    empty = score_intervals([], [], 2)

    assert perfect["accuracy"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert empty["macro_f1"] == {"value": 0.0, "low": 0.0, "high": 1.0}


def test_wilson_interval_matches_the_textbook_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_one_document_apart_is_a_tie_and_a_hundred_are_not():
    truth, a = noisy_predictions(1000, 2, 0.85, seed=7)
    one_off = list(a)
    one_off[0] = 1 - truth[0] if a[0] == truth[0] else truth[0]
    worse = [1 - t if i < 100 and p == t else p for i, (t, p) in enumerate(zip(truth, a))]

    tie = paired_difference(truth, a, one_off, 2)
    clear = paired_difference(truth, a, worse, 2)

    assert tie["low"] <= 0 <= tie["high"] and abs(tie["difference"]) < 0.003
    assert clear["low"] > 0.05 and clear["difference"] == pytest.approx(
        point_scores(truth, a, 2)["macro_f1"] - point_scores(truth, worse, 2)["macro_f1"])


def test_identical_predictions_differ_by_exactly_zero():
    truth, a = noisy_predictions(200, 3, 0.6, seed=8)

    assert paired_difference(truth, a, a, 3, metric="accuracy") == {"difference": 0.0, "low": 0.0, "high": 0.0}
