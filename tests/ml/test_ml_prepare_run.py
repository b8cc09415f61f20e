"""The Classifier split for the pipelined bulk path: prepare (validate + tokenize) then run (forward + rows) gives
what predict_or_fail gives; a long text is tokenized from a prefix without changing any token or prediction."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from worker.ml import batching  # noqa: E402
from worker.ml.batching import encode, encode_capped  # noqa: E402
from worker.ml.predict import Classifier  # noqa: E402

MIXED = ["great excellent lovely", "", "bad\x00text", "x" * 61, "   ", "awful boring miserable", None,
         "superb fantastic wonderful film film film", "dreadful poor terrible film"]

# Long texts of every shape the prefix cut must survive: words, long runs of whitespace and control characters
# (no tokens at all), punctuation, accents, CJK, one endless word, and texts just around the cap.
LONG = [
    "awful terrible " + "film " * 3000,
    "great" + " " * 5000 + "awful " * 20 + "fine " * 2000,
    "\t\n" * 4000 + "lovely film " * 10,
    "word, " * 300 + "!!!?? " * 1000,
    "Élégant café naïve résumé " * 400,
    "電影很好看 " * 800 + "film " * 500,
    "x" * 20000,
    "a " * 767 + "bcdefgh " * 400,
    "a b " * 383 + "c",
    "x" * 1535 + " good",
    "fine. " * 255 + "supercalifragilistic" * 30 + " bad " * 100,
]


class TokensOnlyClassifier(Classifier):
    def predict(self, texts, batch_size=64):
        raise AssertionError("run must not go back to the texts")


def test_prepare_then_run_gives_exactly_what_predict_or_fail_gives(classifier):
    expected = classifier.predict_or_fail(MIXED, batch_size=2, max_chars=60)
    with classifier.own_tokenizer() as tokenizer:
        page = classifier.prepare(MIXED, max_chars=60, tokenizer=tokenizer)
    with classifier.own_tokenizer() as again:
        assert again is tokenizer and again is not classifier.tokenizer  # kept for the next job
    assert (page.size, page.valid) == (len(MIXED), [0, 5, 7, 8])
    assert classifier.run(page, batch_size=2) == expected


def test_a_reader_tokenizer_is_a_shallow_copy_with_its_own_caches_unless_the_tokenizers_own_call_runs(classifier):
    texts = MIXED[:1] + ["Élégant café", "[MASK] it", "fine. film!"]
    reader = classifier._tokenizer_copy()
    assert reader.backend_tokenizer is classifier.tokenizer.backend_tokenizer  # never called: nothing changes it
    ours, theirs = (t.__dict__["_truncating_backends"][classifier.max_length, "right"] for t in (reader,
                                                                                                  classifier.tokenizer))
    assert ours[0] is theirs[0] and ours[1] is not theirs[1]
    assert classifier.prepare(texts, tokenizer=reader) == classifier.prepare(texts)
    windowed = Classifier(classifier.model, classifier.tokenizer, classifier.labels, 16, classifier.device,
                          windows={"long_documents": "windows", "window_overlap": 4, "max_windows": 3})
    assert windowed._tokenizer_copy().backend_tokenizer is not classifier.tokenizer.backend_tokenizer


def test_pieces_of_a_prepared_page_run_alone_give_the_whole_page(classifier):
    page = classifier.prepare(MIXED, max_chars=60)
    whole = classifier.run(page, batch_size=2)
    pieces = [p for lo in range(0, len(MIXED), 4) for p in classifier.run(page.piece(lo, lo + 4), batch_size=2)]
    assert_same_predictions(pieces, whole)
    assert_same_predictions(classifier.run(page.piece(1, 5)), whole[1:5])


def assert_same_predictions(got, expected):
    """Same labels, errors and label sets; scores equal up to float rounding (other batches pad to other lengths,
    and some CPUs' kernels then sum in another order: 1.5e-8 apart seen on an AVX2 host)."""
    assert [(p.label, p.error, p.labels) for p in got] == [(p.label, p.error, p.labels) for p in expected]
    for a, b in zip(got, expected):
        assert (a.score is None) == (b.score is None) and (a.score is None or a.score == pytest.approx(b.score, abs=1e-6))
        assert (a.scores is None) == (b.scores is None)
        if a.scores is not None:
            assert a.scores == pytest.approx(b.scores, abs=1e-6)


def test_a_failing_batch_of_a_prepared_page_is_bisected_until_the_poison_document_fails_alone(classifier):
    poison = classifier.tokenizer("poison", add_special_tokens=False)["input_ids"][0]
    real = Classifier._logits

    class Poisoned(TokensOnlyClassifier):
        def _logits(self, token_ids, batches):
            if any(poison in token_ids[i] for b in batches for i in b):
                raise RuntimeError("the model choked on this input")
            return real(self, token_ids, batches)

    model = Poisoned(classifier.model, classifier.tokenizer, classifier.labels, classifier.max_length,
                     classifier.device)
    texts = ["great excellent lovely", "poison pill", "awful boring miserable", "superb film"]
    results = model.run(model.prepare(texts), batch_size=4)
    assert [r.label for r in results] == ["pos", None, "neg", "pos"]
    assert results[1].error == "prediction failed: RuntimeError: the model choked on this input"


def test_a_long_text_tokenized_from_its_prefix_gives_the_same_tokens_as_the_whole_text(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    for max_length in (8, 128, 512):
        whole, _ = encode(tokenizer, LONG, max_length)
        capped, owners = encode_capped(tokenizer, LONG, max_length)
        assert capped == whole and owners == list(range(len(LONG)))


def test_the_cap_tokenizes_far_fewer_characters_of_long_texts(minilm_path, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    seen = []
    real = batching.tokenize
    monkeypatch.setattr(batching, "tokenize", lambda tok, texts, n: seen.extend(texts) or real(tok, texts, n))
    encode_capped(tokenizer, ["great film " * 9000], 128)
    assert sum(map(len, seen)) <= 128 * batching.CHARS_PER_TOKEN_CAP


def test_predictions_of_long_texts_are_identical_with_and_without_the_cap(classifier, monkeypatch):
    capped = classifier.run(classifier.prepare(LONG), batch_size=4)
    monkeypatch.setattr(batching, "CHARS_PER_TOKEN_CAP", 10**9)
    uncapped = classifier.run(classifier.prepare(LONG), batch_size=4)
    assert capped == uncapped == classifier.predict_or_fail(LONG, batch_size=4)


def test_windowed_models_prepare_every_window(classifier):
    windowed = Classifier(classifier.model, classifier.tokenizer, classifier.labels, 16, classifier.device,
                          windows={"long_documents": "windows", "window_overlap": 4, "max_windows": 3})
    texts = ["great film " * 40, "bad", "awful film " * 10]
    page = windowed.prepare(texts)
    assert [len(w) for w in page.inputs] == [3, 1, 2]
    assert windowed.run(page) == windowed.predict_or_fail(texts)


def test_a_worker_child_enables_tokenizer_parallelism_unless_the_environment_says_otherwise(monkeypatch):
    from worker.ml.hf import enable_tokenizer_parallelism

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    assert enable_tokenizer_parallelism() is True
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    assert enable_tokenizer_parallelism() is False


ODD = ["[CLS] great [SEP] film [MASK] [PAD] [UNK]", "Ünïcödé café 電影 ﬁne — “quoted” \u200b zero\x07width", "a",
       "great  film\n\tand\r\nlines", "!!!", "don't won't can't", "x" * 700, "word " * 300]


def test_token_ids_from_the_rust_backend_are_those_of_the_tokenizers_own_call(minilm_path, rt_rows):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    texts = [r["text"] for r in rt_rows] + ODD + LONG
    for side in ("right", "left"):
        tokenizer.truncation_side = side
        for max_length in (8, 128, 512):
            expected = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
            assert batching.tokenize(tokenizer, texts, max_length) == expected
    assert batching.truncating_backend(tokenizer, 128) is batching.truncating_backend(tokenizer, 128)


def test_predictions_through_the_rust_backend_are_those_through_the_tokenizers_call(classifier, monkeypatch):
    texts = MIXED + ODD + LONG
    fast = classifier.predict_or_fail(texts, batch_size=4, max_chars=10**6)
    pipelined = classifier.run(classifier.prepare(texts, max_chars=10**6), batch_size=4)
    monkeypatch.setattr(batching, "truncating_backend", lambda tokenizer, max_length: None)
    assert fast == pipelined == classifier.predict_or_fail(texts, batch_size=4, max_chars=10**6)


def test_a_pages_softmax_runs_on_one_thread_with_the_same_scores_and_the_thread_count_comes_back():
    from worker.ml.device import one_cpu_thread

    logits = torch.randn(512, 3)
    threads = torch.get_num_threads()
    expected = torch.softmax(logits, dim=-1)
    with one_cpu_thread():
        assert torch.get_num_threads() == 1
        assert torch.equal(torch.softmax(logits, dim=-1), expected)
    assert torch.get_num_threads() == threads
