"""LabelMap: labels sorted, ids in that order."""
from __future__ import annotations

import pytest

from worker.ml.labels import LabelMap


def test_labels_are_sorted_and_deduplicated_whatever_the_input_order():
    label_map = LabelMap.from_labels(["sports", "business", "world", "sports", "business", "arts"])

    assert label_map.labels == ("arts", "business", "sports", "world")
    assert len(label_map) == 4


def test_ids_follow_the_sorted_order_in_both_directions():
    label_map = LabelMap.from_labels(["pos", "neg", "neutral"])

    assert label_map.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    assert label_map.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert all(label_map.id2label[i] == label for label, i in label_map.label2id.items())


def test_encode_maps_each_label_to_its_id_keeping_the_input_order():
    label_map = LabelMap.from_labels(["b", "a", "c"])

    assert label_map.encode(["c", "a", "a", "b"]) == [2, 0, 0, 1]


def test_non_string_labels_are_stored_and_encoded_as_strings():
    label_map = LabelMap.from_labels([2, 10, 1])

    assert label_map.labels == ("1", "10", "2")  # string order, not numeric order
    assert label_map.encode([10, "2"]) == [1, 2]


def test_encoding_a_label_outside_the_map_raises_key_error():
    label_map = LabelMap.from_labels(["a", "b"])

    with pytest.raises(KeyError):
        label_map.encode(["c"])


def test_label_maps_built_from_the_same_labels_are_equal():
    assert LabelMap.from_labels(["x", "y"]) == LabelMap.from_labels(["y", "x", "y"])
