"""The TF-IDF + logistic-regression baseline: real fits on small corpora, the job's class weights, multi-label
one-vs-rest, an error instead of an exception, and the one-line verdict against a model."""
from __future__ import annotations

import json

import pytest

from helpers import sentiment_corpus, topic_corpus
from worker.ml.baseline import compare_to_baseline, tfidf_baseline

LABELS = ["neg", "pos"]


def test_a_separable_corpus_is_learned_and_scored_with_the_projects_metrics():
    texts, labels = sentiment_corpus(160)
    train_texts, train_labels = texts[:120], labels[:120]
    val_texts, val_labels = texts[120:], labels[120:]

    result = tfidf_baseline(train_texts, train_labels, val_texts, val_labels, LABELS)

    assert result["method"] == "tfidf+logreg" and result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["metrics"]["confusion_matrix"] == [[20, 0], [0, 20]]
    assert result["predictions"] == [LABELS.index(v) for v in val_labels]
    assert 0 < result["fit_seconds"] < 30
    json.dumps(result)


def test_class_weights_follow_the_job_and_move_the_decision():
    # "good film" is pos 20 times and neg 4 times: unweighted it is pos; neg weighted 10x it is neg
    train = ["good film"] * 24 + ["bad film"] * 10
    train_labels = ["pos"] * 20 + ["neg"] * 14
    val, val_labels = ["good film", "bad film"], ["pos", "neg"]

    plain = tfidf_baseline(train, train_labels, val, val_labels, LABELS)
    weighted = tfidf_baseline(train, train_labels, val, val_labels, LABELS, class_weights={"neg": 10.0})
    auto = tfidf_baseline(train, train_labels, val, val_labels, LABELS, class_weights="auto")

    assert plain["predictions"] == [1, 0]
    assert weighted["predictions"] == [0, 0]
    assert "error" not in auto and len(auto["predictions"]) == 2


def test_multilabel_is_one_vs_rest_with_a_threshold_per_label():
    texts, label_sets = topic_corpus(120)
    labels = ["action", "comedy", "romance"]

    result = tfidf_baseline(texts[:90], label_sets[:90], texts[90:], label_sets[90:], labels, multi_label=True,
                            class_weights="auto")

    assert result["metrics"]["multi_label"] is True and set(result["metrics"]["thresholds"]) == set(labels)
    assert result["macro_f1"] > 0.9
    assert len(result["predictions"]) == 30
    assert all(len(row) == 3 and set(row) <= {0, 1} for row in result["predictions"])


def test_a_label_that_training_never_shows_is_predicted_as_absent():
    texts, label_sets = topic_corpus(60)
    result = tfidf_baseline(texts, label_sets, texts[:6], label_sets[:6], ["action", "comedy", "horror", "romance"],
                            multi_label=True)

    assert "error" not in result and len(result["predictions"]) == 6
    assert all(row[2] == 0 for row in result["predictions"])


def test_one_training_class_predicts_that_class():
    result = tfidf_baseline(["good", "great"], ["pos", "pos"], ["bad"], ["neg"], LABELS)

    assert result["predictions"] == [1] and result["accuracy"] == 0.0


def test_a_failure_is_returned_not_raised():
    empty = tfidf_baseline(["", " "], ["pos", "neg"], ["x"], ["pos"], LABELS)  # no vocabulary at all
    unknown = tfidf_baseline(["good", "bad"], ["pos", "meh"], ["x"], ["pos"], LABELS)  # a label not in LABELS

    assert set(empty) == {"method", "error"} and "vocabulary" in empty["error"]
    assert unknown["error"].startswith("KeyError")


def baseline_with(predictions, truth):
    from worker.ml.intervals import point_scores

    return {"method": "tfidf+logreg", **point_scores(truth, predictions, 2), "predictions": predictions,
            "fit_seconds": 1.5}


def test_the_verdict_says_clearly_better_only_when_the_paired_interval_is_above_zero():
    truth = [i % 2 for i in range(600)]
    model = [t if i % 10 else 1 - t for i, t in enumerate(truth)]  # 90% (errors on class 0)
    weak = baseline_with([t if i % 4 else 1 - t for i, t in enumerate(truth)], truth)  # 75% (errors on class 0)
    close = baseline_with([1 - t if i == 1 else p for i, (t, p) in enumerate(zip(truth, model))], truth)

    better = compare_to_baseline(truth, model, weak, 2)
    tie = compare_to_baseline(truth, model, close, 2)

    assert better["clearly_better"] is True and better["low"] > 0.1
    assert better["line"].startswith("the model is clearly better than TF-IDF+LR: macro-F1 0.899 vs 0.733 (+0.166")
    assert tie["clearly_better"] is False and tie["line"].startswith("the model is not clearly better than TF-IDF+LR")
    assert "fitted in 1.5 s" in tie["line"]


def test_a_failed_baseline_gives_no_verdict():
    verdict = compare_to_baseline([0], [0], {"method": "tfidf+logreg", "error": "ValueError: boom"}, 2)

    assert verdict["clearly_better"] is None and verdict["line"] == "no TF-IDF+LR baseline (ValueError: boom)"


@pytest.mark.parametrize("weights", [None, "auto", {"pos": 2.0}])
def test_every_kind_of_class_weight_fits(weights):
    texts, labels = sentiment_corpus(40)
    assert "error" not in tfidf_baseline(texts, labels, texts, labels, LABELS, class_weights=weights)
