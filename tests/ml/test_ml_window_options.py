"""Long-document options of training: how window logits are pooled (recorded, so every predictor pools the same
way) and how many windows per document train in an epoch (seeded, the same after a resume)."""
from __future__ import annotations

import pytest

from helpers import late_sentiment
from worker.ml.config import TrainConfig
from worker.ml.errors import InvalidTrainingData

WINDOWS = {"long_documents": "windows"}


@pytest.mark.parametrize(("options", "message"), [
    ({"window_pooling": "max"}, "window_pooling applies to long_documents windows only"),
    ({"windows_per_epoch": 2}, "windows_per_epoch applies to long_documents windows only"),
    ({**WINDOWS, "window_pooling": "median"}, "window_pooling must be one of mean, max, confidence"),
    ({**WINDOWS, "windows_per_epoch": 0}, 'windows_per_epoch must be "all" or a whole number of at least 1'),
    ({**WINDOWS, "windows_per_epoch": "some"}, "got 'some'"),
    ({**WINDOWS, "windows_per_epoch": True}, "got True"),
])
def test_pooling_and_sampling_are_refused_with_a_bad_value_or_without_windows(options, message):
    with pytest.raises(InvalidTrainingData, match=message):
        TrainConfig.from_dict({"base_model": "m", **options})


def test_windows_record_the_recommended_max_pooling_unless_told_otherwise_and_truncation_records_none():
    assert TrainConfig("m").window_settings() == {"long_documents": "truncate", "window_overlap": 32, "max_windows": 16}
    assert TrainConfig("m", **WINDOWS).window_settings()["pooling"] == "max"
    assert TrainConfig("m", **WINDOWS, window_pooling="mean").window_settings()["pooling"] == "mean"
    assert TrainConfig("m", **WINDOWS).sampled_windows is None
    assert TrainConfig("m", **WINDOWS, windows_per_epoch=2).sampled_windows == 2
    assert TrainConfig("m").sampled_windows is None  # "all" with truncation: the default, nothing to sample


def _trainer(owners, per_epoch, seed=3):
    import torch

    from worker.ml.trainer import Trainer, TrainInputs

    config = TrainConfig("m", epochs=2, batch_size=2, seed=seed, **WINDOWS, windows_per_epoch=per_epoch)
    inputs = TrainInputs([[1, 2, 3]] * len(owners), [0] * len(owners), 0, owners)
    return Trainer(torch.nn.Linear(2, 2), config, inputs, lambda m: {}, device=torch.device("cpu"), precision="fp32")


OWNERS = [0, 0, 0, 1, 2, 2, 2, 2]  # three documents: 3, 1 and 4 windows


def test_sampled_windows_train_k_per_document_per_epoch_seeded_by_the_seed_and_the_epoch():
    trainer = _trainer(OWNERS, 1)
    assert trainer.inputs_per_epoch == 3 and trainer.batches_per_epoch == 2 and trainer.total_batches == 4

    first = trainer.epoch_batches(1)
    chosen = sorted(i for batch in first for i in batch)
    assert sorted(OWNERS[i] for i in chosen) == [0, 1, 2]  # one window of each document
    assert _trainer(OWNERS, 1).epoch_batches(1) == first  # a resumed run draws the same epoch again
    windows_over_epochs = {i for epoch in range(1, 30) for batch in trainer.epoch_batches(epoch) for i in batch}
    assert windows_over_epochs == set(range(len(OWNERS)))  # every window trains over the epochs
    assert _trainer(OWNERS, 2).inputs_per_epoch == 5  # 2 + 1 + 2
    assert _trainer(OWNERS, "all").inputs_per_epoch == len(OWNERS)


def _config(tiny_base_model, **kw):
    values = dict(base_model=tiny_base_model, epochs=3, batch_size=8, learning_rate=3e-3, seed=42, device="cpu",
                  max_length=32, long_documents="windows", window_overlap=8)
    return TrainConfig(**{**values, **kw})


@pytest.mark.slow
def test_sampled_windows_resume_from_a_checkpoint_exactly_where_an_uninterrupted_run_goes(tiny_base_model, tmp_path):
    from worker.ml.errors import Cancelled
    from worker.ml.train import Callbacks, fine_tune

    texts, labels = late_sentiment(60)
    config = _config(tiny_base_model, windows_per_epoch=1)
    straight = fine_tune(texts, labels, config)
    seen = []
    with pytest.raises(Cancelled):
        fine_tune(texts, labels, config, Callbacks(on_epoch=seen.append, should_stop=lambda: len(seen) >= 1),
                  checkpoint_dir=tmp_path)
    resumed = fine_tune(texts, labels, config, checkpoint_dir=tmp_path)

    assert resumed.resumed_from_epoch == 1
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    flat = [x for row in straight.val_logits for x in row]
    assert [x for row in resumed.val_logits for x in row] == pytest.approx(flat, rel=1e-4)
    everything = fine_tune(texts, labels, _config(tiny_base_model, epochs=1))
    assert straight.examples_per_second > 0 and everything.train_size == straight.train_size == 48
    assert straight.history[0]["train_loss"] != everything.history[0]["train_loss"]  # fewer inputs trained


@pytest.mark.slow
def test_validation_and_every_predictor_pool_windows_the_way_the_model_version_records(tiny_base_model, tmp_path):
    import torch

    from worker.ml.artifact import save_artifact
    from worker.ml.batching import batch_logits, encode, sorted_batches, token_budget_batches
    from worker.ml.longdocs import pool_logits
    from worker.ml.predict import Classifier
    from worker.ml.train import fine_tune

    texts, labels = late_sentiment(120)
    result = fine_tune(texts, labels, _config(tiny_base_model, epochs=6, window_pooling="confidence"))
    assert result.metrics["accuracy"] >= 0.9
    meta = result.inference_metadata()
    assert meta["windows"]["pooling"] == "confidence"
    val_texts = [texts[i] for i in result.split.val_idx]
    ids, owners = encode(result.tokenizer, val_texts, 32, "windows", 8, 16)
    windows = batch_logits(result.model, ids, sorted_batches([len(t) for t in ids], 64), 2, 0, torch.device("cpu"),
                           "fp32")
    assert len(ids) > len(val_texts)
    pooled = pool_logits(windows, owners, len(val_texts), "confidence")
    assert torch.allclose(torch.tensor(result.val_logits), pooled, atol=1e-5)

    sha = save_artifact(result.model, result.tokenizer, {**meta, "labels": list(result.label_map.labels)},
                        tmp_path / "m")
    classifier = Classifier.from_artifact(tmp_path / "m", sha256=sha, device="cpu")
    assert classifier.pooling == "confidence" and "pooling" not in classifier.windows

    def pos_scores(how, predictor=classifier):
        windows = predictor._logits(ids, token_budget_batches([len(t) for t in ids], 64))  # as predict batches them
        return torch.softmax(pool_logits(windows, owners, len(val_texts), how), -1)[:, 1].tolist()

    assert max(abs(a - b) for a, b in zip(pos_scores("mean"), pos_scores("confidence"))) > 1e-3  # they differ here
    assert [p.scores["pos"] for p in classifier.predict(val_texts)] == pytest.approx(pos_scores("confidence"), abs=1e-6)
    older = {k: v for k, v in meta["windows"].items() if k != "pooling"}  # a version from before pooling was recorded
    mean = Classifier(result.model, result.tokenizer, result.label_map.labels, 32, torch.device("cpu"), windows=older)
    assert mean.pooling == "mean"
    assert [p.scores["pos"] for p in mean.predict(val_texts)] == pytest.approx(pos_scores("mean", mean), abs=1e-6)


@pytest.mark.slow
def test_a_multilabel_model_trains_on_sampled_windows_and_predicts_with_max_pooling(tiny_base_model):
    from worker.ml.predict import Classifier, metadata_options

    from worker.ml.train import fine_tune

    texts, labels = late_sentiment(60)
    sets = [[label, "film"] if i % 3 else [label] for i, label in enumerate(labels)]
    result = fine_tune(texts, sets, _config(tiny_base_model, epochs=2, multi_label=True, windows_per_epoch=2))
    meta = result.inference_metadata()
    assert meta["windows"]["pooling"] == "max" and meta["multi_label"]
    import torch

    classifier = Classifier(result.model, result.tokenizer, meta["labels"], 32, torch.device("cpu"),
                            **metadata_options(meta))
    predictions = classifier.predict(texts[:6])
    assert classifier.pooling == "max" and all(p.labels is not None for p in predictions)


def test_multilabel_confidence_weights_a_window_by_how_far_its_sigmoids_are_from_one_half():
    import torch

    from worker.ml.longdocs import pool_logits

    logits = torch.tensor([[4.0, -4.0], [0.0, 0.0], [1.0, 1.0]])
    pooled = pool_logits(logits, [0, 0, 1], 2, "confidence", multi_label=True)
    assert pooled[0].tolist() == pytest.approx([4.0, -4.0], rel=1e-4)  # the undecided window weighs (almost) nothing
    assert pooled[1].tolist() == pytest.approx([1.0, 1.0])
