"""Classifier: loading an artifact, predictions in input order, failures isolated per document."""
from __future__ import annotations

import math
import shutil

import pytest

torch = pytest.importorskip("torch")

from worker.ml.errors import CorruptArtifact  # noqa: E402
from worker.ml.loader import load_classifier  # noqa: E402
from worker.ml.predict import Classifier, TextPrediction  # noqa: E402

# Input order is deliberately not length order, so the length-sorted batches must be put back in place.
TEXTS = [
    "great excellent lovely",
    "awful boring miserable film film film film film film",
    "superb fantastic wonderful film film film",
    "bad",
    "dreadful poor terrible film",
    "brilliant delightful great film film film film film film film film",
]
EXPECTED = ["pos", "neg", "pos", "neg", "neg", "pos"]


class PoisonClassifier(Classifier):
    """A classifier whose forward pass fails for any batch holding a poison document (as a CUDA assert would)."""

    MARKER = "POISON"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[list[str]] = []

    def predict(self, texts, batch_size=64):
        self.calls.append(list(texts))
        if any(self.MARKER in t for t in texts):
            raise RuntimeError("device-side assert triggered")
        return super().predict(texts, batch_size)


class OutOfMemoryClassifier(Classifier):
    """A classifier that runs out of GPU memory above a batch size."""

    def __init__(self, *args, fits: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fits = fits
        self.batch_sizes: list[int] = []

    def predict(self, texts, batch_size=64):
        self.batch_sizes.append(batch_size)
        if batch_size > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().predict(texts, batch_size)


def _same_model(cls, classifier, **kwargs):
    return cls(classifier.model, classifier.tokenizer, classifier.labels, classifier.max_length, classifier.device,
               **kwargs)


def test_a_loaded_classifier_has_the_artifacts_labels_and_max_length(classifier):
    assert classifier.labels == ["neg", "pos"]
    assert classifier.max_length == 128
    assert classifier.device == torch.device("cpu")
    assert not classifier.model.training


def test_predictions_follow_the_input_order_not_the_length_order(classifier):
    predictions = classifier.predict(TEXTS, batch_size=2)

    assert [p.label for p in predictions] == EXPECTED


def test_a_batched_prediction_equals_predicting_each_text_alone(classifier):
    batched = classifier.predict(TEXTS, batch_size=4)

    for text, prediction in zip(TEXTS, batched):
        alone = classifier.predict([text])[0]
        assert prediction.label == alone.label
        for label in classifier.labels:
            assert prediction.scores[label] == pytest.approx(alone.scores[label], abs=1e-4)


def test_scores_are_probabilities_over_all_labels_and_the_label_is_the_argmax(classifier):
    for prediction in classifier.predict(TEXTS):
        assert set(prediction.scores) == {"neg", "pos"}
        assert math.isclose(sum(prediction.scores.values()), 1.0, abs_tol=1e-5)
        assert all(0.0 <= s <= 1.0 for s in prediction.scores.values())
        assert prediction.label == max(prediction.scores, key=prediction.scores.get)
        assert prediction.score == prediction.scores[prediction.label]
        assert prediction.error is None


class FixedLogits(Classifier):
    """A classifier whose forward pass returns given logits, one row per input."""

    def __init__(self, logits, labels):
        super().__init__(torch.nn.Identity(), None, labels, 8, torch.device("cpu"))
        self.fixed = logits

    def _logits(self, token_ids, batches):
        return self.fixed


def test_the_label_is_the_first_best_column_as_max_gives_it_ties_and_nans_included():
    torch.manual_seed(0)
    logits = torch.randint(-3, 4, (400, 3)).float()  # many ties
    logits[::7] = torch.randn(58, 3)
    cases = [logits, logits.clone().index_put_((torch.tensor([5, 9]), torch.tensor([2, 0])), torch.tensor(math.nan)),
             torch.tensor([[0.0, math.inf, 1.0], [math.inf, math.inf, 0.0], [1.0, 1.0, 1.0]])]
    labels = ["a", "b", "c"]
    for case in cases:
        got = FixedLogits(case, labels)._predict_encoded([[1]] * len(case), list(range(len(case))), len(case), 64)
        rows = torch.softmax(case, dim=-1).tolist()
        best = [max(range(3), key=row.__getitem__) for row in rows]
        expected = [TextPrediction(labels[b], row[b], dict(zip(labels, row))) for b, row in zip(best, rows)]
        assert [p.label for p in got] == [p.label for p in expected]
        assert all(p.score == q.score or math.isnan(p.score) and math.isnan(q.score) for p, q in zip(got, expected))
    assert FixedLogits(cases[2], labels)._predict_encoded([[1]] * 3, [0, 1, 2], 3, 64)[0].label == "a"  # not the NaN


def test_predicting_no_texts_returns_no_predictions(classifier):
    assert classifier.predict([]) == []
    assert classifier.predict_or_fail([]) == []


def test_texts_longer_than_max_length_tokens_are_truncated_not_refused(classifier):
    long_text = "awful terrible " + "film " * 300
    same_start = long_text + "great wonderful " * 50  # differs only after the first 128 tokens

    first, second = classifier.predict([long_text, same_start])

    assert first.error is None and first.label in classifier.labels
    for label in classifier.labels:
        assert first.scores[label] == pytest.approx(second.scores[label], abs=1e-5)


def test_predict_or_fail_gives_invalid_texts_a_reason_and_still_labels_the_valid_ones(classifier):
    texts = ["great excellent lovely", "", "bad\x00text", "x" * 61, "   ", "awful boring miserable", None]

    results = classifier.predict_or_fail(texts, batch_size=2, max_chars=60)

    assert [r.label for r in results] == ["pos", None, None, None, None, "neg", None]
    assert results[1] == TextPrediction(None, None, None, "text is empty or whitespace")
    assert results[2].error == "text contains NUL bytes"
    assert results[3].error == "text is longer than 60 characters (61)"
    assert results[4].error == "text is empty or whitespace"
    assert results[6].error == "text is not a string"
    assert results[0].error is None and results[5].error is None
    assert set(results[0].scores) == set(results[5].scores) == {"neg", "pos"}


def test_predict_or_fail_matches_predict_when_every_text_is_valid(classifier):
    plain = classifier.predict(TEXTS, batch_size=3)
    guarded = classifier.predict_or_fail(TEXTS, batch_size=3)

    assert [p.label for p in guarded] == [p.label for p in plain]


def test_a_poison_document_fails_alone_and_the_rest_of_its_batch_is_labelled(classifier):
    poison = _same_model(PoisonClassifier, classifier)
    texts = TEXTS + ["awful POISON terrible"] + ["lovely superb great", "boring poor bad"]

    results = poison.predict_or_fail(texts, batch_size=4)

    failed = [i for i, r in enumerate(results) if r.error]
    assert failed == [6]
    assert results[6].label is None and results[6].scores is None
    assert results[6].error == "prediction failed: RuntimeError: device-side assert triggered"
    assert [r.label for i, r in enumerate(results) if i != 6] == EXPECTED + ["pos", "neg"]


def test_the_poison_document_is_found_by_bisection_not_one_text_at_a_time(classifier):
    poison = _same_model(PoisonClassifier, classifier)
    texts = [f"great film number {i}" for i in range(16)]
    texts[11] = "POISON"

    poison.predict_or_fail(texts)

    # log2(16) = 4 halvings, each trying two halves, plus the first attempt: 9 calls, not 16.
    assert len(poison.calls) == 1 + 2 * 4
    assert ["POISON"] in poison.calls


def test_two_poison_documents_each_fail_alone_next_to_invalid_texts(classifier):
    poison = _same_model(PoisonClassifier, classifier)
    texts = ["POISON one", "great lovely superb", "", "awful bad poor", "two POISON", "bad\x00"]

    results = poison.predict_or_fail(texts, batch_size=2)

    assert [r.error is None for r in results] == [False, True, False, True, False, False]
    assert results[0].error.startswith("prediction failed: RuntimeError")
    assert results[4].error.startswith("prediction failed: RuntimeError")
    assert results[2].error == "text is empty or whitespace"
    assert results[5].error == "text contains NUL bytes"
    assert [results[1].label, results[3].label] == ["pos", "neg"]


def test_running_out_of_gpu_memory_halves_the_batch_size_until_it_fits(classifier):
    oom = _same_model(OutOfMemoryClassifier, classifier, fits=2)

    results = oom.predict_or_fail(TEXTS, batch_size=8)

    assert oom.batch_sizes == [8, 4, 2]
    assert [r.label for r in results] == EXPECTED


def test_running_out_of_memory_with_batches_of_one_is_raised_not_blamed_on_a_document(classifier):
    oom = _same_model(OutOfMemoryClassifier, classifier, fits=0)

    with pytest.raises(torch.cuda.OutOfMemoryError):
        oom.predict_or_fail(TEXTS[:2], batch_size=2)


def test_loading_with_a_wrong_sha_is_refused(saved_artifact):
    path, _ = saved_artifact

    with pytest.raises(CorruptArtifact, match="sha256"):
        Classifier.from_artifact(path, sha256="0" * 64, device="cpu")


def test_loading_a_folder_without_weights_is_refused(saved_artifact, tmp_path):
    path, _ = saved_artifact
    copy = shutil.copytree(path, tmp_path / "copy")
    (copy / "model.safetensors").unlink()

    with pytest.raises(CorruptArtifact, match="model.safetensors"):
        Classifier.from_artifact(copy, device="cpu")


def test_loading_an_unparseable_config_is_refused_as_corrupt(saved_artifact, tmp_path):
    path, _ = saved_artifact
    copy = shutil.copytree(path, tmp_path / "copy")
    (copy / "config.json").write_text("{not json")

    with pytest.raises(CorruptArtifact, match="cannot load model artifact"):
        Classifier.from_artifact(copy, device="cpu")


def test_loading_an_artifact_without_its_tokenizer_files_is_refused(saved_artifact, tmp_path):
    path, _ = saved_artifact
    copy = shutil.copytree(path, tmp_path / "copy")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (copy / name).unlink(missing_ok=True)

    with pytest.raises(CorruptArtifact):
        Classifier.from_artifact(copy, device="cpu")


def test_loading_damaged_weights_without_a_sha_is_refused_as_corrupt(saved_artifact, tmp_path):
    path, _ = saved_artifact
    copy = shutil.copytree(path, tmp_path / "copy")
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])

    with pytest.raises(CorruptArtifact):
        Classifier.from_artifact(copy, device="cpu")


@pytest.mark.parametrize("content", ["{not json", "{}"])
def test_loading_unreadable_metadata_is_refused_as_corrupt(saved_artifact, tmp_path, content):
    path, _ = saved_artifact
    copy = shutil.copytree(path, tmp_path / "copy")
    (copy / "bertjobs.json").write_text(content)

    with pytest.raises(CorruptArtifact):
        Classifier.from_artifact(copy, device="cpu")


def test_load_classifier_returns_the_same_object_for_the_same_key(saved_artifact):
    path, sha = saved_artifact

    first = load_classifier(path, sha256=sha, device="cpu")

    assert load_classifier(path, sha256=sha, device="cpu") is first
    assert load_classifier(str(path), sha256=sha, device="cpu") is first  # str and Path are one key


def test_load_classifier_keeps_one_model_at_a_time(saved_artifact):
    path, sha = saved_artifact

    first = load_classifier(path, sha256=sha, device="cpu")
    other = load_classifier(path, sha256=None, device="cpu")
    again = load_classifier(path, sha256=sha, device="cpu")

    assert other is not first
    assert again is not first  # loading the other key evicted it
    assert load_classifier(path, sha256=sha, device="cpu") is again
    assert [p.label for p in again.predict(TEXTS)] == EXPECTED
