"""The data check finds what would quietly spoil a training run."""
from __future__ import annotations

import pytest

from worker.ml.config import TrainConfig
from worker.ml.datacheck import check_data, check_training_data
from worker.ml.errors import ModelNotFound
from worker.ml.split import leaking_validation
from worker.ml.text import normalise


def test_duplicates_conflicts_empties_and_imbalance_are_counted():
    texts = ["A great film!", "a great film", "A great film!", "awful", "Awful.", "", "fine", "fine too",
             "ok", "meh"]
    labels = ["pos", "pos", "pos", "neg", "pos", "neg", "pos", "pos", "pos", "pos"]
    report = check_data(texts, labels, max_length=3)
    assert report["class_counts"] == {"neg": 2, "pos": 8}
    assert report["imbalance_ratio"] == 4.0
    assert report["exact_duplicates"] == 1 and report["near_duplicates"] == 2
    assert report["conflicting_label_groups"] == 1
    assert report["conflict_examples"][0]["labels"] == ["neg", "pos"]
    assert report["empty_texts"] == 1
    assert report["length"]["max_length"] == 3 and report["length"]["truncated_share"] > 0
    assert report["blocking"] == []
    assert any("conflicting labels" in w for w in report["warnings"])


def test_one_class_or_nothing_is_blocking():
    assert check_data([], [])["blocking"] == ["nothing to train on"]
    assert check_data(["a", "b"], ["x", "x"])["blocking"] == ["only 1 class; need at least two"]


def test_token_lengths_come_from_the_tokenizer(tiny_base_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    report = check_data(["one two three", "four"], ["a", "b"], tokenizer=tokenizer, max_length=4)
    assert report["length"]["unit"] == "tokens"
    assert report["length"]["max"] == 5 and report["length"]["truncated_share"] == 0.5


def test_validation_texts_seen_in_training_are_found():
    texts = ["Good film.", "bad film", "good film", "another"]
    assert normalise("Good film.") == normalise("good   FILM")
    assert leaking_validation(texts, train_idx=[0, 1], val_idx=[2, 3]) == [2]


def test_the_training_check_caps_max_length_at_the_tokenizers_maximum_as_training_does(tiny_base_model):
    texts, labels = ["a good film"] * 2 + ["a bad film", "another bad one"], ["pos", "pos", "neg", "neg"]
    report = check_training_data(tiny_base_model, texts, labels, TrainConfig(tiny_base_model, max_length=512))
    assert report["length"]["unit"] == "tokens" and report["length"]["max_length"] == 128  # the tokenizer's maximum
    words = check_training_data(None, texts, labels, TrainConfig("unused", max_length=512))
    assert words["length"]["unit"] == "words (+2)" and words["length"]["max_length"] == 512
    assert words["exact_duplicates"] == 1 and "validation_texts_seen_in_training" in words


def test_the_training_check_names_a_base_model_without_a_tokenizer(tmp_path):
    with pytest.raises(ModelNotFound, match="no tokenizer could be loaded"):
        check_training_data(str(tmp_path / "nothing"), ["a", "b"], ["x", "y"], TrainConfig("x"))


def test_windows_needed_counts_overlapping_windows_up_to_the_cap():
    from worker.ml.datacheck import windows_needed

    # max_length 10: 8 text tokens per window; overlap 2: each next window starts 6 tokens on.
    assert windows_needed(10, 10, 2, 16) == 1  # 8 text tokens fit one window
    assert windows_needed(11, 10, 2, 16) == 2
    assert windows_needed(2 + 8 + 6 * 3, 10, 2, 16) == 4
    assert windows_needed(2 + 8 + 6 * 3 + 1, 10, 2, 16) == 5
    assert windows_needed(10_000, 10, 2, 16) == 16


def test_long_texts_get_a_suggestion_with_what_windows_would_cost():
    texts = [" ".join(f"w{i}" for i in range(n)) for n in (4, 20, 40, 6)]
    report = check_data(texts, ["a", "b", "a", "b"], max_length=10, window_overlap=2, max_windows=4)
    # words + 2 per text: 6, 22, 42, 8 -> windows 1, 3, 4 (6 needed, cut at 4), 1
    assert report["windows"] == {"model_inputs": 9, "per_document": 2.25, "window_overlap": 2, "max_windows": 4,
                                 "texts_cut_at_max_windows": 1}
    [advice] = [w for w in report["warnings"] if "--long-documents windows" in w]
    # 2.2x truncation's inputs is over the 2x the recommended setting allows: two random windows per epoch
    assert "recommended --long-documents windows --window-pooling max --windows-per-epoch 2" in advice
    assert "6 model inputs per epoch for 4 texts, 1.5x truncation's (all 9 windows would be 2.2x)" in advice
    assert "--max-windows 4" in advice
    assert isinstance(report["length"]["median"], int) and report["length"]["median"] == 15  # (8 + 22) / 2

    windows = check_data(texts, ["a", "b", "a", "b"], max_length=10, window_overlap=2, max_windows=4,
                         long_documents="windows")
    assert not any("--long-documents windows" in w for w in windows["warnings"])
    assert any("1 texts need more than --max-windows 4" in w for w in windows["warnings"])


def test_the_recommended_setting_reads_every_window_each_epoch_when_that_costs_at_most_twice_truncation():
    texts = [" ".join(f"w{i}" for i in range(n)) for n in (4, 20, 6, 6)]  # windows 1, 3, 1, 1: 1.5x

    report = check_data(texts, ["a", "b", "a", "b"], max_length=10, window_overlap=2, max_windows=4)

    [advice] = [w for w in report["warnings"] if "--long-documents windows" in w]
    assert "recommended --long-documents windows --window-pooling max (" in advice
    assert "6 model inputs for 4 texts, 1.5x" in advice and "--windows-per-epoch" not in advice
    sampled = check_data(texts, ["a", "b", "a", "b"], max_length=10, window_overlap=2, max_windows=4,
                         long_documents="windows", windows_per_epoch=2)
    assert sampled["windows"]["inputs_per_epoch"] == 5


def test_data_check_takes_the_window_flags_of_the_training_that_would_follow(env_db, sqlite_url, capsys):
    import json

    from helpers import load_documents
    from worker.cli import main

    env_db(sqlite_url)
    rows = [{"external_id": f"d{i}", "text": " ".join(["word"] * (30 + i)), "label": "ab"[i % 2]} for i in range(8)]
    load_documents(sqlite_url, "long", rows)
    assert main(["data", "check", "--collection", "long", "--max-length", "16", "--long-documents", "windows",
                 "--window-overlap", "4", "--max-windows", "8", "--windows-per-epoch", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["windows"]["window_overlap"] == 4 and report["windows"]["max_windows"] == 8
    assert report["windows"]["per_document"] > 2 and report["windows"]["inputs_per_epoch"] == 8


def test_the_recommended_options_are_valid_training_options_that_sample_only_past_twice_truncations_cost():
    from worker.ml.datacheck import recommended_options

    assert recommended_options(2.0) == {"long_documents": "windows", "window_pooling": "max"}
    assert recommended_options(2.8) == {"long_documents": "windows", "window_pooling": "max", "windows_per_epoch": 2}
    assert TrainConfig.from_dict({"base_model": "m", **recommended_options(2.8)}).sampled_windows == 2
