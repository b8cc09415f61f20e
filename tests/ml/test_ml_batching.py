"""Batching: length-sorted index batches and dynamic padding."""
from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from worker.ml.batching import collate, iter_batches, length_grouped_batches, sorted_batches, tokenize  # noqa: E402

LENGTHS = [5, 17, 3, 9, 9, 1, 30, 12, 4, 8, 22, 6, 2]


def _flatten(batches):
    return [i for batch in batches for i in batch]


def test_sorted_batches_cover_every_index_exactly_once():
    batches = sorted_batches(LENGTHS, batch_size=4)

    assert sorted(_flatten(batches)) == list(range(len(LENGTHS)))


def test_sorted_batches_go_from_longest_to_shortest_in_full_batches():
    batches = sorted_batches(LENGTHS, batch_size=4)

    lengths_in_order = [LENGTHS[i] for i in _flatten(batches)]
    assert lengths_in_order == sorted(LENGTHS, reverse=True)
    assert [len(b) for b in batches] == [4, 4, 4, 1]


def test_sorted_batches_keep_input_order_between_texts_of_equal_length():
    assert sorted_batches([2, 5, 2, 5], batch_size=2) == [[1, 3], [0, 2]]


def test_sorted_batches_of_nothing_are_empty():
    assert sorted_batches([], batch_size=8) == []


@pytest.mark.parametrize(("n", "batch_size", "window_batches"), [(13, 4, 50), (103, 8, 3), (64, 8, 1)])
def test_length_grouped_batches_cover_every_index_exactly_once(n, batch_size, window_batches):
    rng = random.Random(n)
    lengths = [rng.randint(1, 100) for _ in range(n)]

    batches = length_grouped_batches(lengths, batch_size, random.Random(0), window_batches=window_batches)

    assert sorted(_flatten(batches)) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert len(batches) == -(-n // batch_size)


def test_length_grouped_batches_group_similar_lengths_when_one_window_covers_everything():
    lengths = list(range(40))
    random.Random(3).shuffle(lengths)

    batches = length_grouped_batches(lengths, batch_size=8, rng=random.Random(1), window_batches=50)

    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert spans == [(0, 7), (8, 15), (16, 23), (24, 31), (32, 39)]


def test_length_grouped_batches_are_reproducible_with_the_same_rng_seed():
    a = length_grouped_batches(LENGTHS, 3, random.Random(42))
    b = length_grouped_batches(LENGTHS, 3, random.Random(42))

    assert a == b


def test_collate_pads_to_the_longest_sequence_and_masks_the_padding():
    out = collate([[101, 7, 102], [101, 102], [101, 5, 6, 102]], pad_id=0)

    assert out["input_ids"].tolist() == [[101, 7, 102, 0], [101, 102, 0, 0], [101, 5, 6, 102]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert out["input_ids"].dtype == torch.long and out["attention_mask"].dtype == torch.long


def test_collate_uses_the_given_pad_id_and_rounds_the_width_up_to_the_multiple():
    out = collate([[1, 2, 3], [4]], pad_id=99, pad_to_multiple=8)

    assert out["input_ids"].shape == (2, 8)
    assert out["input_ids"].tolist() == [[1, 2, 3] + [99] * 5, [4] + [99] * 7]
    assert out["attention_mask"].sum(dim=1).tolist() == [3, 1]


def test_collate_does_not_pad_past_a_width_that_is_already_a_multiple():
    assert collate([[1] * 8, [2]], pad_id=0, pad_to_multiple=8)["input_ids"].shape == (2, 8)


def test_iter_batches_yields_each_batch_with_its_indices_on_cpu_without_extra_padding():
    token_ids = [[1, 2], [3, 4, 5, 6], [7]]

    out = list(iter_batches(token_ids, [[1, 2], [0]], pad_id=0, device=torch.device("cpu")))

    assert [batch for batch, _ in out] == [[1, 2], [0]]
    assert out[0][1]["input_ids"].tolist() == [[3, 4, 5, 6], [7, 0, 0, 0]]
    assert out[1][1]["input_ids"].tolist() == [[1, 2]]


def test_tokenize_truncates_to_max_length_and_keeps_the_special_tokens(tiny_base_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    long_text = " ".join(["word"] * 50)

    ids = tokenize(tokenizer, ["short text", long_text], max_length=12)

    assert len(ids) == 2
    assert len(ids[1]) == 12
    assert ids[0][0] == tokenizer.cls_token_id and ids[0][-1] == tokenizer.sep_token_id
    assert ids[1][0] == tokenizer.cls_token_id and ids[1][-1] == tokenizer.sep_token_id
    assert tokenizer.pad_token_id not in ids[0]


def test_tokenize_of_no_texts_is_an_empty_list(tiny_base_model):
    from transformers import AutoTokenizer

    assert tokenize(AutoTokenizer.from_pretrained(tiny_base_model), [], max_length=16) == []


def test_token_budget_batches_hold_at_most_the_budget_in_padded_tokens_and_cover_every_text_once():
    from worker.ml.batching import token_budget_batches

    lengths = [5, 120, 7, 30, 30, 64, 9, 128, 12, 3] * 20
    batches = token_budget_batches(lengths, batch_size=8, tokens_per_text=32)  # 256 tokens a batch

    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 256 or len(b) <= 2 for b in batches)
    assert all(len(b) <= 32 for b in batches)
    assert max(len(b) for b in batches) > 8 > min(len(b) for b in batches)  # many short texts, few long ones
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)


def test_very_long_texts_still_share_a_batch_a_quarter_of_batch_size_at_least():
    from worker.ml.batching import token_budget_batches

    batches = token_budget_batches([512] * 40, batch_size=64)  # 2,048 tokens would hold 4 of them

    assert [len(b) for b in batches] == [16, 16, 8]
