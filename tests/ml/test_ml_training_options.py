"""Training options beyond the basic loop: leak-free validation, class weights, gradient accumulation, schedules,
early stopping, long-document windows, hyperparameter search and reproducibility. Tiny random BERT, CPU."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers import late_sentiment, sentiment_corpus, train_with_scripted_scores  # noqa: E402
from worker.ml.config import TrainConfig  # noqa: E402
from worker.ml.errors import InvalidTrainingData  # noqa: E402
from worker.ml.search import search  # noqa: E402
from worker.ml.train import Callbacks, fine_tune, prepare  # noqa: E402


def _config(base, **overrides) -> TrainConfig:
    values = dict(base_model=base, epochs=4, batch_size=8, learning_rate=3e-3, seed=42, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.slow
def test_validation_texts_that_training_also_has_are_left_out_of_validation(tiny_base_model):
    texts, labels = sentiment_corpus(80)
    texts, labels = texts + texts[:20], labels + labels[:20]  # 20 exact duplicates
    seen = []

    result = fine_tune(texts, labels, _config(tiny_base_model, epochs=1),
                       Callbacks(on_epoch=seen.append))

    assert result.validation_removed > 0
    assert result.val_size == round(0.2 * 50) * 2 - result.validation_removed
    assert sum(result.metrics["confusion_matrix"][0]) + sum(result.metrics["confusion_matrix"][1]) == result.val_size


def test_a_set_whose_validation_is_all_leaked_is_refused(tiny_base_model):
    texts, labels = ["same good text", "same bad text"] * 10, ["pos", "neg"] * 10

    with pytest.raises(InvalidTrainingData, match="validation texts also appear in training"):
        fine_tune(texts, labels, _config(tiny_base_model, epochs=1))


@pytest.mark.slow
def test_auto_class_weights_are_inverse_class_frequency_over_the_training_split(tiny_base_model):
    texts, labels = sentiment_corpus(160)
    keep = [i for i, label in enumerate(labels) if label == "pos" or i % 8 == 1]  # 80 pos, 20 neg
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]

    result = fine_tune(texts, labels, _config(tiny_base_model, epochs=1, class_weights="auto"))

    n_pos, n_neg = 64, 16  # the training split of 80 and 20
    assert result.class_weights == pytest.approx({"neg": 80 / (2 * n_neg), "pos": 80 / (2 * n_pos)})


def test_given_class_weights_fill_in_one_for_unnamed_labels_and_refuse_unknown_ones(tiny_base_model):
    texts, labels = sentiment_corpus(40)

    result = fine_tune(texts, labels, _config(tiny_base_model, epochs=1, class_weights={"neg": 3.0}))
    assert result.class_weights == {"neg": 3.0, "pos": 1.0}

    with pytest.raises(InvalidTrainingData, match="not in the data: neutral"):
        fine_tune(texts, labels, _config(tiny_base_model, epochs=1, class_weights={"neutral": 2.0}))


@pytest.mark.slow
def test_weighting_a_class_heavily_tilts_predictions_towards_it(tiny_base_model):
    texts, labels = sentiment_corpus(80)
    config = dict(epochs=3, learning_rate=1e-3)
    plain = fine_tune(texts, labels, _config(tiny_base_model, **config))
    tilted = fine_tune(texts, labels, _config(tiny_base_model, **config, class_weights={"neg": 100.0}))

    def mean_neg_probability(result) -> float:
        enc = result.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            return torch.softmax(result.model(**enc).logits, -1)[:, 0].mean().item()

    assert mean_neg_probability(tilted) > mean_neg_probability(plain) + 0.02


@pytest.mark.slow
def test_gradient_accumulation_steps_the_optimizer_every_n_batches(tiny_base_model):
    texts, labels = sentiment_corpus(80)  # 64 training rows: 8 batches of 8 per epoch
    trainer = prepare(texts, labels, _config(tiny_base_model, epochs=2, gradient_accumulation=3)).trainer()

    trainer.run()

    assert trainer.total_steps == 6  # ceil(8 / 3) per epoch, the last step of an epoch takes what is left
    assert trainer.scheduler.last_epoch == 6  # the scheduler steps with the optimizer
    assert trainer.step == 16  # batches


@pytest.mark.parametrize("schedule, end_factor", [("linear", 0.0), ("cosine", 0.0), ("constant", 1.0)])
def test_learning_rate_schedules_after_warm_up(schedule, end_factor):
    from worker.ml.trainer import make_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = make_scheduler(optimizer, TrainConfig(base_model="m", lr_schedule=schedule, warmup_ratio=0.1), 100)
    lrs = []
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])

    assert lrs[9] == pytest.approx(0.1)  # the end of the warm-up
    assert lrs[-1] == pytest.approx(0.1 * end_factor, abs=1e-6)
    if schedule == "cosine":
        assert lrs[54] == pytest.approx(0.05, abs=2e-3)  # half way down, not linear: the same here by symmetry


@pytest.mark.slow
def test_early_stopping_ends_training_after_patience_epochs_without_improvement(tiny_base_model):
    texts, labels = sentiment_corpus(80)

    result = train_with_scripted_scores(texts, labels, _config(tiny_base_model, epochs=6, early_stopping_patience=2),
                                   [0.6, 0.8, 0.7, 0.75, 0.9, 0.95])

    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.stopped_early and result.best_epoch == 2 and result.metrics["macro_f1"] == 0.8


@pytest.mark.slow
def test_long_documents_as_windows_learn_what_truncation_cannot_see_and_predict_the_same_way(tiny_base_model,
                                                                                             tmp_path):
    from worker.ml.artifact import save_artifact
    from worker.ml.predict import Classifier

    texts, labels = late_sentiment(120)
    common = dict(epochs=6, max_length=32, learning_rate=3e-3)
    truncated = fine_tune(texts, labels, _config(tiny_base_model, **common))
    windowed = fine_tune(texts, labels, _config(tiny_base_model, **common, long_documents="windows",
                                                window_overlap=8))

    assert truncated.metrics["accuracy"] <= 0.65
    assert windowed.metrics["accuracy"] >= 0.9
    assert windowed.val_size == truncated.val_size == 24  # documents, not windows

    meta = {"labels": list(windowed.label_map.labels), "max_length": windowed.max_length,
            "windows": windowed.config.window_settings()}
    sha = save_artifact(windowed.model, windowed.tokenizer, meta, tmp_path / "windowed")
    classifier = Classifier.from_artifact(tmp_path / "windowed", sha256=sha, device="cpu")
    assert classifier.windows == {"long_documents": "windows", "window_overlap": 8, "max_windows": 16}
    held_out, gold = late_sentiment(140)
    predictions = classifier.predict(held_out[120:])
    assert sum(p.label == g for p, g in zip(predictions, gold[120:])) >= 18


@pytest.mark.slow
def test_the_same_seed_data_and_versions_give_the_same_metrics(tiny_base_model):
    texts, labels = sentiment_corpus(80)
    first = fine_tune(texts, labels, _config(tiny_base_model, epochs=2))
    second = fine_tune(texts, labels, _config(tiny_base_model, epochs=2))
    other_seed = fine_tune(texts, labels, _config(tiny_base_model, epochs=2, seed=43))

    for a, b in zip(first.history, second.history):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
        assert a["accuracy"] == b["accuracy"] and a["macro_f1"] == b["macro_f1"]
    assert other_seed.history[0]["train_loss"] != first.history[0]["train_loss"]


@pytest.mark.slow
def test_a_search_records_every_trial_and_returns_the_best_by_macro_f1(tiny_base_model, tmp_path):
    texts, labels = sentiment_corpus(80)
    space = {"learning_rate": [1e-5, 3e-3], "epochs": [1, 3]}
    config = _config(tiny_base_model, trials=3, search_space=space)
    epochs_seen = []

    result = search(texts, labels, config, Callbacks(on_epoch=epochs_seen.append), checkpoint_dir=tmp_path)

    assert len(result.trials) == 3 and sum(t["selected"] for t in result.trials) == 1
    assert len({tuple(t["options"].items()) for t in result.trials}) == 3  # no trial repeated
    chosen = next(t for t in result.trials if t["selected"])
    assert chosen["macro_f1"] == max(t["macro_f1"] for t in result.trials)
    assert result.metrics["macro_f1"] == chosen["macro_f1"]
    assert {k: getattr(result.config, k) for k in space} == chosen["options"]
    assert {r["trial"] for r in epochs_seen} == {1, 2, 3}

    # A new attempt finds the finished trials, runs none of them again, and rebuilds the same best model.
    again = search(texts, labels, config, checkpoint_dir=tmp_path)
    assert [t["seconds"] for t in again.trials] == [t["seconds"] for t in result.trials]
    assert again.metrics["macro_f1"] == result.metrics["macro_f1"]
    assert again.history == [{**h, "seconds": a["seconds"]} for h, a in zip(result.history, again.history)]
