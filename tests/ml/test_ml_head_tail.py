"""Head+tail truncation (``long_documents="head_tail"``): the exact tokens it keeps, checked against a reference built
by hand from the full tokenization, the model version's record, and training, validation and every predictor
reading documents the same way."""
from __future__ import annotations

import pytest

from helpers import late_sentiment
from worker.ml.config import TrainConfig
from worker.ml.errors import InvalidTrainingData
from worker.ml.head_tail import encode_head_tail, head_tail, head_tokens


def test_head_tail_keeps_the_first_and_last_tokens_of_a_long_sequence():
    assert head_tail(list(range(10)), budget=6, head=2) == [0, 1, 6, 7, 8, 9]
    assert head_tail(list(range(10)), budget=6, head=0) == [4, 5, 6, 7, 8, 9]
    assert head_tail(list(range(10)), budget=6, head=6) == [0, 1, 2, 3, 4, 5]


def test_head_tail_leaves_a_sequence_that_fits_alone():
    assert head_tail([5, 6, 7], budget=3, head=1) == [5, 6, 7]
    assert head_tail([], budget=3, head=1) == []


def test_head_tail_refuses_a_head_outside_the_budget():
    with pytest.raises(ValueError):
        head_tail([1, 2, 3], budget=2, head=3)


def test_the_head_is_sun_et_als_128_of_510_at_512_tokens_and_a_quarter_at_any_length():
    assert head_tokens(510) == 128 and head_tokens(126) == 32 and head_tokens(30) == 8


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def _text(n_words: int) -> str:
    return " ".join(["opening", "line"] + [f"word{i}" for i in range(n_words)] + ["closing", "verdict"])


def _by_hand(tokenizer, text: str, max_length: int, head: int) -> list[int]:
    """[CLS], the first ``head`` content tokens, the last ``max_length - 2 - head``, [SEP]: from the whole text's
    tokens, special ones included, with no truncation at all."""
    full = tokenizer(text, truncation=False, verbose=False)["input_ids"]
    assert full[0] == tokenizer.cls_token_id and full[-1] == tokenizer.sep_token_id
    content = full[1:-1]
    if len(content) <= max_length - 2:
        return full
    tail = max_length - 2 - head
    return [full[0], *content[:head], *content[len(content) - tail:], full[-1]]


@pytest.mark.parametrize(("max_length", "head"), [(128, 32), (512, 128), (32, 8)])
def test_encoded_ids_are_cls_the_head_the_tail_and_sep_of_the_full_tokenization(tokenizer, max_length, head):
    from worker.ml.batching import encode

    texts = [_text(n) for n in (3, 40, 60, 61, 62, 300, 2000)] + ["short text", "naïve café, ÉTÉ!"]
    ids, owners = encode(tokenizer, texts, max_length, "head_tail")

    assert ids == [_by_hand(tokenizer, t, max_length, head) for t in texts]
    assert owners == list(range(len(texts))) and max(map(len, ids)) == max_length
    long = ids[-3]
    decoded = tokenizer.decode(long, skip_special_tokens=True)
    assert decoded.startswith("opening line") and decoded.endswith("closing verdict")


def test_a_text_that_fits_is_tokenized_exactly_as_truncation_tokenizes_it(tokenizer):
    from worker.ml.batching import encode

    texts = ["short text", _text(20), _text(60)]  # the last is 124 content tokens: it fits in 128
    assert encode(tokenizer, texts, 128, "head_tail")[0] == encode(tokenizer, texts, 128, "truncate")[0]
    assert encode_head_tail(tokenizer, [], 32) == []


def test_the_bulk_jobs_capped_encoding_reads_a_head_tail_text_to_its_end(tokenizer):
    from worker.ml.batching import CHARS_PER_TOKEN_CAP, encode, encode_capped

    text = _text(2000)
    assert len(text) > 128 * CHARS_PER_TOKEN_CAP  # truncation would tokenize a prefix only
    settings = {"long_documents": "head_tail", "window_overlap": 32, "max_windows": 16, "head_fraction": 0.25}
    assert encode_capped(tokenizer, [text, "short"], 128, **settings) == encode(tokenizer, [text, "short"], 128,
                                                                                 **settings)
    assert tokenizer.decode(encode_capped(tokenizer, [text], 128, **settings)[0][0]).endswith("closing verdict [SEP]")


def test_head_tail_is_recorded_with_its_head_share_and_refuses_window_options():
    settings = TrainConfig("m", long_documents="head_tail").window_settings()
    assert settings == {"long_documents": "head_tail", "window_overlap": 32, "max_windows": 16, "head_fraction": 0.25}
    assert TrainConfig("m", long_documents="head_tail").sampled_windows is None
    with pytest.raises(InvalidTrainingData, match="window_pooling applies to long_documents windows only"):
        TrainConfig.from_dict({"base_model": "m", "long_documents": "head_tail", "window_pooling": "max"})
    with pytest.raises(InvalidTrainingData, match="long_documents must be one of truncate, head_tail, windows"):
        TrainConfig.from_dict({"base_model": "m", "long_documents": "tail"})


@pytest.mark.slow
def test_training_validation_and_every_predictor_read_the_head_and_tail_the_version_records(tiny_base_model,
                                                                                          tmp_path):
    import torch

    from worker.ml.artifact import save_artifact
    from worker.ml.batching import batch_logits, sorted_batches
    from worker.ml.predict import Classifier
    from worker.ml.train import fine_tune, prepare

    texts, labels = late_sentiment(120)  # the label is in the last words: truncation at 32 tokens never sees it
    config = TrainConfig(tiny_base_model, epochs=6, batch_size=8, learning_rate=3e-3, seed=42, device="cpu",
                         max_length=32, long_documents="head_tail")
    prepared = prepare(texts, labels, config)
    train_texts = [texts[i] for i in prepared.data.train_idx]
    assert prepared.train.token_ids == [_by_hand(prepared.tokenizer, t, 32, 8) for t in train_texts]
    result = fine_tune(texts, labels, config)
    assert result.metrics["accuracy"] >= 0.9  # the tail holds the label
    meta = result.inference_metadata()
    assert meta["windows"]["long_documents"] == "head_tail" and meta["windows"]["head_fraction"] == 0.25

    val_texts = [texts[i] for i in result.split.val_idx]
    by_hand = [_by_hand(result.tokenizer, t, 32, 8) for t in val_texts]
    logits = batch_logits(result.model, by_hand, sorted_batches([len(t) for t in by_hand], 64), 2, 0,
                          torch.device("cpu"), "fp32")
    assert torch.allclose(torch.tensor(result.val_logits), logits, atol=1e-5)  # validation read head+tail

    sha = save_artifact(result.model, result.tokenizer, {**meta, "labels": list(result.label_map.labels)},
                        tmp_path / "m")
    # fp32: "auto" reads in bf16 on CPUs that have it, and the scores are compared with fp32 logits
    classifier = Classifier.from_artifact(tmp_path / "m", sha256=sha, device="cpu", precision="fp32")
    expected = torch.softmax(logits, -1)[:, 1].tolist()
    assert [p.scores["pos"] for p in classifier.predict(val_texts)] == pytest.approx(expected, abs=1e-5)
    bulk = classifier.run(classifier.prepare(val_texts))  # the bulk job's path: capped encoding, then forward
    assert [p.scores["pos"] for p in bulk] == pytest.approx(expected, abs=1e-5)
    older = Classifier(result.model, result.tokenizer, meta["labels"], 32, torch.device("cpu"), windows=None)
    assert older.windows["long_documents"] == "truncate"  # a version from before records nothing: truncation

    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'bertjobs[openvino]')")
    from worker.ml.openvino_engine import load_openvino

    engine = load_openvino(tmp_path / "m", sha256=sha, precision="fp32")
    assert [p.scores["pos"] for p in engine.predict(val_texts)] == pytest.approx(expected, abs=1e-4)
    assert [p.scores["pos"] for p in engine.run(engine.prepare(val_texts))] == pytest.approx(expected, abs=1e-4)
