"""One training run over two CPU processes (DistributedDataParallel, gloo) is the run of one process on the same
effective batch: the same loss curve and validation metrics, the same checkpoints, the same stop."""
from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import sentiment_corpus, topic_corpus  # noqa: E402
from worker.ml.checkpoint import load_checkpoint  # noqa: E402
from worker.ml.ddp_rank import RankFailed, fine_tune_parallel  # noqa: E402
from worker.ml.config import TrainConfig  # noqa: E402
from worker.ml.distributed import world_size  # noqa: E402
from worker.ml.errors import Cancelled  # noqa: E402
from worker.ml.refit import refit, refit_config  # noqa: E402
from worker.ml.train import Callbacks, checkpoint_key, fine_tune  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory, minilm_path) -> str:
    """A tiny BERT without dropout: one process and two then draw no random numbers in training at all."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path, model_max_length=64)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return str(path)


def _config(model: str, **options) -> TrainConfig:
    # batch 7: the two ranks get 4 and 3 rows of each batch; class weights exercise the loss scaling.
    values = {"epochs": 4, "batch_size": 7, "learning_rate": 3e-3, "max_length": 32, "device": "cpu",
              "class_weights": "auto", **options}
    return TrainConfig(base_model=model, **values)


def _curve(result) -> list[float]:
    return [h[k] for h in result.history for k in ("train_loss", "val_loss", "accuracy", "macro_f1")]


def test_two_gloo_processes_train_the_run_of_one_process_on_the_same_effective_batch(no_dropout_model):
    texts, labels = sentiment_corpus(80)
    one = fine_tune(texts, labels, _config(no_dropout_model))
    two = fine_tune_parallel(texts, labels, _config(no_dropout_model), processes=2)
    assert _curve(two) == pytest.approx(_curve(one), rel=1e-4, abs=1e-5)
    assert (two.best_epoch, two.val_predictions) == (one.best_epoch, one.val_predictions)
    assert two.metrics["accuracy"] == one.metrics["accuracy"] == 1.0  # it learned: the curves say something
    assert two.train_size == one.train_size and two.config == one.config
    for name, weight in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[name], weight, rtol=1e-3, atol=1e-4)


def test_a_multi_label_run_over_two_processes_has_the_loss_curve_of_one(no_dropout_model):
    texts, label_sets = topic_corpus(48)
    config = _config(no_dropout_model, epochs=2, multi_label=True)  # "auto" weights: BCE's pos_weight per label
    one = fine_tune(texts, label_sets, config)
    two = fine_tune_parallel(texts, label_sets, config, processes=2)
    assert _curve(two) == pytest.approx(_curve(one), rel=1e-4, abs=1e-5)
    assert two.thresholds == pytest.approx(one.thresholds)


def test_a_parallel_run_checkpoints_every_epoch_and_a_stop_request_stops_every_rank(no_dropout_model, tmp_path):
    texts, labels = sentiment_corpus(40)
    config = _config(no_dropout_model, epochs=3, gradient_accumulation=2)  # accumulation: DDP's no_sync steps
    steps: list[int] = []
    callbacks = Callbacks(on_step=lambda step, total: steps.append(step), should_stop=lambda: len(steps) >= 7)
    with pytest.raises(Cancelled):  # epoch 1 has 5 batches: the stop comes in epoch 2, after its checkpoint
        fine_tune_parallel(texts, labels, config, callbacks, checkpoint_dir=tmp_path, processes=2)
    saved = load_checkpoint(tmp_path, checkpoint_key(texts, labels, config))
    assert saved["epoch"] == 1 and len(saved["rank_rng"]) == 2
    resumed = fine_tune_parallel(texts, labels, config, checkpoint_dir=tmp_path, processes=2)
    assert resumed.resumed_from_epoch == 1
    assert _curve(resumed) == pytest.approx(_curve(fine_tune(texts, labels, config)), rel=1e-4, abs=1e-5)


def _refit_curve(result) -> list[float]:
    return [h["train_loss"] for h in result.refit["history"]]


@pytest.fixture(scope="module")
def selected_run(no_dropout_model):
    """A selection run whose refit trains 3 epochs on all 40 documents."""
    texts, labels = sentiment_corpus(40)
    return texts, labels, replace(fine_tune(texts, labels, _config(no_dropout_model, epochs=3)), best_epoch=3)


def test_a_refit_over_two_processes_trains_the_refit_of_one_process_with_the_same_progress(selected_run):
    texts, labels, selected = selected_run
    steps: dict[int, list] = {1: [], 2: []}
    one = refit(texts, labels, selected, Callbacks(on_step=lambda *s: steps[1].append(s)))
    two = refit(texts, labels, selected, Callbacks(on_step=lambda *s: steps[2].append(s)), processes=2)
    assert two.refit["train_size"] == one.refit["train_size"] == 40
    assert _refit_curve(two) == pytest.approx(_refit_curve(one), rel=1e-4, abs=1e-5)
    assert steps[2] == steps[1] and steps[1][-1] == (18, 18)  # 6 batches of 7 (40 documents) a epoch, 3 epochs
    for name, weight in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[name], weight, rtol=1e-3, atol=1e-4)


def test_a_refit_over_two_processes_stops_every_rank_and_resumes_from_its_checkpoint(selected_run, tmp_path):
    texts, labels, selected = selected_run
    seen: list = []
    stop = Callbacks(on_epoch=seen.append, should_stop=lambda: len(seen) >= 1)
    with pytest.raises(Cancelled):  # in epoch 2, after epoch 1's checkpoint
        refit(texts, labels, selected, stop, checkpoint_dir=tmp_path, processes=2)
    saved = load_checkpoint(tmp_path, checkpoint_key(texts, labels, refit_config(selected.config, 3), all_data=True))
    assert saved["epoch"] == 1 and len(saved["rank_rng"]) == 2  # every rank's generators, as in the selection run
    resumed = refit(texts, labels, selected, checkpoint_dir=tmp_path, processes=2)
    assert resumed.refit["resumed_from_epoch"] == 1
    assert _refit_curve(resumed) == pytest.approx(_refit_curve(refit(texts, labels, selected)), rel=1e-4, abs=1e-5)


def test_a_rank_that_dies_fails_the_run_at_once_instead_of_hanging_it(no_dropout_model):
    texts, labels = sentiment_corpus(40)
    me = os.getpid()

    def kill_rank_1(step: int, total: int) -> None:
        if step == 3:  # rank 1 is this process's only child
            for child in Path(f"/proc/{me}/task/{me}/children").read_text().split():
                os.kill(int(child), signal.SIGKILL)

    with pytest.raises(RankFailed, match=r"rank 1 \(signal 9\)"):
        fine_tune_parallel(texts, labels, _config(no_dropout_model), Callbacks(on_step=kill_rank_1), processes=2)


def test_the_world_size_on_a_cpu_is_one_unless_asked():
    assert world_size(0, "cpu") == 1 and world_size(0, "auto") == (torch.cuda.device_count() or 1)
    assert world_size(3, "cpu") == 3
