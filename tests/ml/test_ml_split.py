"""stratified_split: deterministic per seed, every class on both sides, a partition of the rows."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from worker.ml.split import stratified_split


def _labels(sizes: dict[str, int]) -> list[str]:
    """Interleaved labels so that a class's rows are not contiguous."""
    out, remaining = [], dict(sizes)
    while any(remaining.values()):
        for label in sizes:
            if remaining[label]:
                out.append(label)
                remaining[label] -= 1
    return out


def test_the_same_seed_gives_the_same_split():
    labels = _labels({"a": 30, "b": 20, "c": 7})

    assert stratified_split(labels, 0.2, seed=7) == stratified_split(labels, 0.2, seed=7)


def test_a_different_seed_gives_a_different_split():
    labels = _labels({"a": 50, "b": 50})

    assert stratified_split(labels, 0.2, seed=1) != stratified_split(labels, 0.2, seed=2)


@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.5, 0.99])
def test_every_class_with_two_or_more_rows_is_on_both_sides(fraction):
    labels = _labels({"two": 2, "three": 3, "five": 5, "many": 60})

    train, val = stratified_split(labels, fraction, seed=3)

    train_counts = Counter(labels[i] for i in train)
    val_counts = Counter(labels[i] for i in val)
    for label in ("two", "three", "five", "many"):
        assert train_counts[label] >= 1, label
        assert val_counts[label] >= 1, label


def test_a_class_with_a_single_row_stays_in_training():
    labels = ["solo"] + _labels({"a": 10, "b": 10})

    train, val = stratified_split(labels, 0.5, seed=0)

    assert 0 in train and 0 not in val


def test_the_split_is_a_partition_of_all_rows_in_ascending_order():
    labels = _labels({"a": 33, "b": 17, "c": 4})

    train, val = stratified_split(labels, 0.25, seed=11)

    assert set(train).isdisjoint(val)
    assert sorted(train + val) == list(range(len(labels)))
    assert train == sorted(train) and val == sorted(val)


def test_each_class_contributes_its_share_to_validation():
    labels = _labels({"a": 100, "b": 40})

    _, val = stratified_split(labels, 0.2, seed=5)

    counts = Counter(labels[i] for i in val)
    assert counts == {"a": 20, "b": 8}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_a_fraction_outside_the_open_unit_interval_raises_value_error(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(["a", "a", "b", "b"], fraction, seed=0)
