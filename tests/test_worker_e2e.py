"""End to end through a real ``celery worker`` subprocess, real Redis and real PostgreSQL.

Jobs are enqueued through the client exactly as another application would, and the worker runs them.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker.cli import main as cli_main
from worker.client import submit_classification, submit_training
from worker.errors import InvalidJob

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def celery_worker(worker_env, tmp_path):
    """Start ``bertjobs worker`` (the real command, a real Celery worker) and stop it after the test."""
    log = open(tmp_path / "worker.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--loglevel", "info", "--", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    output = log.read()
    log.close()
    if "Traceback" in output and "WorkerLostError" not in output:
        print(output[-5000:])



def test_a_worker_trains_and_classifies_jobs_enqueued_through_the_client(
        celery_worker, service_settings, tiny_base_model):
    url = service_settings.resolved_database_url
    load_documents(url, "reviews", sentiment_rows(48))
    load_documents(url, "inbox", sentiment_rows(100, prefix="inbox") + [{"external_id": "blank", "text": " \n "}])

    training = submit_training("reviews", tiny_base_model, model_name="senti", options=TINY_OPTIONS,
                               settings=service_settings)
    assert training.published
    result = training.result(timeout=180)
    assert result["model"] == "senti:1" and result["accuracy"] >= 0.9

    classification = submit_classification("inbox", "senti", settings=service_settings)
    done = classification.result(timeout=180)
    assert (done["classified"], done["failed"], done["documents"]) == (100, 1, 101)

    # Progress is also Celery task state (for Flower and any Celery client), beside the database.
    import json

    import redis

    client = redis.Redis.from_url(service_settings.broker_url)
    states = [json.loads(client.get(key)) for key in client.scan_iter("celery-task-meta-*")]
    progress = [st["result"] for st in states if st["status"] == "PROGRESS"]
    assert {"job_id": classification.id, "done": 101, "total": 101} in progress

    # Another application, in any language: insert the job row with plain SQL, then send the id by task name.
    load_documents(url, "outbox", sentiment_rows(10, prefix="outbox"))
    with session_factory_for(url).begin() as s:
        job_id = s.execute(text(
            "INSERT INTO jobs (kind, params) VALUES ('classify', "
            "'{\"collection\": \"outbox\", \"model\": \"senti:1\"}') RETURNING id")).scalar_one()
    from celery import Celery

    Celery(broker=service_settings.broker_url).send_task("bertjobs.classify", args=[job_id], queue="classify")
    from worker.client import JobHandle

    assert JobHandle(job_id, service_settings).result(timeout=120)["classified"] == 10

    with session_factory_for(url).begin() as s:
        counts = s.execute(text(
            "SELECT count(*) AS n, count(DISTINCT document_id) AS docs, "
            "sum(CASE WHEN label = gold_label THEN 1 ELSE 0 END) AS agree "
            "FROM latest_predictions WHERE collection = 'inbox' AND model_name = 'senti'")).one()
        assert counts.n == counts.docs == 101
        assert counts.agree >= 90
        failure = s.execute(text("SELECT label, error FROM latest_predictions WHERE external_id = 'blank'")).one()
        assert failure.label is None and failure.error == "text is empty or whitespace"


def test_bad_jobs_fail_with_a_one_line_reason_visible_in_jobs_show(
        celery_worker, service_settings, worker_env, tiny_base_model, monkeypatch, capsys):
    url = service_settings.resolved_database_url
    load_documents(url, "oneclass", [{"external_id": str(i), "text": f"text {i}", "label": "pos"} for i in range(5)])
    load_documents(url, "inbox", sentiment_rows(4))
    handles = {
        "one class": submit_training("oneclass", tiny_base_model, settings=service_settings),
        "unknown base model": submit_training("inbox", "no-such-org/no-such-model", settings=service_settings),
    }
    expected = {
        "one class": "only one class ('pos') in 5 documents; need at least two",
        "unknown base model": "base model 'no-such-org/no-such-model': the hub is offline",
    }
    # These cannot succeed, so they are refused at submit: no job row.
    with pytest.raises(InvalidJob, match="unknown collection 'nothing-here'"):
        submit_classification("nothing-here", "senti", settings=service_settings)
    with pytest.raises(InvalidJob, match="no ready model version matches 'senti:7'"):
        submit_classification("inbox", "senti:7", settings=service_settings)
    monkeypatch.setenv("BERTJOBS_DATABASE_URL", url)
    from worker.config import get_settings

    get_settings.cache_clear()
    try:
        for case, handle in handles.items():
            snap = handle.wait(timeout=120)
            assert (snap.status, snap.attempt) == ("failed", 1), case
            assert expected[case] in snap.error and "\n" not in snap.error, case
            assert cli_main(["jobs", "show", str(handle.id)]) == 0
            out = capsys.readouterr().out
            assert f"job {handle.id}:" in out and "failed" in out and f"error      {snap.error}" in out
    finally:
        get_settings.cache_clear()


def test_the_real_minilm_weights_train_and_classify_through_the_worker(celery_worker, service_settings, minilm_path):
    from worker.demo import load_corpus

    rows = load_corpus()
    url = service_settings.resolved_database_url
    load_documents(url, "rt-train", [{"external_id": r["id"], "text": r["text"], "label": r["category"]} for r in rows[:160]])
    load_documents(url, "rt-new", [{"external_id": r["id"], "text": r["text"], "label": r["category"]}
                          for r in rows[160:260]])
    training = submit_training("rt-train", minilm_path, model_name="rt", settings=service_settings,
                               options={"epochs": 1, "batch_size": 16, "max_length": 64})
    result = training.result(timeout=300)
    assert result["model"] == "rt:1"
    with session_factory_for(url).begin() as s:
        mv = repo.resolve_model_version(s, "rt:1")
        val_size, stored = mv.lineage["val_size"], mv.metrics["accuracy"]
    assert val_size == 32 and result["accuracy"] == stored  # 20% of 160
    assert stored * val_size == pytest.approx(round(stored * val_size))  # a share of the validation texts
    done = submit_classification("rt-new", "rt:1", settings=service_settings).result(timeout=300)
    assert (done["classified"], done["failed"]) == (100, 0)
    with session_factory_for(url).begin() as s:
        labels = {r.label for r in s.execute(text("SELECT label FROM latest_predictions WHERE collection = 'rt-new'"))}
        assert labels <= {"fresh", "rotten"}
