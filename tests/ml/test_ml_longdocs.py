"""Long documents read as windows: pooling window logits, sampling training windows."""
from __future__ import annotations

import random

import pytest
import torch

from worker.ml.batching import average_by_owner
from worker.ml.longdocs import pool_logits, sample_windows


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
