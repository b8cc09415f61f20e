"""Refusals that happen before any weights are loaded: the training set and the base model."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("torch")

from worker.ml.errors import InvalidTrainingData, ModelNotFound  # noqa: E402
from worker.ml.preflight import check_base_model, validate_training_set  # noqa: E402


def test_a_set_with_two_classes_of_two_rows_is_accepted():
    assert validate_training_set(["t1", "t2", "t3", "t4"], ["a", "b", "a", "b"]) is None


def test_no_rows_is_refused():
    with pytest.raises(InvalidTrainingData, match="no labelled documents"):
        validate_training_set([], [])


def test_a_single_class_is_refused_and_named():
    with pytest.raises(InvalidTrainingData, match=r"only one class \('spam'\) in 3 documents; need at least two"):
        validate_training_set(["a", "b", "c"], ["spam", "spam", "spam"])


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_rows_without_a_label_are_counted_in_the_refusal(blank):
    with pytest.raises(InvalidTrainingData, match="2 of 5 documents have no label"):
        validate_training_set(["t"] * 5, ["a", blank, "b", blank, "a"])


def test_a_class_with_a_single_example_is_refused_and_named():
    with pytest.raises(InvalidTrainingData, match=r"class with a single example cannot be split.*'rare'"):
        validate_training_set(["t"] * 5, ["a", "a", "rare", "b", "b"])


def test_all_single_example_classes_are_named_in_sorted_order():
    with pytest.raises(InvalidTrainingData, match=r"classes with a single example .*: 'x', 'y'$"):
        validate_training_set(["t"] * 4, ["y", "a", "a", "x"])


@pytest.mark.parametrize(("texts", "labels"), [(["t1", "t2"], []), (["t1", "t2", "t3"], ["a", "a", "b", "b"])])
def test_texts_and_labels_of_different_lengths_are_refused(texts, labels):
    with pytest.raises(InvalidTrainingData):
        validate_training_set(texts, labels)


def test_a_local_folder_with_a_config_is_a_valid_base_model(tiny_base_model):
    assert check_base_model(tiny_base_model) is None


def test_a_missing_local_folder_is_model_not_found(tmp_path):
    missing = tmp_path / "no-such-model"

    with pytest.raises(ModelNotFound, match="does not exist or has no config.json"):
        check_base_model(str(missing))


def test_a_local_folder_without_config_json_is_model_not_found(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")

    with pytest.raises(ModelNotFound, match="no config.json"):
        check_base_model(str(tmp_path))


def test_an_unknown_hub_name_is_model_not_found_when_offline():
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("needs HF_HUB_OFFLINE=1 (set by the ML conftest unless overridden)")

    with pytest.raises(ModelNotFound, match=r"'bertjobs-tests/no-such-model-3f9c'.*offline"):
        check_base_model("bertjobs-tests/no-such-model-3f9c")


def test_model_not_found_is_an_ml_error_so_it_is_not_retried():
    from worker.ml.errors import MLError

    assert issubclass(ModelNotFound, MLError)
