"""The ASCII road through a BERT tokenizer gives exactly the ids of the tokenizer's own call, on every ASCII character
in every position, on random ASCII texts and on texts that must take the usual way."""
from __future__ import annotations

import json
import random
import string

import pytest

pytest.importorskip("tokenizers")

from worker.ml import ascii_tokens, batching  # noqa: E402
from worker.ml.ascii_tokens import ascii_road, encode_ids  # noqa: E402

ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \t\n\r\x0b\x0c" + "".join(
    map(chr, [*range(32), 127]))


def _every_ascii_character():
    texts = []
    for code in range(128):
        c = chr(code)
        texts += [c, f"a{c}b", f"Word{c}word {c}{c} end{c}", f"{c}Start. it{c}s", f"[CLS]{c}x", f"{c}" * 3,
                  f"don't{c}won't, 12{c}5.0%"]
    return texts


def _random_ascii(n: int, seed: int = 0):
    rng = random.Random(seed)
    pieces = [*ALPHABET, "the ", "Film ", "[MASK]", "[SEP", "##ing", "un", "x" * 120, "  ", "...", "'s"]
    return [("".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def test_every_ascii_character_in_every_position_gets_the_tokenizers_own_ids(tokenizer):
    texts = _every_ascii_character()
    for max_length in (8, 128):
        assert batching.tokenize(tokenizer, texts, max_length) == tokenizer(
            texts, truncation=True, max_length=max_length)["input_ids"]


def test_random_ascii_texts_get_the_tokenizers_own_ids_on_both_truncation_sides(tokenizer):
    texts = _random_ascii(3000)
    for side in ("right", "left"):
        tokenizer.truncation_side = side
        for max_length in (8, 128, 512):
            assert batching.tokenize(tokenizer, texts, max_length) == tokenizer(
                texts, truncation=True, max_length=max_length)["input_ids"]
    tokenizer.truncation_side = "right"


def test_the_road_takes_plain_ascii_texts_and_leaves_the_others(tokenizer, rt_rows):
    road = ascii_road(batching.truncating_backend(tokenizer, 128))
    assert road is not None and road.guard == {"["} and road.lowercase
    assert (road.prefix, road.suffix, road.budget) == ([tokenizer.cls_token_id], [tokenizer.sep_token_id], 126)
    assert road.words("It's\tGREAT,  a film!") == ["it", "'", "s", "great", ",", "a", "film", "!"]
    assert road.words("a\x07b\r\nc") == ["ab", "c"]
    for other in ("café", "電影", "a [CLS] b", "[", "x\u200by"):
        assert road.words(other) is None
    taken = sum(road.words(r["text"]) is not None for r in rt_rows)
    assert taken >= 0.9 * len(rt_rows)


def test_the_word_cache_stays_bounded_and_skips_long_words_with_the_same_ids(tokenizer, rt_rows, monkeypatch):
    monkeypatch.setattr(ascii_tokens, "CACHED_WORDS", 300)
    backend = batching.truncating_backend(tokenizer, 128)
    road = ascii_road(backend)
    texts = [r["text"] for r in rt_rows[:400]] + ["a" * 65 + " film", "b" * 64 + " film"]
    expected = [e.ids for e in backend.encode_batch_fast(texts)]
    for start in range(0, len(texts), 10):  # pages of 10: the cache fills, empties and fills again
        assert encode_ids(backend, road, texts[start:start + 10]) == expected[start:start + 10]
        assert len(road.cache) <= 300
    assert "b" * 64 in road.cache and "a" * 65 not in road.cache


def test_a_page_mixing_both_roads_keeps_its_order(tokenizer):
    texts = ["Great film", "Élégant café", "[MASK] here", "fine.", "電影很好看", "ok"] * 5
    backend = batching.truncating_backend(tokenizer, 128)
    assert encode_ids(backend, ascii_road(backend), texts) == [e.ids for e in backend.encode_batch_fast(texts)]


def _variant(backend, **changes):
    config = json.loads(backend.to_str())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return type(backend).from_str(json.dumps(config))


def test_a_cased_bert_tokenizer_keeps_the_case_and_its_ids(tokenizer):
    cased = _variant(batching.truncating_backend(tokenizer, 128), normalizer={"lowercase": False})
    road = ascii_road(cased)
    assert road is not None and not road.lowercase
    texts = _random_ascii(1000, seed=1) + _every_ascii_character()
    assert encode_ids(cased, road, texts) == [e.ids for e in cased.encode_batch_fast(texts)]


def test_tokenizers_of_another_kind_get_no_road(tokenizer):
    backend = batching.truncating_backend(tokenizer, 128)
    assert ascii_road(_variant(backend, normalizer={"type": "Lowercase"})) is None
    assert ascii_road(_variant(backend, normalizer={"clean_text": False})) is None
    assert ascii_road(_variant(backend, pre_tokenizer={"type": "Whitespace"})) is None
    assert ascii_road(_variant(backend, normalizer=None)) is None
    spaced = _variant(backend)
    spaced.add_tokens([" film"])
    assert ascii_road(spaced) is None


def test_a_copy_of_the_tokenizer_shares_the_backends_and_gets_its_own_word_cache(tokenizer):
    import copy

    batching.tokenize(tokenizer, ["great film"], 128)
    backend, road = tokenizer.__dict__["_truncating_backends"][128, tokenizer.truncation_side]
    assert "film" in road.cache
    copied = copy.deepcopy(tokenizer)
    own_backend, own = copied.__dict__["_truncating_backends"][128, tokenizer.truncation_side]
    assert own_backend is backend and own.words_backend is road.words_backend
    assert own is not road and own.cache == {}
    assert batching.tokenize(copied, ["great film"], 128) == batching.tokenize(tokenizer, ["great film"], 128)
