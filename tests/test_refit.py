"""`train --refit` as users reach it (issue #15): after the validation split chose the epochs, the recipe trains
again on all labelled documents and that model is kept; the scores shown stay the validation run's, the lineage
records the refit, the temperature is the selection run's, and the kept model is what predict uses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker.cli import main
from worker.ml.artifact import read_metadata


def _train(tiny_base_model: str, *extra: str) -> int:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_OPTIONS.items()]
    return main(["train", "--collection", "sent", "--base-model", tiny_base_model, "--name", "sent", "--inline",
                 *flags, *extra])


def _versions(url: str) -> list:
    with session_factory_for(url).begin() as s:
        versions = [repo.resolve_model_version(s, f"sent:{v}") for v in (1, 2)]
        for mv in versions:
            s.expunge(mv)
        return versions


@pytest.mark.slow
def test_train_refits_by_default_keeps_the_validation_runs_scores_and_records_the_refit(any_db_url, env_db,
                                                                                        tiny_base_model, capsys):
    url = env_db(any_db_url)
    load_documents(url, "sent", sentiment_rows(60))
    assert _train(tiny_base_model, "--no-refit") == 0
    assert "refit:" not in capsys.readouterr().out
    assert _train(tiny_base_model) == 0  # the default
    out = capsys.readouterr().out
    plain, refitted = _versions(url)

    epochs = refitted.metrics["best_epoch"]
    assert refitted.lineage["refit"] == {"epochs": epochs, "train_size": 60} and plain.lineage["refit"] is None
    assert f"refit: the model kept was trained {epochs} epoch(s) on all 60 labelled documents" in out
    assert "; the scores shown are the validation run's (the refit saw the validation documents)" in out
    assert refitted.hyperparameters["refit"] is True and plain.hyperparameters["refit"] is False
    assert refitted.lineage["train_size"] == plain.lineage["train_size"] < 60  # the selection run's split
    for key in ("accuracy", "macro_f1", "best_epoch", "calibration", "intervals"):
        assert refitted.metrics[key] == plain.metrics[key], key  # the same selection run, scores as it measured them
    timeless = [[{k: v for k, v in h.items() if k != "seconds"} for h in mv.metrics["history"]] for mv in (plain, refitted)]
    assert timeless[0] == timeless[1]
    assert [h["epoch"] for h in refitted.metrics["refit"]["history"]] == list(range(1, epochs + 1))
    assert refitted.artifact_sha256 != plain.artifact_sha256  # another model
    temperature = read_metadata(refitted.artifact_path)["temperature"]
    assert temperature == refitted.metrics["calibration"]["temperature"] == read_metadata(plain.artifact_path)[
        "temperature"]

    report = (Path(refitted.artifact_path).parent / f"{Path(refitted.artifact_path).name}.report.html").read_text()
    assert f"trained {epochs} epoch(s) on all 60 labelled documents" in report and "Refit:" not in (
        Path(plain.artifact_path).parent / f"{Path(plain.artifact_path).name}.report.html").read_text()
    assert main(["models", "show", "sent:2"]) == 0
    assert json.loads(capsys.readouterr().out)["lineage"]["refit"] == refitted.lineage["refit"]
    assert main(["predict", "--json", "sent:2", "a wonderful delightful film"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_train_help_shows_refit_and_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("--refit, --no-refit after choosing the epochs on validation, train again on all labelled documents"
            in help_text)
    assert "(default: none)" in help_text.split("--refit", 1)[1] and "unset: on, except for multi_label" in help_text


def test_a_refit_that_is_not_true_or_false_is_refused_at_submit_and_queues_nothing(any_db_url, make_settings,
                                                                                  tiny_base_model):
    from sqlalchemy import func, select

    from db.models import Job
    from worker.client import submit_training
    from worker.errors import InvalidJob

    settings = make_settings(any_db_url)
    load_documents(any_db_url, "sent", sentiment_rows(8))
    with pytest.raises(InvalidJob, match="^refit must be true or false, got 'yes'$"):
        submit_training("sent", tiny_base_model, options={"refit": "yes"}, settings=settings, enqueue=False)
    with session_factory_for(any_db_url).begin() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.slow
def test_no_refit_on_the_command_line_trains_without_a_refit(any_db_url, env_db, tiny_base_model):
    url = env_db(any_db_url)
    load_documents(url, "sent", sentiment_rows(40))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY_OPTIONS, "epochs": 2}.items()]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "worker.cli", "train", "--collection", "sent", "--base-model",
                           tiny_base_model, "--name", "sent", "--inline", *flags, "--no-refit"], capture_output=True,
                          text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refit:" not in done.stdout
    with session_factory_for(url).begin() as s:
        mv = repo.resolve_model_version(s, "sent:1")
        assert mv.lineage["refit"] is None and mv.metrics["refit"] is None
        assert mv.hyperparameters["refit"] is False
        assert repo.get_job(s, mv.training_job_id).params["options"]["refit"] is False


def test_refit_on_or_off_reaches_the_job_from_the_client_and_from_a_plain_sql_row(any_db_url, make_settings,
                                                                                  tiny_base_model):
    from sqlalchemy import text

    from worker.client import submit_training
    from worker.jobs.params import TrainParams
    from worker.ml.config import TrainConfig

    settings = make_settings(any_db_url)
    load_documents(any_db_url, "sent", sentiment_rows(8))
    ids = {value: submit_training("sent", tiny_base_model, options={"refit": value}, settings=settings,
                                  enqueue=False).id for value in (False, True)}
    ids[None] = submit_training("sent", tiny_base_model, settings=settings, enqueue=False).id
    with session_factory_for(any_db_url).begin() as s:  # another language: the row as JSON text, then send_task
        ids["sql"] = s.execute(text(
            "INSERT INTO jobs (kind, params) VALUES ('train', :params) RETURNING id"),
            {"params": json.dumps({"collection": "sent", "base_model": tiny_base_model, "model_name": "sent",
                                   "options": {"refit": False}})}).scalar_one()
    with session_factory_for(any_db_url).begin() as s:  # what the training job reads (worker/jobs/training.py)
        refit = {key: TrainParams.from_dict(repo.get_job(s, i).params).train_config().refit for key, i in ids.items()}
    assert refit == {False: False, True: True, None: TrainConfig(base_model="m").refit, "sql": False}


@pytest.mark.slow
def test_unset_epochs_train_a_small_set_longer_and_given_ones_are_kept(sqlite_url, env_db, tiny_base_model, capsys):
    """40 documents at batch 8: 4 optimizer steps an epoch, so unset epochs become 10 (the cap), said in the log and
    recorded with the version; --epochs 2 trains two."""
    url = env_db(sqlite_url)
    load_documents(url, "sent", sentiment_rows(40))
    common = ["train", "--collection", "sent", "--base-model", tiny_base_model, "--name", "sent", "--inline",
              "--batch-size=8", "--learning-rate=2e-3", "--max-length=32", "--no-refit"]
    assert main(common) == 0
    captured = capsys.readouterr()
    assert main([*common, "--epochs", "2"]) == 0
    unset, given = _versions(url)

    assert unset.hyperparameters["epochs"] == 10 and len(unset.metrics["history"]) == 10
    why = ("10 (unset: 3 passes over this training split take 12 optimizer steps, fewer than 250; the validation "
           "split picks the epoch kept)")
    assert f"\nepochs: {why}\n" in captured.out and unset.lineage["epochs_decided"] == why
    assert given.hyperparameters["epochs"] == 2 and len(given.metrics["history"]) == 2
    assert given.lineage["epochs_decided"] is None and "epochs:" not in capsys.readouterr().out
