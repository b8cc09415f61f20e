"""Refit (worker/ml/refit.py): after the validation split chose the epochs, the same recipe trains again on every
labelled document and that model is kept; the scores, temperature and thresholds stay the selection run's."""
from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from worker.ml.config import TrainConfig  # noqa: E402
from worker.ml.errors import Cancelled, InvalidTrainingData  # noqa: E402
from worker.ml.refit import refit, refit_config  # noqa: E402
from worker.ml.train import Callbacks, fine_tune  # noqa: E402


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_refit_recipe_is_the_selection_runs_for_the_chosen_epochs_without_search_or_early_stopping():
    chosen = TrainConfig(base_model="m", epochs=5, learning_rate=3e-5, seed=3, early_stopping_patience=2, trials=4,
                         search_space={"epochs": [2, 3]}, refit=True)

    again = refit_config(chosen, 2)

    assert (again.epochs, again.early_stopping_patience, again.trials, again.search_space, again.refit) == (
        2, 0, 0, None, False)
    assert (again.learning_rate, again.seed, again.base_model) == (3e-5, 3, "m")


def test_refit_must_be_true_or_false():
    with pytest.raises(InvalidTrainingData, match="refit must be true or false, got 'yes'"):
        TrainConfig.from_dict({"base_model": "m", "refit": "yes"})
    assert TrainConfig.from_dict({"base_model": "m", "refit": True}).refit is True
    assert TrainConfig(base_model="m").refit is True  # on unless turned off (bench/README.md, Quality) ...
    assert TrainConfig(base_model="m", multi_label=True).refit is False  # ... but not for label sets
    assert TrainConfig(base_model="m", multi_label=True, refit=True).refit is True
    assert TrainConfig.from_dict({"base_model": "m", "refit": None}).refit is True


def test_a_refit_trains_every_document_for_the_chosen_epochs_and_keeps_the_selection_runs_scores(training_run):
    selected = training_run.result
    before = _weights(selected.model)

    result = refit(training_run.texts, training_run.labels, selected)

    assert result.refit["epochs"] == selected.best_epoch
    assert result.refit["train_size"] == len(training_run.texts) > selected.train_size
    assert [h["epoch"] for h in result.refit["history"]] == list(range(1, selected.best_epoch + 1))
    assert all("val_loss" not in h and "accuracy" not in h for h in result.refit["history"])  # nothing to score on
    assert result.metrics is selected.metrics and result.history is selected.history
    assert result.val_logits is selected.val_logits and result.split is selected.split
    assert result.label_map == selected.label_map and result.config is selected.config
    assert result.model is not selected.model and not _same(_weights(result.model), before)
    assert _same(_weights(selected.model), before)  # the selection run's model is left as it was
    alone = fine_tune(training_run.texts, training_run.labels, refit_config(selected.config, selected.best_epoch),
                      all_data=True)
    assert _same(_weights(result.model), _weights(alone.model))  # the refit model itself, not an average
    assert not result.model.training
    with torch.no_grad():  # it learned the separable task it was trained on
        encoded = result.tokenizer(training_run.texts, padding=True, return_tensors="pt")
        predicted = result.model(**encoded).logits.argmax(-1).tolist()
    gold = result.label_map.encode(training_run.labels)
    assert sum(p == g for p, g in zip(predicted, gold)) / len(gold) >= 0.9


@pytest.mark.slow
def test_an_interrupted_refit_resumes_from_its_checkpoint_and_ends_with_the_same_weights(training_run, tmp_path):
    selected = replace(training_run.result, best_epoch=3)
    straight = refit(training_run.texts, training_run.labels, selected)
    seen: list = []
    stop = Callbacks(on_epoch=seen.append, should_stop=lambda: len(seen) >= 1)

    with pytest.raises(Cancelled):
        refit(training_run.texts, training_run.labels, selected, stop, checkpoint_dir=tmp_path)
    resumed = refit(training_run.texts, training_run.labels, selected, checkpoint_dir=tmp_path)

    assert resumed.refit["resumed_from_epoch"] == 1 and straight.refit["resumed_from_epoch"] is None
    assert _same(_weights(resumed.model), _weights(straight.model))


def test_a_multilabel_refit_keeps_the_thresholds_tuned_on_validation(tiny_base_model):
    from helpers import topic_corpus

    texts, label_sets = topic_corpus(60)
    config = TrainConfig(base_model=tiny_base_model, epochs=2, batch_size=8, learning_rate=3e-3, seed=42,
                         device="cpu", multi_label=True)
    selected = fine_tune(texts, label_sets, config)

    result = refit(texts, label_sets, selected)

    assert result.refit["train_size"] == 60 and result.thresholds == selected.thresholds is not None
    assert result.inference_metadata() == selected.inference_metadata()  # thresholds, labels, windows, multi_label
    assert result.model.config.problem_type == "multi_label_classification"
