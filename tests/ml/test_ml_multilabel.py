"""Multi-label collections: label sets, a sigmoid head, a threshold per label tuned on validation, per-label
metrics, and predictions that carry every label above its threshold."""
from __future__ import annotations

import pytest

from helpers import topic_corpus
from worker.ml.errors import InvalidTrainingData
from worker.ml.metrics import multilabel_metrics, tune_thresholds


def test_thresholds_are_tuned_per_label_to_the_best_f1():
    y = [[1, 0], [1, 0], [0, 1], [0, 0]]
    probs = [[0.30, 0.9], [0.35, 0.1], [0.10, 0.7], [0.05, 0.2]]

    thresholds = tune_thresholds(y, probs, min_positives=1)

    assert 0.10 < thresholds[0] <= 0.30  # both positives at 0.30 and 0.35, the negatives at or below 0.10
    assert 0.20 < thresholds[1] <= 0.70


def test_a_label_that_never_occurs_keeps_the_default_threshold():
    assert tune_thresholds([[0, 1], [0, 1]], [[0.9, 0.8], [0.1, 0.7]])[0] == 0.5


def test_a_label_with_too_few_validation_positives_keeps_the_default_threshold():
    y = [[1], [0], [0], [0]]
    probs = [[0.2], [0.1], [0.05], [0.1]]

    assert tune_thresholds(y, probs) == [0.5]  # one positive: not enough to fit a threshold to
    assert tune_thresholds(y, probs, min_positives=1)[0] <= 0.2


def test_auto_weights_never_switch_off_a_label_that_every_training_document_carries():
    from worker.ml.config import TrainConfig
    from worker.ml.labels import LabelMap
    from worker.ml.train import class_weights

    config = TrainConfig(base_model="m", multi_label=True, class_weights="auto")
    weights = class_weights(config, LabelMap(("all", "some")), [[1, 1], [1, 0], [1, 0], [1, 0]])

    assert weights == {"all": 1.0, "some": 3.0}


def test_multilabel_metrics_count_exact_matches_and_per_label_scores():
    y = [[1, 0], [1, 1], [0, 1]]
    probs = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.9]]

    m = multilabel_metrics(y, probs, ["a", "b"], [0.5, 0.5])

    assert m["accuracy"] == pytest.approx(2 / 3)  # the second row misses b
    assert m["per_class"]["a"]["f1"] == 1.0
    assert m["per_class"]["b"]["recall"] == 0.5 and m["per_class"]["b"]["precision"] == 1.0
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # tp 3, fp 0, fn 1
    assert m["thresholds"] == {"a": 0.5, "b": 0.5} and m["multi_label"] is True


def test_a_multilabel_set_needs_a_label_set_per_document_and_two_documents_per_label():
    from worker.ml.preflight import validate_multilabel_set

    with pytest.raises(InvalidTrainingData, match="non-empty list of labels"):
        validate_multilabel_set(["a", "b"], [["x"], []])
    with pytest.raises(InvalidTrainingData, match="single document cannot be validated: 'z'"):
        validate_multilabel_set(["a", "b", "c"], [["x", "y"], ["x", "y"], ["z"]])
    with pytest.raises(InvalidTrainingData, match="only 1 distinct label"):
        validate_multilabel_set(["a", "b"], [["x"], ["x"]])


@pytest.mark.slow
def test_a_multilabel_model_learns_label_sets_and_predicts_every_label_above_its_threshold(tiny_base_model, tmp_path):
    torch = pytest.importorskip("torch")
    from worker.ml.artifact import save_artifact
    from worker.ml.config import TrainConfig
    from worker.ml.predict import Classifier
    from worker.ml.train import fine_tune

    texts, label_sets = topic_corpus(120)
    config = TrainConfig(base_model=tiny_base_model, epochs=8, batch_size=8, learning_rate=3e-3, seed=42,
                         device="cpu", multi_label=True, class_weights="auto")

    result = fine_tune(texts, label_sets, config)

    assert result.model.config.problem_type == "multi_label_classification"
    assert result.label_map.labels == ("action", "comedy", "romance")
    assert result.label_counts == {"action": 60, "comedy": 60, "romance": 60}
    assert set(result.thresholds) == {"action", "comedy", "romance"}
    assert result.metrics["macro_f1"] >= 0.85 and set(result.metrics["per_class"]) == set(result.thresholds)
    assert result.class_weights == pytest.approx({"action": 1.0, "comedy": 1.0, "romance": 1.0}, abs=0.2)

    meta = {**result.inference_metadata()}
    assert meta["multi_label"] is True and meta["thresholds"] == result.thresholds
    sha = save_artifact(result.model, result.tokenizer, meta, tmp_path / "topics")
    classifier = Classifier.from_artifact(tmp_path / "topics", sha256=sha, device="cpu")
    new_texts, gold = topic_corpus(150)
    predictions = classifier.predict(new_texts[120:])
    exact = sum(sorted(p.labels) == sorted(g) for p, g in zip(predictions, gold[120:]))
    assert exact >= 24  # of 30
    assert sum(len(p.labels) for p in predictions) >= 24
    for p in predictions:
        assert all(p.scores[label] >= result.thresholds[label] for label in p.labels)
        assert p.label == (p.labels[0] if p.labels else None)
        assert not torch.isclose(torch.tensor(sum(p.scores.values())), torch.tensor(1.0))  # sigmoid, not softmax
