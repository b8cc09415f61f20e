"""The `bertjobs` command answers bad input with one clear line and exit status 2, never a traceback."""
from __future__ import annotations

import pytest

from worker.cli import main


def test_a_database_without_the_schema_says_to_upgrade_it(env_db, tmp_path, capsys):
    env_db(f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["jobs"]) == 2
    assert "has no bertjobs schema yet; run: bertjobs db upgrade" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line(env_db, capsys):
    env_db("postgresql://nobody@127.0.0.1:1/none")
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: database at postgresql+psycopg://nobody@127.0.0.1:1/none") and err.count("\n") == 1


def test_unknown_jobs_and_models_and_bad_references_are_clear_errors(env_db, sqlite_url, capsys):
    env_db(sqlite_url)
    for action in ("show", "wait", "cancel"):
        assert main(["jobs", action, "99"]) == 2
        assert capsys.readouterr().err == "error: no job 99\n"
    assert main(["models", "show", "ghost:1"]) == 2
    assert "no ready model version matches 'ghost:1'" in capsys.readouterr().err
    assert main(["classify", "--collection", "c", "--model", "m:latest", "--inline"]) == 2
    assert "model version must be a number" in capsys.readouterr().err
    assert main(["train", "--collection", "c", "--base-model", "x", "--learning-rate", "7", "--inline"]) == 2
    assert "learning_rate must be between 0 and 1" in capsys.readouterr().err


def test_data_check_prints_the_report_and_fails_on_blocking_problems(env_db, sqlite_url, capsys):
    import json

    from helpers import load_documents, sentiment_rows

    env_db(sqlite_url)
    load_documents(sqlite_url, "good", sentiment_rows(10))
    load_documents(sqlite_url, "one", [{"external_id": "a", "text": "x", "label": "p"}])
    assert main(["data", "check", "--collection", "good"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_counts"] == {"neg": 5, "pos": 5} and report["length"]["unit"] == "words (+2)"
    assert main(["data", "check", "--collection", "one"]) == 1
    assert "need at least two" in capsys.readouterr().out
    for flags, reason in ((["--val-fraction", "0"], "val_fraction must be between 0 and 1"),
                          (["--base-model", "/no/such/model"], "base model '/no/such/model': no tokenizer")):
        assert main(["data", "check", "--collection", "good", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and reason in err and err.count("\n") == 1, err


def test_data_check_help_shows_the_checks_own_options_with_trainings_defaults(capsys):
    from worker.ml.config import TrainConfig

    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone
    assert exit_.value.code == 0 and out.startswith("usage: bertjobs data check")
    for flag in ("--collection", "--base-model", "--max-length", "--val-fraction", "--seed", "--multi-label"):
        assert flag in out, flag
    for name in ("max_length", "val_fraction", "seed"):
        assert f"(default: {getattr(TrainConfig, name)})" in out, name


def test_every_training_option_has_a_flag_and_json_flags_take_json_or_a_word(env_db, sqlite_url, capsys):
    import json
    from dataclasses import fields

    from helpers import load_documents, sentiment_rows
    from worker.ml.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for name in {f.name for f in fields(TrainConfig)} - {"base_model"}:
        assert f"--{name.replace('_', '-')} " in help_text, name
    env_db(sqlite_url, broker_url="redis://127.0.0.1:1/0")  # never reached: the job is saved, not published
    load_documents(sqlite_url, "c", sentiment_rows(8))
    assert main(["train", "--collection", "c", "--base-model", "bert-base-uncased", "--class-weights", "auto",
                 "--search-space", '{"epochs": [2, 3]}', "--trials", "2"]) == 1
    assert "is saved but the broker at redis://127.0.0.1:1/0 could not be reached" in capsys.readouterr().err
    assert main(["jobs", "show", "1", "--json"]) == 0
    options = json.loads(capsys.readouterr().out)["params"]["options"]
    assert options == {"class_weights": "auto", "search_space": {"epochs": [2, 3]}, "trials": 2}
    assert main(["train", "--collection", "c", "--base-model", "x", "--class-weights", '{"a": -1}', "--inline"]) == 2
    assert "class weights must be positive numbers" in capsys.readouterr().err


def test_data_check_of_a_multilabel_collection_counts_each_label_and_the_leaks(env_db, sqlite_url, capsys):
    import json

    from helpers import load_documents, topic_corpus

    env_db(sqlite_url)
    texts, sets = topic_corpus(30)
    rows = [{"external_id": f"t{i}", "text": t, "labels": s} for i, (t, s) in enumerate(zip(texts, sets))]
    rows += [{"external_id": f"copy{i}", "text": texts[i], "labels": sets[i]} for i in range(30)]
    load_documents(sqlite_url, "topics", rows)
    assert main(["data", "check", "--collection", "topics", "--multi-label"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_counts"] == {"action": 30, "comedy": 30, "romance": 30}  # 15 + 15 copies each
    assert report["exact_duplicates"] == 30 and report["validation_texts_seen_in_training"] > 0
