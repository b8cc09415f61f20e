"""fine_tune on a tiny random BERT: the loop, its callbacks, its result, and that it learns."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers import train_with_scripted_scores  # noqa: E402
from worker.ml.config import TrainConfig  # noqa: E402
from worker.ml.errors import Cancelled, InvalidTrainingData, ModelNotFound  # noqa: E402
from worker.ml.split import split_without_leaks  # noqa: E402
from worker.ml.train import Callbacks, fine_tune  # noqa: E402


def test_history_has_one_record_per_epoch_with_losses_and_scores(training_run):
    history = training_run.result.history

    assert [record["epoch"] for record in history] == list(range(1, training_run.config.epochs + 1))
    for record in history:
        assert {"epoch", "train_loss", "val_loss", "accuracy", "macro_f1", "seconds"} <= set(record)
        assert record["train_loss"] > 0 and record["val_loss"] > 0


def test_on_epoch_receives_the_same_records_as_the_history(training_run):
    assert training_run.epochs == training_run.result.history


def test_the_model_learns_a_separable_task(training_run):
    result = training_run.result

    assert result.metrics["accuracy"] >= 0.9
    assert result.metrics["macro_f1"] >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_metrics_are_the_best_epochs_with_a_confusion_matrix_over_the_validation_set(training_run):
    result = training_run.result
    metrics = result.metrics

    assert {"accuracy", "macro_f1", "confusion_matrix", "per_class", "best_epoch"} <= set(metrics)
    assert metrics["best_epoch"] == result.best_epoch
    best = result.history[result.best_epoch - 1]
    assert metrics["macro_f1"] == best["macro_f1"]  # select_metric defaults to macro_f1
    assert best["macro_f1"] == max(record["macro_f1"] for record in result.history)
    assert sum(map(sum, metrics["confusion_matrix"])) == result.val_size


def test_labels_are_sorted_in_the_label_map_and_in_the_model_config(training_run):
    result = training_run.result

    assert training_run.labels[0] == "pos"  # first seen, yet sorted after "neg"
    assert result.label_map.labels == ("neg", "pos")
    assert result.model.config.id2label == {0: "neg", 1: "pos"}
    assert result.model.config.label2id == {"neg": 0, "pos": 1}
    assert result.label_counts == {"neg": 80, "pos": 80}


def test_train_and_validation_sizes_follow_the_split(training_run):
    result = training_run.result

    assert result.train_size + result.val_size == len(training_run.texts)
    assert result.val_size == 32  # 20% of 80 per class
    assert result.max_length == 128


def test_on_step_counts_up_one_by_one_to_the_announced_total(training_run):
    steps = training_run.steps
    total = training_run.config.epochs * -(-training_run.result.train_size // 8)  # epochs * ceil(train / batch)

    assert [done for done, _ in steps] == list(range(1, total + 1))
    assert {announced for _, announced in steps} == {total}


def test_the_trained_model_is_returned_on_cpu_in_eval_mode(training_run):
    model = training_run.result.model

    assert not model.training
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_max_length_is_capped_by_the_tokenizer(tiny_base_model):
    texts, labels = ["good movie", "bad movie", "good film", "bad film"], ["pos", "neg"] * 2
    config = TrainConfig(base_model=tiny_base_model, epochs=1, batch_size=4, max_length=4096, device="cpu")

    result = fine_tune(texts, labels, config)

    assert result.max_length == 128  # the tokenizer's model_max_length


def test_unset_epochs_are_decided_from_the_sets_size_where_training_is_prepared(tiny_base_model, sentiment_data):
    """160 documents at batch 64: 2 steps an epoch, so unset epochs are the cap, 10; the result's configuration
    and history say so, and the step total announced counts them."""
    texts, labels = sentiment_data
    steps = []
    config = TrainConfig(base_model=tiny_base_model, batch_size=64, max_length=16, device="cpu")

    result = fine_tune(texts, labels, config, Callbacks(on_step=lambda done, total: steps.append(total)))

    assert config.epochs is None and result.config.epochs == 10 and len(result.history) == 10
    assert set(steps) == {20}


def test_should_stop_returning_true_cancels_before_the_first_step(tiny_base_model, sentiment_data):
    texts, labels = sentiment_data
    steps = []
    config = TrainConfig(base_model=tiny_base_model, epochs=2, batch_size=8, device="cpu")

    with pytest.raises(Cancelled):
        fine_tune(texts, labels, config, Callbacks(on_step=lambda d, t: steps.append(d), should_stop=lambda: True))

    assert steps == []


def test_should_stop_is_asked_before_every_step_and_cancels_mid_epoch(tiny_base_model, sentiment_data):
    texts, labels = sentiment_data
    steps = []
    config = TrainConfig(base_model=tiny_base_model, epochs=2, batch_size=8, device="cpu")

    with pytest.raises(Cancelled):
        fine_tune(texts, labels, config, Callbacks(on_step=lambda d, t: steps.append(d),
                                                   should_stop=lambda: len(steps) >= 3))

    assert steps == [1, 2, 3]


def test_an_invalid_training_set_is_refused_before_the_base_model_is_looked_up(tmp_path):
    config = TrainConfig(base_model=str(tmp_path / "missing"), device="cpu")

    with pytest.raises(InvalidTrainingData, match="only one class"):
        fine_tune(["a", "b"], ["x", "x"], config)


def test_a_missing_base_model_is_model_not_found(tmp_path):
    config = TrainConfig(base_model=str(tmp_path / "missing"), device="cpu")

    with pytest.raises(ModelNotFound):
        fine_tune(["a", "b", "c", "d"], ["x", "y", "x", "y"], config)


def test_an_invalid_config_is_refused_even_when_built_directly(tiny_base_model):
    config = TrainConfig(base_model=tiny_base_model, epochs=0)

    with pytest.raises(InvalidTrainingData, match="epochs"):
        fine_tune(["a", "b", "c", "d"], ["x", "y", "x", "y"], config)


@pytest.mark.slow
def test_the_returned_model_is_the_best_epochs_model_not_the_last(tiny_base_model, sentiment_data):
    # The real evaluation, with the selection score scripted to peak at epoch 1 while the loss keeps moving.
    from worker.ml.validation import validation_metrics

    texts, labels = sentiment_data
    config = TrainConfig(base_model=tiny_base_model, epochs=3, batch_size=8, learning_rate=5e-3, seed=3,
                         device="cpu")

    result = train_with_scripted_scores(texts, labels, config, [0.9, 0.5, 0.4])

    assert result.best_epoch == 1 and result.metrics["macro_f1"] == 0.9
    losses = [record["val_loss"] for record in result.history]
    assert abs(losses[0] - losses[-1]) > 1e-4, "the loss must move for this test to tell the epochs apart"
    _, val_idx, _ = split_without_leaks(texts, labels, config.val_fraction, config.seed)
    ids = result.tokenizer([texts[i] for i in val_idx])["input_ids"]
    y = result.label_map.encode([labels[i] for i in val_idx])
    again = validation_metrics(result.model, ids, y, result.label_map, result.tokenizer.pad_token_id,
                               torch.device("cpu"), "fp32")
    assert again["loss"] == pytest.approx(losses[0], abs=1e-5)


@pytest.mark.slow
def test_three_classes_get_three_outputs_in_sorted_label_order(tiny_base_model):
    words = {"zebra": "stripes", "apple": "fruit", "mango": "tropical"}
    texts = [f"{w} {w} number {i}" for w in words.values() for i in range(6)]
    labels = [label for label in words for _ in range(6)]
    config = TrainConfig(base_model=tiny_base_model, epochs=1, batch_size=6, device="cpu")

    result = fine_tune(texts, labels, config)

    assert result.label_map.labels == ("apple", "mango", "zebra")
    assert result.model.config.num_labels == 3
    assert len(result.metrics["confusion_matrix"]) == 3
