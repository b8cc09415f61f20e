"""classification_metrics checked against values computed by hand."""
from __future__ import annotations

import pytest

from worker.ml.metrics import classification_metrics

LABELS = ["a", "b", "c"]
# true a a a a b b c c
# pred a a a b b c c c
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 2, 2, 2]


@pytest.fixture
def metrics():
    return classification_metrics(Y_TRUE, Y_PRED, LABELS)


def test_accuracy_is_the_share_of_correct_predictions(metrics):
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["support"] == 8


def test_confusion_matrix_has_true_labels_as_rows_and_predictions_as_columns(metrics):
    assert metrics["confusion_matrix"] == [
        [3, 1, 0],  # true a: 3 right, 1 predicted b
        [0, 1, 1],  # true b: 1 right, 1 predicted c
        [0, 0, 2],  # true c: both right
    ]


def test_per_class_precision_recall_f1_and_support_match_hand_computation(metrics):
    per_class = metrics["per_class"]
    # a: tp 3, fp 0, fn 1
    assert per_class["a"]["precision"] == pytest.approx(1.0)
    assert per_class["a"]["recall"] == pytest.approx(3 / 4)
    assert per_class["a"]["f1"] == pytest.approx(6 / 7)
    assert per_class["a"]["support"] == 4
    # b: tp 1, fp 1 (a true a), fn 1
    assert per_class["b"]["precision"] == pytest.approx(1 / 2)
    assert per_class["b"]["recall"] == pytest.approx(1 / 2)
    assert per_class["b"]["f1"] == pytest.approx(1 / 2)
    assert per_class["b"]["support"] == 2
    # c: tp 2, fp 1 (a true b), fn 0
    assert per_class["c"]["precision"] == pytest.approx(2 / 3)
    assert per_class["c"]["recall"] == pytest.approx(1.0)
    assert per_class["c"]["f1"] == pytest.approx(4 / 5)
    assert per_class["c"]["support"] == 2


def test_macro_f1_is_the_unweighted_mean_of_the_class_f1s(metrics):
    assert metrics["macro_f1"] == pytest.approx((6 / 7 + 1 / 2 + 4 / 5) / 3)
    assert metrics["labels"] == LABELS


def test_a_class_never_seen_nor_predicted_scores_zero_without_dividing_by_zero():
    metrics = classification_metrics([0, 1], [0, 1], ["a", "b", "unused"])

    assert metrics["per_class"]["unused"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == pytest.approx(2 / 3)


def test_no_examples_give_zero_accuracy_instead_of_an_error():
    metrics = classification_metrics([], [], ["a", "b"])

    assert metrics["accuracy"] == 0.0
    assert metrics["confusion_matrix"] == [[0, 0], [0, 0]]


def test_predictions_and_truths_of_different_lengths_are_refused():
    with pytest.raises(ValueError):
        classification_metrics([0, 1, 1], [0, 1], ["a", "b"])
