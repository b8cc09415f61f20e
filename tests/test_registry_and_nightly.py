"""For the people who use it: nightly runs, the model registry, result views, reports and metrics."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker import jobs
from worker.client import submit_classification, submit_training
from worker.ops.nightly import run_nightly
from worker.ops.registry import promote, rollback

DAY = date(2026, 11, 27)


@pytest.fixture
def trained(clean_pg, make_settings, tiny_base_model):
    """senti:1 (learned) and senti:2 (barely trained), an `inbox` to classify, nightly configured on it."""
    settings = make_settings(clean_pg, nightly_model="senti", nightly_collections=["inbox"])
    load_documents(clean_pg, "train", sentiment_rows(48))
    for options in (TINY_OPTIONS, {**TINY_OPTIONS, "epochs": 1, "learning_rate": 1e-5}):
        handle = submit_training("train", tiny_base_model, model_name="senti", options=options, settings=settings,
                                 enqueue=False)
        assert jobs.run_training(handle.id, settings=settings) is jobs.Outcome.succeeded
    load_documents(clean_pg, "inbox", sentiment_rows(20, prefix="inbox"))
    load_documents(clean_pg, "holdout", sentiment_rows(40, prefix="holdout"))
    return settings


def _run_all(handles, settings):
    for h in handles:
        jobs.run_inline(h.id, "classify", settings=settings)
    return [h.snapshot() for h in handles]


@pytest.mark.slow
def test_nightly_runs_once_a_day_with_the_production_model_and_picks_up_new_and_changed_texts(trained):
    settings = trained
    assert run_nightly(settings, day=DAY, enqueue=False) == []  # no production model yet: nothing to run
    promote("senti:1", settings=settings, force=True)

    [first] = _run_all(run_nightly(settings, day=DAY, enqueue=False), settings)
    assert (first.status, first.result["model"], first.result["documents"]) == ("succeeded", "senti:1", 20)
    [again] = run_nightly(settings, day=DAY, enqueue=False)
    assert not again.created and again.id == first.id  # the same day: the same run

    load_documents(settings.resolved_database_url, "inbox", [
        {"external_id": "inbox-0", "text": "an awful, dreadful film"},  # the text changed
        {"external_id": "inbox-new", "text": "a wonderful film"},         # new
    ])
    [second] = _run_all(run_nightly(settings, day=DAY + timedelta(days=1), enqueue=False), settings)
    assert second.result["documents"] == 2

    promote("senti:2", settings=settings, force=True)  # the next run uses what production points at
    [third] = _run_all(run_nightly(settings, day=DAY + timedelta(days=2), enqueue=False), settings)
    assert (third.result["model"], third.result["documents"]) == ("senti:2", 21)


@pytest.mark.slow
def test_nightly_never_starts_while_the_previous_run_is_unfinished(trained):
    settings = trained
    promote("senti:1", settings=settings, force=True)
    [pending] = run_nightly(settings, day=DAY, enqueue=False)
    assert run_nightly(settings, day=DAY + timedelta(days=1), enqueue=False) == []
    _run_all([pending], settings)
    assert len(run_nightly(settings, day=DAY + timedelta(days=1), enqueue=False)) == 1


@pytest.mark.slow
def test_a_gated_promotion_refuses_a_worse_model_and_rollback_is_one_call(trained):
    settings = trained
    assert promote("senti:1", gate_collection="holdout", settings=settings, force=True).promoted
    refused = promote("senti:2", gate_collection="holdout", settings=settings, force=True)
    assert not refused.promoted and refused.candidate_macro_f1 < refused.holder_macro_f1
    assert promote("senti:2", settings=settings, force=True).previous == "senti:1"  # no gate: promoted
    assert rollback("senti", settings=settings) == "senti@production -> senti:1"
    with session_factory_for(settings.resolved_database_url).begin() as s:
        assert repo.resolve_model_version(s, "senti@production").version == 1


@pytest.mark.slow
def test_the_result_views_answer_the_common_questions(trained):
    settings = trained
    url = settings.resolved_database_url
    promote("senti:1", settings=settings, force=True)
    _run_all(run_nightly(settings, day=DAY, enqueue=False), settings)
    # classify inbox with senti:2 as well, to compare the versions
    _run_all([submit_classification("inbox", "senti:2", settings=settings, enqueue=False)], settings)
    with session_factory_for(url).begin() as s:
        production = s.execute(text("SELECT model_version, count(*) FROM production_predictions "
                                    "WHERE collection = 'inbox' GROUP BY model_version")).all()
        assert production == [(1, 20)]
        counts = s.execute(text("SELECT model_version, sum(documents) FROM label_counts WHERE collection = 'inbox' "
                                "GROUP BY model_version ORDER BY model_version")).all()
        assert counts == [(1, 20), (2, 20)]
        disagreements = s.execute(text("SELECT document_id, version_a, version_b FROM version_disagreements "
                                       "WHERE collection = 'inbox'")).all()
        labels = {}  # (document, version) -> label, from the predictions themselves
        for doc, version, label in s.execute(text(
                "SELECT p.document_id, mv.version, p.label FROM predictions p JOIN model_versions mv "
                "ON mv.id = p.model_version_id JOIN documents d ON d.id = p.document_id WHERE d.collection = 'inbox'")):
            labels[doc, version] = label
        differing = sorted(doc for (doc, version), label in labels.items() if version == 1 and label != labels[doc, 2])
        assert differing  # senti:2 is barely trained: it cannot agree everywhere
        assert sorted(doc for doc, _, _ in disagreements) == differing
        assert {(a, b) for _, a, b in disagreements} == {(1, 2)}
        low = s.execute(text("SELECT count(*) FROM low_confidence_predictions WHERE collection = 'inbox'")).scalar()
        expected = s.execute(text("SELECT count(*) FROM production_predictions WHERE collection = 'inbox' "
                                  "AND label IS NOT NULL AND score < 0.6")).scalar()
        assert low == expected


@pytest.mark.slow
def test_each_model_version_gets_a_self_contained_html_report(trained):
    settings = trained
    with session_factory_for(settings.resolved_database_url).begin() as s:
        mv = repo.resolve_model_version(s, "senti:1")
    report = Path(mv.artifact_path + ".report.html")
    content = report.read_text()
    assert content.count("<svg") == 3 and "Confusion matrix" in content and "<th>pos</th>" in content
    assert 'aria-label="reliability diagram"' in content  # the third: calibration before and after
    assert "http" not in content.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch


def _sample(body: str, name: str) -> float | None:
    return next((float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + " ")), None)


@pytest.mark.slow
def test_metrics_count_jobs_by_status_and_messages_waiting_in_the_prometheus_format(trained, redis_url):
    import redis

    from worker.ops.metrics import prometheus_text

    settings = trained.model_copy(update={"broker_url": redis_url})
    before = prometheus_text(settings)
    assert 'bertjobs_jobs{kind="train",status="succeeded"} 2' in before
    assert _sample(before, "bertjobs_broker_up") == 1
    client = redis.Redis.from_url(redis_url)
    client.lpush("classify", b"{}", b"{}")  # two messages no worker takes
    try:
        after = prometheus_text(settings)
    finally:
        client.lrem("classify", 2, b"{}")
    waiting = 'bertjobs_queue_depth{queue="classify"}'
    assert _sample(after, waiting) == _sample(before, waiting) + 2


@pytest.mark.slow
def test_metrics_say_the_broker_is_down_when_it_does_not_answer(trained):
    from worker.ops.metrics import prometheus_text

    body = prometheus_text(trained.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    assert _sample(body, "bertjobs_broker_up") == 0 and "bertjobs_queue_depth" not in body
    assert 'bertjobs_jobs{kind="train",status="succeeded"} 2' in body


def test_beat_schedules_the_reaper_and_the_nightly_run(make_settings):
    from celery.schedules import crontab

    from worker.celery_app import beat_schedule

    schedule = beat_schedule(make_settings("sqlite://", nightly_model="m", nightly_collections="a, b",
                                           nightly_time="03:30"))
    assert schedule["nightly-classification"]["schedule"] == crontab(hour=3, minute=30)
    assert schedule["reap-lost-jobs"]["options"]["queue"] == "maintenance"
    assert "nightly-classification" not in beat_schedule(make_settings("sqlite://"))
