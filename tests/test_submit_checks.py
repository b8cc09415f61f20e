"""A job that cannot succeed is refused at submit (issue #10); SQL-inserted rows are still checked at claim time."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from db import repo
from db.models import Job
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker import jobs
from worker.cli import main
from worker.client import submit_classification, submit_training
from worker.errors import InvalidJob


def _job_count(url: str) -> int:
    with session_factory_for(url).begin() as s:
        return s.scalar(select(func.count()).select_from(Job))


def _register(url: str, name: str = "senti", path: str = "/nowhere", sha: str = "0" * 64):
    with session_factory_for(url).begin() as s:
        mv = repo.register_model_version(s, name=name, base_model="tiny", status="ready", artifact_path=path,
                                         artifact_sha256=sha, labels=["neg", "pos"], hyperparameters={},
                                         metrics={"accuracy": 1.0, "macro_f1": 1.0}, lineage={})
        return mv.ref


def _weightless_folder(tmp_path):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)


TRAIN_CASES = [
    ("unknown collection", "ghost", [], "tiny", "unknown collection 'ghost'"),
    ("filter matches nothing", "train", ["--where-id-prefix", "zzz"], "tiny",
     "collection 'train' has no documents matching the filter"),
    ("no labels", "unlabelled", [], "tiny", "collection 'unlabelled' has no labelled documents (3 unlabelled)"),
    ("unlabelled without skip", "mixed", [], "tiny",
     "1 documents of collection 'mixed' have no label; label them or train with skip_unlabelled"),
    ("missing folder", "train", [], "/no/such/model", "base model folder '/no/such/model' does not exist"),
    ("folder without weights", "train", [], "weightless", "has no weights (*.safetensors or pytorch_model.bin)"),
]


@pytest.mark.parametrize("case, collection, extra, base, reason", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_training_that_cannot_succeed_is_refused_by_the_cli_with_one_line_and_no_job(
        case, collection, extra, base, reason, any_db_url, env_db, tiny_base_model, tmp_path, capsys):
    env_db(any_db_url, broker_url="redis://127.0.0.1:1/0")  # never reached: nothing is queued
    load_documents(any_db_url, "train", sentiment_rows(8))
    load_documents(any_db_url, "unlabelled", [{"external_id": str(i), "text": f"t {i}"} for i in range(3)])
    load_documents(any_db_url, "mixed", [{"external_id": str(i), "text": f"t {i}", "label": "pos" if i else None}
                                         for i in range(4)])
    base = {"tiny": tiny_base_model, "weightless": _weightless_folder(tmp_path)}.get(base, base)
    code = main(["train", "--collection", collection, "--base-model", base, *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and reason in err and err.count("\n") == 1, err
    assert "Traceback" not in err and _job_count(any_db_url) == 0


def test_skip_unlabelled_and_a_hub_id_pass_the_submit_checks(sqlite_url, make_settings):
    settings = make_settings(sqlite_url)
    load_documents(sqlite_url, "mixed", [{"external_id": str(i), "text": f"t {i}", "label": "pos" if i else None}
                                         for i in range(4)])
    handle = submit_training("mixed", "bert-base-uncased", skip_unlabelled=True, settings=settings, enqueue=False)
    assert handle.created and handle.status() == "queued"


CLASSIFY_CASES = [
    ("unknown collection", "ghost", "senti", [], "unknown collection 'ghost'"),
    ("filter matches nothing", "inbox", "senti", ["--where-label", "nope"],
     "collection 'inbox' has no documents matching the filter"),
    ("no version yet", "inbox", "sentiment", [], "no ready model version matches 'sentiment'"),
    ("missing version", "inbox", "senti:7", [], "no ready model version matches 'senti:7'"),
    ("alias nobody holds", "inbox", "senti@production", [], "no ready model version matches 'senti@production'"),
]


@pytest.mark.parametrize("case, collection, model, extra, reason", CLASSIFY_CASES, ids=[c[0] for c in CLASSIFY_CASES])
def test_classification_that_cannot_succeed_is_refused_by_the_cli_with_one_line_and_no_job(
        case, collection, model, extra, reason, any_db_url, env_db, capsys):
    env_db(any_db_url, broker_url="redis://127.0.0.1:1/0")  # never reached: nothing is queued
    load_documents(any_db_url, "inbox", sentiment_rows(4))
    _register(any_db_url)
    code = main(["classify", "--collection", collection, "--model", model, *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and reason in err and err.count("\n") == 1, err
    assert _job_count(any_db_url) == 0


def test_the_client_raises_and_queues_nothing(any_db_url, make_settings):
    settings = make_settings(any_db_url)
    with pytest.raises(InvalidJob, match="unknown collection 'inbox'"):
        submit_classification("inbox", "sentiment", settings=settings, enqueue=False)
    load_documents(any_db_url, "inbox", sentiment_rows(4))
    with pytest.raises(InvalidJob, match="no ready model version matches 'sentiment'"):
        submit_classification("inbox", "sentiment", settings=settings, enqueue=False)
    with pytest.raises(InvalidJob, match="unknown collection 'nope'"):
        submit_training("nope", "bert-base-uncased", settings=settings, enqueue=False)
    assert _job_count(any_db_url) == 0


def test_the_model_reference_is_pinned_at_submit_and_the_worker_runs_that_version(
        sqlite_url, make_settings, tiny_base_model):
    settings = make_settings(sqlite_url)
    load_documents(sqlite_url, "train", sentiment_rows(16))
    trained = submit_training("train", tiny_base_model, model_name="senti", options={**TINY_OPTIONS, "epochs": 1},
                              settings=settings, enqueue=False)
    assert jobs.run_training(trained.id, settings=settings) is jobs.Outcome.succeeded
    load_documents(sqlite_url, "inbox", sentiment_rows(4, prefix="n"))
    handle = submit_classification("inbox", "senti", settings=settings, enqueue=False)
    assert handle.snapshot().params["model"] == "senti:1"
    assert handle.snapshot().params["requested_model"] == "senti"
    with session_factory_for(sqlite_url).begin() as s:  # a newer version appears before a worker takes the job
        first = repo.resolve_model_version(s, "senti:1")
        path, sha = first.artifact_path, first.artifact_sha256
    assert _register(sqlite_url, path=path, sha=sha) == "senti:2"
    assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.succeeded
    assert handle.snapshot().result["model"] == "senti:1"


@pytest.mark.parametrize("params, reason", [
    ("[1, 2]", "classification parameters must be a JSON object, got [1, 2]"),
    ('"abc"', "classification parameters must be a JSON object, got 'abc'"),
    ("null", "classification parameters must be a JSON object, got None"),
    ('{"collection": "inbox", "modle": "senti"}', "unknown classification parameter(s) modle; valid keys: "
                                                  "collection, model, only_missing"),
    ('{"collection": "inbox"}', "missing classification parameter(s) model; valid keys:"),
    ('{"collection": "inbox", "model": 5}', "a model reference is NAME, NAME:VERSION or NAME@ALIAS, got 5"),
])
def test_an_unreadable_sql_inserted_job_fails_on_its_first_claim_with_one_line(
        params, reason, any_db_url, make_settings):
    settings = make_settings(any_db_url)
    cast = "CAST(:p AS jsonb)" if any_db_url.startswith("postgresql") else ":p"
    with session_factory_for(any_db_url).begin() as s:
        job_id = s.execute(text(f"INSERT INTO jobs (kind, status, params, attempt, max_attempts, cancel_requested, "
                                f"progress_done) VALUES ('classify', 'queued', {cast}, 0, 3, false, 0) RETURNING id"),
                           {"p": params}).scalar_one()
    assert jobs.run_classification(job_id, settings=settings) is jobs.Outcome.failed
    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.attempt) == ("failed", 1)
        assert reason in job.error and "\n" not in job.error and "__init__" not in job.error


def test_a_sql_inserted_job_is_still_checked_at_claim_time(any_db_url, make_settings):
    settings = make_settings(any_db_url)
    with session_factory_for(any_db_url).begin() as s:
        job, _ = repo.create_job(s, "classify", {"collection": "ghost", "model": "senti"}, max_attempts=3)
        job_id = job.id
    assert jobs.run_classification(job_id, settings=settings) is jobs.Outcome.failed
    with session_factory_for(any_db_url).begin() as s:
        assert repo.get_job(s, job_id).error == "collection 'ghost' has no documents"


def test_one_idempotency_key_from_many_threads_gives_every_caller_the_one_job(clean_pg, make_settings):
    settings = make_settings(clean_pg)
    load_documents(clean_pg, "inbox", sentiment_rows(4))
    _register(clean_pg)
    barrier, ids, errors = threading.Barrier(8), [], []

    def submit() -> None:
        barrier.wait()
        try:
            ids.append(submit_classification("inbox", "senti", idempotency_key="once", settings=settings,
                                             enqueue=False).id)
        except Exception as exc:  # noqa: BLE001 - collected to assert on
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(ids) == 8 and len(set(ids)) == 1
    assert _job_count(clean_pg) == 1


def test_unknown_names_are_errors_not_empty_tables(any_db_url, env_db, capsys):
    env_db(any_db_url, broker_url="redis://127.0.0.1:1/0")  # never reached: nothing is queued
    load_documents(any_db_url, "inbox", sentiment_rows(4))
    _register(any_db_url)
    for argv, reason in [
        (["data", "check", "--collection", "ghost"], "unknown collection 'ghost'"),
        (["results", "--collection", "ghost"], "unknown collection 'ghost'"),
        (["results", "--model", "ghost"], "no ready model version matches 'ghost'"),
        (["models", "rollback", "ghost"], "unknown model 'ghost'"),
        (["models", "rollback", "senti", "--alias", "staging"], "model 'senti' has no alias 'staging'; nothing to roll back"),
        (["jobs", "--status", "bogus"], "unknown job status 'bogus'; use one of queued, running"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and reason in err and err.count("\n") == 1, (argv, err)
    assert main(["results", "--collection", "inbox"]) == 0
    assert main(["jobs", "--status", "queued"]) == 0


def test_a_sqlite_row_whose_params_are_not_json_fails_on_its_first_claim(sqlite_url, make_settings):
    settings = make_settings(sqlite_url)
    with session_factory_for(sqlite_url).begin() as s:
        job_id = s.execute(text("INSERT INTO jobs (kind, status, params, attempt, max_attempts, cancel_requested, "
                                "progress_done) VALUES ('train', 'queued', 'not json', 0, 3, 0, 0) RETURNING id")
                           ).scalar_one()
    assert jobs.run_training(job_id, settings=settings) is jobs.Outcome.failed
    assert jobs.run_training(job_id, settings=settings) is jobs.Outcome.skipped  # finished: not claimed again
    with session_factory_for(sqlite_url).begin() as s:
        status, attempt, error = s.execute(text("SELECT status, attempt, error FROM jobs WHERE id = :i"),
                                           {"i": job_id}).one()
    assert (status, attempt) == ("failed", 1) and error.startswith("job parameters are not JSON: ")


def test_a_base_model_outside_the_allow_list_is_refused_at_submit_and_by_the_worker(
        any_db_url, env_db, tiny_base_model, tmp_path, capsys):
    from helpers import insert_job
    from worker.config import get_settings

    allowed = f"{tiny_base_model}/,sentence-transformers/,bert-base-uncased"
    env_db(any_db_url, broker_url="redis://127.0.0.1:1/0", allowed_base_models=allowed)
    load_documents(any_db_url, "train", sentiment_rows(8))
    for base in ("/etc", "evil-org/model", "bert-base-uncased-evil", str(tmp_path)):
        assert main(["train", "--collection", "train", "--base-model", base]) == 2
        err = capsys.readouterr().err
        assert err == f"error: base model {base!r} is not allowed here; BERTJOBS_ALLOWED_BASE_MODELS allows " \
                      f"{allowed.replace(',', ', ')}\n", err
    assert _job_count(any_db_url) == 0
    # A row written with SQL skips the submit checks; the worker fails it, with the same line, at once.
    job_id = insert_job(any_db_url, "train", {"collection": "train", "base_model": "/etc", "model_name": "x"})
    assert jobs.run_training(job_id, settings=get_settings()) is jobs.Outcome.failed
    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.attempt) == ("failed", 1) and "is not allowed here" in job.error
