"""Training resumes from its last complete epoch checkpoint and ends where an uninterrupted run ends."""
from __future__ import annotations

import pytest

from worker.ml.checkpoint import CHECKPOINT_FILE, load_checkpoint
from worker.ml.config import TrainConfig
from worker.ml.errors import Cancelled
from worker.ml.train import Callbacks, fine_tune


def _config(tiny_base_model, **kw):
    values = dict(base_model=tiny_base_model, epochs=3, batch_size=8, learning_rate=3e-3, seed=42, device="cpu")
    values.update(kw)
    return TrainConfig(**values)


def _stop_after_epoch(n):
    seen = []
    return Callbacks(on_epoch=seen.append, should_stop=lambda: len(seen) >= n)


@pytest.mark.slow
def test_an_interrupted_run_resumes_after_its_last_epoch_and_matches_an_uninterrupted_one(
        tiny_base_model, sentiment_data, tmp_path):
    texts, labels = sentiment_data
    config = _config(tiny_base_model)
    straight = fine_tune(texts, labels, config)

    with pytest.raises(Cancelled):
        fine_tune(texts, labels, config, _stop_after_epoch(1), checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    resumed = fine_tune(texts, labels, config, checkpoint_dir=tmp_path)

    assert straight.resumed_from_epoch is None and resumed.resumed_from_epoch == 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(straight.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert resumed.metrics["confusion_matrix"] == straight.metrics["confusion_matrix"]


@pytest.mark.slow
def test_a_checkpoint_of_other_data_or_options_is_ignored(tiny_base_model, sentiment_data, tmp_path):
    texts, labels = sentiment_data
    with pytest.raises(Cancelled):
        fine_tune(texts, labels, _config(tiny_base_model), _stop_after_epoch(1), checkpoint_dir=tmp_path)
    other = fine_tune(texts, labels, _config(tiny_base_model, learning_rate=2e-3, epochs=2), checkpoint_dir=tmp_path)
    assert other.resumed_from_epoch is None


def test_a_damaged_checkpoint_means_starting_over(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    assert load_checkpoint(tmp_path, "key") is None
    assert load_checkpoint(None, "key") is None


def test_a_saved_trainer_state_restores_every_random_generator_the_run_draws_from(
        tiny_base_model, sentiment_data, tmp_path):
    import random

    import numpy as np
    import torch

    from worker.ml.checkpoint import save_checkpoint
    from worker.ml.train import prepare

    texts, labels = sentiment_data
    trainer = prepare(texts, labels, _config(tiny_base_model, epochs=1)).trainer()
    save_checkpoint(tmp_path, {"key": "k", **trainer.state_dict()})

    def draws():
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    first = draws()
    trainer.load_state_dict(load_checkpoint(tmp_path, "k"))  # through torch.load(weights_only=True)

    assert draws() == first
    assert trainer.resumed_from_epoch == 0


def test_a_checkpoint_whose_commit_refuses_leaves_the_current_one_in_place(tmp_path):
    """A stale attempt's checkpoint is written under its own name and never renamed over the current one."""
    from worker.ml.checkpoint import save_checkpoint

    class StaleAttempt(Exception):
        pass

    def refuse(rename):
        raise StaleAttempt("a newer attempt owns the job")

    save_checkpoint(tmp_path, {"key": "k", "epoch": 2}, commit=lambda rename: rename())
    with pytest.raises(StaleAttempt):
        save_checkpoint(tmp_path, {"key": "k", "epoch": 1}, commit=refuse)
    assert load_checkpoint(tmp_path, "k")["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]
