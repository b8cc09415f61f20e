"""The trainer's epoch choice (issue #16): a near-tie within the validation interval goes to the later epoch, whose
weights are the ones returned; a clear loss does not; the rule that decided is in the result's metrics."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers import sentiment_corpus  # noqa: E402
from worker.ml.config import TrainConfig  # noqa: E402
from worker.ml.train import prepare  # noqa: E402


def _train_with_scripted_predictions(base: str, correct: list[int], n: int = 160):
    """Train 3 epochs; epoch e 'predicts' the first correct[e] validation texts right and the rest wrong. The
    weights of every epoch are recorded so the test can tell which epoch's model came back."""
    texts, labels = sentiment_corpus(n)
    config = TrainConfig(base_model=base, epochs=len(correct), batch_size=8, learning_rate=3e-3, seed=1,
                         device="cpu")
    prepared = prepare(texts, labels, config)
    truth = [prepared.data.y[i] for i in prepared.data.val_idx]
    scripted, weights = iter(correct), []

    def evaluate(model):
        metrics = prepared.evaluate(model)
        k = next(scripted)
        predictions = [y if i < k else 1 - y for i, y in enumerate(truth)]
        metrics.update(predictions=predictions, macro_f1=k / len(truth), accuracy=k / len(truth))
        weights.append(model.classifier.weight.detach().clone())
        return metrics

    trainer = prepared.trainer(evaluate=evaluate)
    trainer.run()
    return prepared.result(trainer), weights, len(truth)


def test_a_near_tie_goes_to_the_later_epoch_and_its_weights_come_back(tiny_base_model):
    result, weights, n = _train_with_scripted_predictions(tiny_base_model, [30, 29, 5])
    assert n == 32
    selection = result.metrics["selection"]
    # Epoch 2 is one text behind epoch 1: within the interval, so the later epoch is kept; epoch 3 is far behind.
    assert (selection["best_epoch"], selection["epoch"], selection["rule"]) == (1, 2, "tie->later")
    assert result.best_epoch == 2 and selection["tied_epochs"] == [1, 2]
    assert torch.equal(result.model.classifier.weight, weights[1])
    assert "too small to tell epochs apart" in selection["warning"]  # 32 texts


def test_a_clear_winner_is_kept(tiny_base_model):
    result, weights, _ = _train_with_scripted_predictions(tiny_base_model, [31, 8, 10])
    assert (result.metrics["selection"]["rule"], result.best_epoch) == ("best", 1)
    assert torch.equal(result.model.classifier.weight, weights[0])
