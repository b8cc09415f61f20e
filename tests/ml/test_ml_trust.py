"""The majority-class baseline and the warnings a model version carries when it is not clearly better than
that baseline or its validation split is too small to say."""
from __future__ import annotations

import pytest

from worker.ml.intervals import score_intervals
from worker.ml.metrics import classification_metrics
from worker.ml.trust import majority_baseline, trust_warnings

LABELS = ["neg", "pos"]


def test_the_baseline_always_predicts_the_most_frequent_training_label():
    baseline = majority_baseline(["pos", "pos", "pos", "neg"], ["pos", "neg", "neg"], LABELS)

    # always pos on (pos, neg, neg): accuracy 1/3; pos: precision 1/3, recall 1, F1 1/2; neg: F1 0
    assert baseline == {"label": "pos", "accuracy": pytest.approx(1 / 3), "macro_f1": pytest.approx(0.25)}


def test_equal_training_counts_go_to_the_first_label():
    assert majority_baseline(["pos", "neg"], ["pos"], LABELS)["label"] == "neg"


def test_the_multilabel_baseline_always_predicts_the_most_frequent_label_set():
    train = [["a"], ["a", "b"], ["b", "a"], ["c"]]
    baseline = majority_baseline(train, [["a", "b"], ["a"], ["c"]], ["a", "b", "c"])

    # always {a, b}: exact match 1/3; a: tp 2 fp 1 -> F1 0.8; b: tp 1 fp 2 -> F1 0.5; c: 0
    assert baseline["label"] == ["a", "b"]
    assert baseline["accuracy"] == pytest.approx(1 / 3)
    assert baseline["macro_f1"] == pytest.approx((0.8 + 0.5 + 0) / 3)


def test_the_baseline_needs_training_labels():
    with pytest.raises(ValueError):
        majority_baseline([], ["pos"], LABELS)


def one_class_model(n: int = 1000, positives: int = 588) -> tuple[dict, dict, list[str]]:
    """The issue's model: predicts 'pos' for everything on a 58.8% positive validation split."""
    val = ["pos"] * positives + ["neg"] * (n - positives)
    metrics = classification_metrics([1] * positives + [0] * (n - positives), [1] * n, LABELS)
    return metrics, majority_baseline(["pos"] * 3 + ["neg"] * 2, val, LABELS), val


def test_a_model_that_predicts_one_class_is_flagged_against_the_baseline_and_for_the_class_it_never_predicts():
    metrics, baseline, val = one_class_model()

    warnings = trust_warnings(metrics, baseline, val)

    assert metrics["macro_f1"] == pytest.approx(0.370, abs=1e-3)
    assert warnings[0].startswith("macro-F1 0.370 is not clearly above the majority-class baseline 0.370")
    assert "always 'pos'" in warnings[0]
    assert warnings[1] == "never predicts 'neg' on the validation split"
    assert len(warnings) == 2


def test_a_good_model_on_a_large_split_has_nothing_to_say():
    truth = [i % 2 for i in range(400)]
    predicted = [t if i % 10 else 1 - t for i, t in enumerate(truth)]  # 90% right
    metrics = classification_metrics(truth, predicted, LABELS)
    val = [LABELS[t] for t in truth]
    baseline = majority_baseline(["pos", "pos", "neg"], val, LABELS)

    assert trust_warnings(metrics, baseline, val) == []


@pytest.mark.parametrize("found, flagged", [(2, True), (10, False)])
def test_a_model_barely_above_the_baseline_is_flagged_by_its_interval(found, flagged):
    truth = [1] * 70 + [0] * 30
    predicted = [1] * 70 + [0] * found + [1] * (30 - found)  # 2 negatives found: macro-F1 0.48 against 0.41
    metrics = classification_metrics(truth, predicted, LABELS)
    metrics["intervals"] = score_intervals(truth, predicted, 2)
    val = [LABELS[t] for t in truth]
    baseline = majority_baseline(["pos"] * 7 + ["neg"] * 3, val, LABELS)

    warnings = trust_warnings(metrics, baseline, val)

    assert metrics["macro_f1"] > baseline["macro_f1"] + 0.05
    assert any("not clearly above" in w and "95% interval" in w for w in warnings) is flagged


def test_the_interval_passed_in_decides_over_the_normal_approximation():
    metrics, baseline, val = one_class_model()
    metrics = {**metrics, "macro_f1": 0.6, "confusion_matrix": None}
    baseline = {**baseline, "macro_f1": 0.55}

    assert trust_warnings(metrics, baseline, val) == []  # 1,000 texts: +-0.03 by the normal approximation
    assert trust_warnings(metrics, baseline, val, interval={"low": 0.50, "high": 0.70}) == [
        "macro-F1 0.600 is not clearly above the majority-class baseline 0.550 (always 'pos'; "
        "95% interval 0.500-0.700)"]


def test_small_validation_splits_and_rare_classes_are_flagged():
    truth = [1] * 40 + [0] * 3
    metrics = classification_metrics(truth, truth, LABELS)
    val = [LABELS[t] for t in truth]
    baseline = majority_baseline(["pos", "neg", "pos"], val, LABELS)

    warnings = trust_warnings(metrics, baseline, val)

    assert "validation split of 43 texts is too small to judge this model (fewer than 50)" in warnings
    assert "fewer than 5 validation texts for 'neg' (3): their scores are noise" in warnings


def test_multilabel_validation_counts_texts_per_label():
    val = [["a"]] * 60 + [["a", "b"]] * 2
    metrics = {"macro_f1": 0.9, "support": 62, "labels": ["a", "b"]}

    warnings = trust_warnings(metrics, {"label": ["a"], "macro_f1": 0.5}, val)

    assert warnings == ["fewer than 5 validation texts for 'b' (2): their scores are noise"]
