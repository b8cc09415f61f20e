"""Long documents: head+tail truncation, pooling window logits, sampling training windows."""
from __future__ import annotations

import random

import pytest
import torch

from worker.ml.batching import average_by_owner
from worker.ml.longdocs import encode_head_tail, head_tail, pool_logits, sample_windows


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


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def test_encoded_head_tail_has_the_special_tokens_the_start_and_the_end_of_the_text(tokenizer):
    words = [f"word{i}" for i in range(300)]
    text = " ".join(["opening", "line"] + words + ["closing", "verdict"])

    ids = encode_head_tail(tokenizer, [text, "short text"], max_length=32, head_fraction=0.25)

    long, short = ids
    assert len(long) == 32 and long[0] == tokenizer.cls_token_id and long[-1] == tokenizer.sep_token_id
    decoded = tokenizer.decode(long, skip_special_tokens=True)
    assert decoded.startswith("opening line") and decoded.endswith("closing verdict")
    assert long[1:8] == tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][:7]  # head: 30 // 4
    assert short == tokenizer("short text")["input_ids"]
    assert encode_head_tail(tokenizer, [], 32) == []


LOGITS = torch.tensor([[1.0, 0.0], [3.0, -2.0], [0.0, 4.0], [-1.0, 1.0]])
OWNERS = [0, 0, 1, 1]


def test_mean_pooling_is_the_average_the_windows_path_uses():
    expected = torch.tensor([[2.0, -1.0], [-0.5, 2.5]])

    assert torch.equal(pool_logits(LOGITS, OWNERS, 2, "mean"), expected)
    assert torch.equal(pool_logits(LOGITS, OWNERS, 2, "mean"), average_by_owner(LOGITS, OWNERS, 2))


def test_max_pooling_takes_each_labels_largest_window_logit():
    assert torch.equal(pool_logits(LOGITS, OWNERS, 2, "max"), torch.tensor([[3.0, 0.0], [0.0, 4.0]]))


def test_confidence_pooling_weights_each_window_by_its_top_probability():
    weights = torch.softmax(LOGITS, dim=-1).max(dim=-1).values
    first = (LOGITS[0] * weights[0] + LOGITS[1] * weights[1]) / (weights[0] + weights[1])

    pooled = pool_logits(LOGITS, OWNERS, 2, "confidence")

    assert torch.allclose(pooled[0], first)
    assert pooled[0, 0] > 2.0  # the confident window (3, -2) counts more than the unsure one (1, 0)


def test_one_window_per_document_is_returned_as_it_is_whatever_the_pooling():
    for how in ("mean", "max", "confidence"):
        assert torch.equal(pool_logits(LOGITS, [0, 1, 2, 3], 4, how), LOGITS)
    with pytest.raises(ValueError):
        pool_logits(LOGITS, OWNERS, 2, "median")


def test_sampling_takes_k_windows_per_document_and_all_of_a_short_one():
    owners = [0, 0, 0, 0, 1, 2, 2, 2]

    chosen = sample_windows(owners, 2, random.Random(0))

    per_document = [sum(1 for i in chosen if owners[i] == d) for d in range(3)]
    assert per_document == [2, 1, 2] and chosen == sorted(chosen)
    assert sample_windows(owners, 2, random.Random(0)) == chosen  # the same rng seed, the same windows
    assert sample_windows(owners, 4, random.Random(0)) == list(range(8))


def test_over_epochs_sampling_reaches_every_window():
    owners = [0] * 5 + [1] * 5
    rng = random.Random(3)

    seen = set()
    for _ in range(20):
        seen.update(sample_windows(owners, 1, rng))

    assert seen == set(range(10))
    with pytest.raises(ValueError):
        sample_windows(owners, 0, rng)
