"""Celery states match the job's outcome (Flower's Failed filter is true) and the reaper stays quiet."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import insert_job

ROOT = Path(__file__).resolve().parents[1]


def test_a_failed_job_ends_its_task_in_failure_with_the_reason(env_db, any_db_url):
    from worker import tasks
    from worker.client import JobHandle
    from worker.errors import JobFailed

    env_db(any_db_url, broker_url="redis://127.0.0.1:1/0")  # never reached: nothing is queued
    handle = JobHandle(insert_job(any_db_url, "classify", {"collection": "inbox", "model": "ghost"}))
    result = tasks.classify.apply(args=[handle.id])
    assert result.state == "FAILURE"
    assert isinstance(result.result, JobFailed)
    snap = handle.snapshot()
    assert snap.status == "failed" and str(result.result) == f"job {handle.id} failed: {snap.error}"
    assert "has no documents" in snap.error
    # Raising is the end of it: the same message delivered again changes nothing and is not retried.
    again = tasks.classify.apply(args=[handle.id])
    assert again.state == "SUCCESS" and again.result == "skipped"


def test_job_tasks_are_acked_and_never_retried_and_the_reaper_is_quiet():
    from worker import tasks
    from worker.celery_app import app
    from worker.cli import build_parser
    from worker.errors import JobFailed

    assert app.conf.task_acks_late and app.conf.task_acks_on_failure_or_timeout
    for task in (tasks.train, tasks.classify):
        assert JobFailed in task.throws and task.max_retries == 0 and not getattr(task, "autoretry_for", ())
    assert tasks.reap.ignore_result and not tasks.reap.send_events
    assert app.amqp.router.route({}, tasks.reap.name)["queue"].name == "maintenance"
    assert build_parser().parse_args(["worker"]).queues == "train,classify"


@pytest.mark.slow
def test_a_real_worker_reports_failure_once_and_does_not_redeliver(worker_env, service_settings, tmp_path):
    import time

    import redis

    from worker.client import JobHandle
    from worker.publish import publish
    from workers import wait_for

    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--loglevel", "info", "--",
                                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        # As another application does it: a SQL insert, then the id on the queue (claim-time checks fail it).
        job_id = insert_job(service_settings.resolved_database_url, "classify", {"collection": "inbox", "model": "ghost"})
        publish(job_id, "classify", service_settings)
        handle = JobHandle(job_id, service_settings)
        wait_for(lambda: "raised expected: JobFailed" in log_path.read_text(), 60, what="the task to fail")
        time.sleep(2)  # a redelivery or retry would show up here
        output = log_path.read_text()
        assert f"job {handle.id} failed: " in output and "Traceback" not in output
        assert output.count("raised expected") == 1
        snap = handle.snapshot()
        assert snap.status == "failed" and snap.attempt == 1
        client = redis.Redis.from_url(service_settings.broker_url)
        assert client.llen("classify") == 0 and client.hlen("unacked") == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
