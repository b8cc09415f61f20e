"""TrainConfig: built from client JSON, validated before anything is enqueued."""
from __future__ import annotations

import json
import math

import pytest

from worker.ml.config import TrainConfig
from worker.ml.errors import InvalidTrainingData, MLError


def test_only_the_base_model_is_required_and_the_rest_defaults_to_the_bert_recipe():
    config = TrainConfig.from_dict({"base_model": "some/model"})

    assert config == TrainConfig(base_model="some/model")
    assert (config.epochs, config.batch_size, config.learning_rate) == (None, 32, 5e-5)  # epochs: decided per set
    assert config.select_metric == "macro_f1"


@pytest.mark.parametrize("documents, epochs", [
    (12808, 3),  # 10,246 training documents: 321 steps an epoch
    (3321, 3),   # 2,657 training documents: 84 steps an epoch, 252 in three
    (3300, 4),   # 2,640: 83 steps an epoch, 249 in three: one more epoch
    (1500, 7),   # 1,200: 38 steps an epoch
    (897, 10),   # 718: 23 steps an epoch would need 11: the cap
    (40, 10),
])
def test_unset_epochs_are_three_or_enough_for_the_minimum_of_optimizer_steps_at_most_ten(documents, epochs):
    assert TrainConfig(base_model="m").for_documents(documents).epochs == epochs


def test_given_epochs_are_kept_whatever_the_size_and_accumulation_counts_steps_not_batches():
    assert TrainConfig(base_model="m", epochs=1).for_documents(40).epochs == 1
    assert TrainConfig(base_model="m", epochs=5).for_documents(100_000).epochs == 5
    # 12,808 documents at batch 32: 321 batches an epoch, but 81 optimizer steps with accumulation 4
    assert TrainConfig(base_model="m", gradient_accumulation=4).for_documents(12808).epochs == 4
    assert TrainConfig.from_dict({"base_model": "m", "epochs": None}).epochs is None


def test_a_missing_base_model_is_invalid_training_data():
    with pytest.raises(InvalidTrainingData, match="base_model"):
        TrainConfig.from_dict({"epochs": 2})


def test_unknown_options_are_refused_and_named_in_sorted_order():
    with pytest.raises(InvalidTrainingData, match=r"unknown training option\(s\): lr, n_epochs"):
        TrainConfig.from_dict({"base_model": "m", "n_epochs": 3, "lr": 1e-4})


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("epochs", 0, "epochs must be at least 1"),
        ("batch_size", 0, "batch_size must be at least 1"),
        ("learning_rate", 0.0, "learning_rate must be between 0 and 1"),
        ("learning_rate", 1.0, "learning_rate must be between 0 and 1"),
        ("learning_rate", math.nan, "learning_rate must be a finite number"),
        ("warmup_ratio", 1.0, r"warmup_ratio must be in \[0, 1\)"),
        ("warmup_ratio", -0.1, r"warmup_ratio must be in \[0, 1\)"),
        ("weight_decay", -0.01, r"weight_decay must be in \[0, 1\)"),
        ("max_length", 7, "max_length must be between 8 and 8192"),
        ("max_length", 8193, "max_length must be between 8 and 8192"),
        ("val_fraction", 0.0, "val_fraction must be between 0 and 1"),
        ("val_fraction", 1.0, "val_fraction must be between 0 and 1"),
        ("select_metric", "loss", "select_metric must be macro_f1 or accuracy"),
    ],
)
def test_an_out_of_range_value_is_refused_with_a_message_naming_the_option(option, value, message):
    with pytest.raises(InvalidTrainingData, match=message):
        TrainConfig.from_dict({"base_model": "m", option: value})


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidTrainingData) as info:
        TrainConfig.from_dict({"base_model": "m", "epochs": 0, "batch_size": 0, "select_metric": "f2"})

    message = str(info.value)
    assert "epochs must be at least 1" in message
    assert "batch_size must be at least 1" in message
    assert "select_metric" in message


@pytest.mark.parametrize("value", [8, 8192])
def test_max_length_bounds_are_inclusive(value):
    assert TrainConfig.from_dict({"base_model": "m", "max_length": value}).max_length == value


def test_invalid_training_data_is_an_ml_error_so_it_is_not_retried():
    assert issubclass(InvalidTrainingData, MLError)


def test_to_dict_round_trips_through_from_dict_and_json():
    config = TrainConfig(base_model="m", epochs=5, batch_size=4, learning_rate=1e-4, weight_decay=0.0,
                         warmup_ratio=0.0, max_length=64, val_fraction=0.3, seed=1, device="cpu",
                         precision="fp32", select_metric="accuracy")

    as_json = json.dumps(config.to_dict())

    assert TrainConfig.from_dict(json.loads(as_json)) == config


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("epochs", "3"),
        ("learning_rate", None),
        ("base_model", None),
        ("epochs", 2.5),
        ("weight_decay", math.nan),
        ("precision", "fp64"),
        ("device", "banana"),
    ],
)
def test_a_value_of_the_wrong_type_or_outside_the_allowed_set_is_invalid_training_data(option, value):
    with pytest.raises(InvalidTrainingData):
        TrainConfig.from_dict({"base_model": "m", option: value})


@pytest.mark.parametrize("options, message", [
    ({"lr_schedule": "exponential"}, "lr_schedule must be one of linear, cosine, constant"),
    ({"gradient_accumulation": 0}, "gradient_accumulation must be between 1 and 1024"),
    ({"early_stopping_patience": -1}, "early_stopping_patience must be 0"),
    ({"class_weights": "balanced"}, "class_weights must be null"),
    ({"class_weights": {"a": 0}}, "class weights must be positive numbers: 'a'"),
    ({"long_documents": "chunks"}, "long_documents must be one of truncate, head_tail, windows"),
    ({"long_documents": "windows", "max_length": 64, "window_overlap": 40}, "window_overlap must be between 0 and half"),
    ({"max_windows": 0}, "max_windows must be between 1 and 256"),
    ({"trials": 101}, "trials must be between 0 and 100"),
    ({"trials": 2, "search_space": {"dropout": [0.1]}}, "search_space may vary .* not 'dropout'"),
    ({"trials": 2, "search_space": {"learning_rate": []}}, r"search_space\['learning_rate'\] must be a non-empty list"),
    ({"trials": 2, "search_space": {"learning_rate": [3.0]}}, "learning_rate must be between 0 and 1"),
    ({"trials": 2, "search_space": {"epochs": list(range(1, 30))}}, r"search_space\['epochs'\] may hold 20 values"),
])
def test_the_newer_training_options_are_validated_before_anything_runs(options, message):
    with pytest.raises(InvalidTrainingData, match=message):
        TrainConfig.from_dict({"base_model": "m", **options})


def test_trial_configurations_are_distinct_seeded_draws_from_the_space():
    config = TrainConfig(base_model="m", trials=4, search_space={"learning_rate": [1e-5, 2e-5, 3e-5], "epochs": [2, 3]})

    trials = config.trial_configs()

    assert len(trials) == 4 and len({(t.learning_rate, t.epochs) for t in trials}) == 4
    assert [(t.learning_rate, t.epochs) for t in trials] == [(t.learning_rate, t.epochs) for t in config.trial_configs()]
    assert all(t.trials == 0 and t.search_space is None and t.batch_size == 32 for t in trials)
    assert len(TrainConfig(base_model="m", trials=50, search_space={"epochs": [2, 3]}).trial_configs()) == 2
    assert len(TrainConfig(base_model="m", trials=5, search_space={"epochs": [3, 3, 2]}).trial_configs()) == 2
