"""Fault injection on real PostgreSQL, real Redis and real ``celery worker`` processes.

Every case ends with the same invariants: each eligible document has exactly one prediction or failure row
for the model version, none is missing, and no job is left unfinished.
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from db import repo
from db.models import ModelVersion
from db.session import session_factory_for
from helpers import free_port, load_documents
from worker.client import submit_classification, submit_training
from worker.publish import publish
from worker.ops.reaper import reap
from workers import wait_for

pytestmark = pytest.mark.slow


def _register(url, artifact, name="rt") -> str:
    path, sha = artifact
    with session_factory_for(url).begin() as s:
        mv = repo.register_model_version(s, name=name, base_model="all-MiniLM-L6-v2", status="ready",
                                         artifact_path=str(path), artifact_sha256=sha, labels=["fresh", "rotten"],
                                         hyperparameters={}, metrics={}, lineage={})
        return mv.ref


def _reap_until_finished(handles, settings, timeout=180):
    """Run the reaper (as beat would, more often) until every job has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(settings)
        snaps = [h.snapshot() for h in handles]
        if all(s.finished for s in snaps):
            return snaps
        time.sleep(0.5)
    raise TimeoutError(f"jobs not finished: {[(s.id, s.status, s.attempt) for s in snaps]}")


def _assert_each_document_once(url, collection, model_ref):
    name, version = model_ref.split(":")
    with session_factory_for(url).begin() as s:
        row = s.execute(text(
            "SELECT (SELECT count(*) FROM documents WHERE collection = :c) AS docs, count(p.id) AS rows, "
            "count(DISTINCT p.document_id) AS distinct_docs FROM predictions p "
            "JOIN documents d ON d.id = p.document_id JOIN model_versions mv ON mv.id = p.model_version_id "
            "WHERE d.collection = :c AND mv.name = :n AND mv.version = :v"), {"c": collection, "n": name,
                                                                               "v": int(version)}).one()
    assert row.docs == row.rows == row.distinct_docs, row


@pytest.fixture
def rt_model(service_settings, minilm_artifact) -> str:
    """The MiniLM artifact registered as model version rt:1."""
    return _register(service_settings.resolved_database_url, minilm_artifact)


def _bulk_job_under_way(workers, settings, model, rows, at_least=64):
    """Load ``rows`` into ``inbox``, start worker ``a``, submit the bulk job and wait until it is under way."""
    load_documents(settings.resolved_database_url, "inbox", rows)
    workers.start("a")
    job = submit_classification("inbox", model, settings=settings)
    wait_for(lambda: _running_with_progress(job, at_least), timeout=120, what="progress")
    return job


def _running_with_progress(handle, at_least):
    snap = handle.snapshot()
    assert not snap.finished, f"job {snap.id} finished before the fault: {snap.status}"
    return snap.status == "running" and snap.progress_done >= at_least


def test_sigkill_in_the_middle_of_a_bulk_job_then_a_new_worker_completes_it(
        workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    job = _bulk_job_under_way(workers, service_settings, model, rt_rows[:600], at_least=64)
    workers.kill("a")
    assert job.status() == "running"
    workers.start("b")
    [snap] = _reap_until_finished([job], service_settings)
    assert (snap.status, snap.attempt) == ("succeeded", 2)
    assert snap.result["classified"] == 600
    _assert_each_document_once(url, "inbox", model)


@pytest.mark.parametrize("stage", ["read", "forward", "commit"])
def test_sigkill_while_pages_are_in_flight_in_a_stage_then_the_job_resumes_with_each_document_once(
        stage, workers, service_settings, rt_model, rt_rows, tmp_path):
    """The pipelined bulk path killed in its reader, its forward pass or its writer, with pages queued around it:
    the next attempt resumes from the last committed page and every document ends with exactly one row."""
    url, model, flag = service_settings.resolved_database_url, rt_model, tmp_path / f"killed-in-{stage}"
    load_documents(url, "inbox", rt_rows[:600])
    workers.start("a", BERTJOBS_FAULT_KILL_IN=stage, BERTJOBS_FAULT_KILL_AFTER="3",
                  BERTJOBS_FAULT_KILL_ONCE=str(flag))
    job = submit_classification("inbox", model, settings=service_settings)
    wait_for(flag.exists, timeout=120, what=f"a kill in the {stage} stage")
    workers.kill("a")
    assert job.snapshot().progress_done < 600
    workers.start("b")
    [snap] = _reap_until_finished([job], service_settings)
    assert (snap.status, snap.attempt, snap.result["classified"]) == ("succeeded", 2, 600)
    _assert_each_document_once(url, "inbox", model)


def test_sigkill_during_training_resumes_from_the_last_checkpoint(workers, service_settings, minilm_path, rt_rows):
    url = service_settings.resolved_database_url
    load_documents(url, "reviews", rt_rows[:96])
    workers.start("a")
    # Two epochs: the first one's checkpoint is where the kill comes, the second is what the resumed attempt runs.
    job = submit_training("reviews", minilm_path, model_name="rt", settings=service_settings,
                          options={"epochs": 2, "batch_size": 16, "max_length": 64})
    checkpoint = Path(service_settings.resolved_model_store) / ".checkpoints" / f"job{job.id}" / "checkpoint.pt"
    wait_for(checkpoint.is_file, timeout=180, what="the first epoch's checkpoint")
    workers.kill("a")
    workers.start("b")
    [snap] = _reap_until_finished([job], service_settings, timeout=240)
    assert (snap.status, snap.attempt) == ("succeeded", 2)
    assert snap.result["resumed_from_epoch"] >= 1
    with session_factory_for(url).begin() as s:
        versions = s.scalars(select(ModelVersion).where(ModelVersion.name == "rt")).all()
        assert [v.version for v in versions] == [1]
        assert [h["epoch"] for h in versions[0].metrics["history"]] == [1, 2]
    wait_for(lambda: not checkpoint.parent.exists(), timeout=10, what="checkpoints removed after registration")


def test_a_job_that_kills_its_worker_every_time_ends_dead_and_the_others_finish(
        workers, service_settings, minilm_artifact, rt_rows):
    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    load_documents(url, "kills-its-worker", rt_rows[:10])
    load_documents(url, "inbox", rt_rows[10:60])
    workers.start("a")
    doomed = submit_classification("kills-its-worker", model, settings=service_settings)
    fine = submit_classification("inbox", model, settings=service_settings)
    doomed_snap, fine_snap = _reap_until_finished([doomed, fine], service_settings)
    assert (doomed_snap.status, doomed_snap.attempt) == ("dead", 3)
    assert "lease expired on attempt 3 of 3" in doomed_snap.error
    assert fine_snap.status == "succeeded"
    _assert_each_document_once(url, "inbox", model)


def test_a_job_preempted_again_and_again_with_progress_in_between_succeeds(
        workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    load_documents(url, "preempted", rt_rows[:288])  # 9 pages of 32: each attempt commits 2, then its worker dies
    workers.start("a")
    job = submit_classification("preempted", model, settings=service_settings)  # max_attempts 3
    [snap] = _reap_until_finished([job], service_settings, timeout=240)
    assert (snap.status, snap.attempt) == ("succeeded", 5)  # 4 workers lost, each after progress
    assert snap.result["classified"] == 288
    _assert_each_document_once(url, "preempted", model)


def test_two_workers_given_the_same_job_at_once_run_it_once(workers, service_settings, minilm_artifact, rt_rows):
    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    load_documents(url, "inbox", rt_rows[:200])
    workers.start("a")
    workers.start("b")
    job = submit_classification("inbox", model, settings=service_settings)
    publish(job.id, "classify", service_settings)  # a duplicate delivery
    snap = job.wait(timeout=120)
    assert (snap.status, snap.attempt) == ("succeeded", 1)
    wait_for(lambda: "not claimable" in workers.log("a") + workers.log("b"), timeout=30, what="the losing claim")
    _assert_each_document_once(url, "inbox", model)


def _resumed_worker_a_changes_nothing(workers, job, url, model):
    """Wake the stale worker ``a``: it notices it lost the job, and attempt 2's rows stay the only ones."""
    workers.signal("a", signal.SIGCONT)
    wait_for(lambda: "no longer owns the job" in workers.log("a") or "lost its lease" in workers.log("a"),
             timeout=60, what="worker a noticing it lost the job")
    assert job.snapshot().attempt == 2
    _assert_each_document_once(url, "inbox", model)


def test_a_worker_paused_past_its_lease_has_its_writes_rejected_when_it_resumes(
        workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    job = _bulk_job_under_way(workers, service_settings, model, rt_rows[:600], at_least=64)
    workers.signal("a", signal.SIGSTOP)
    workers.start("b")
    [snap] = _reap_until_finished([job], service_settings)
    assert (snap.status, snap.attempt) == ("succeeded", 2)
    _resumed_worker_a_changes_nothing(workers, job, url, model)


def test_a_worker_frozen_inside_its_page_transaction_holds_up_no_recovery(
        workers, service_settings, rt_model, rt_rows, tmp_path):
    url, model = service_settings.resolved_database_url, rt_model
    flag = tmp_path / "freeze-now"
    load_documents(url, "inbox", rt_rows[:600])
    workers.start("a", BERTJOBS_TEST_FREEZE_FLAG=str(flag))
    job = submit_classification("inbox", model, settings=service_settings)
    wait_for(lambda: _running_with_progress(job, 64), timeout=120, what="progress")
    flag.touch()
    wait_for(lambda: not flag.exists(), timeout=30, what="worker a frozen inside its page transaction")
    frozen_at = time.monotonic()
    workers.start("b")
    while job.snapshot().attempt < 2:  # the reaper never waits on the frozen row; the takeover follows its lease
        started = time.monotonic()
        reap(service_settings)
        assert time.monotonic() - started < 3
        assert time.monotonic() - frozen_at < 30, "not taken over within the lease and a reaper interval"
        time.sleep(0.5)
    snap = job.wait(timeout=180)
    assert (snap.status, snap.attempt) == ("succeeded", 2)
    _resumed_worker_a_changes_nothing(workers, job, url, model)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, so it can be killed and restarted."""
    port = free_port()

    def start(persistent: bool) -> subprocess.Popen:
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""] if persistent else \
                ["--appendonly", "no", "--save", ""]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_for(lambda: _pings(redis.Redis(port=port)), timeout=10, what="redis up")
        return proc

    procs = []

    def factory(persistent):
        procs.append(start(persistent))
        return procs[-1]

    factory.url = f"redis://127.0.0.1:{port}/0"
    yield factory
    for proc in procs:
        proc.kill()
        proc.wait()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "appendonly"])
def test_jobs_queued_when_redis_dies_and_restarts_all_complete(
        persistent, private_redis, workers, service_settings, worker_env, minilm_artifact, rt_rows):
    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    redis_proc = private_redis(persistent)
    settings = service_settings.model_copy(update={"broker_url": private_redis.url})
    handles = []
    for i in range(3):
        load_documents(url, f"box{i}", rt_rows[i * 30:(i + 1) * 30])
        handles.append(submit_classification(f"box{i}", model, settings=settings))
    assert all(h.published for h in handles)
    redis_proc.kill()
    redis_proc.wait()
    private_redis(persistent)
    workers.start("a", BERTJOBS_BROKER_URL=private_redis.url)
    if persistent:  # the messages survived: no reaper needed
        snaps = [h.wait(timeout=120) for h in handles]
    else:  # the messages are gone: the reaper publishes the queued jobs again
        snaps = _reap_until_finished(handles, settings)
    assert [s.status for s in snaps] == ["succeeded"] * 3
    for i in range(3):
        _assert_each_document_once(url, f"box{i}", model)


def test_database_connections_terminated_mid_job_then_the_job_recovers(
        workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    job = _bulk_job_under_way(workers, service_settings, model, rt_rows[:600], at_least=64)
    with session_factory_for(url).begin() as s:
        killed = s.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    assert killed >= 1
    [snap] = _reap_until_finished([job], service_settings)
    assert snap.status == "succeeded" and snap.result["classified"] == 600
    _assert_each_document_once(url, "inbox", model)


def test_documents_deleted_and_edited_by_another_application_during_a_bulk_job(
        workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    job = _bulk_job_under_way(workers, service_settings, model, rt_rows[:600], at_least=32)
    sessions = session_factory_for(url)
    deleted = 0
    while not job.snapshot().finished and deleted < 40:  # the first documents after the cursor: the page in flight
        with sessions.begin() as s:
            deleted += s.execute(text(
                "DELETE FROM documents WHERE id IN (SELECT id FROM documents WHERE collection = 'inbox' AND id > "
                "(SELECT coalesce(cursor, 0) FROM jobs WHERE id = :j) ORDER BY id LIMIT 4)"), {"j": job.id}).rowcount
            s.execute(text("UPDATE documents SET text = text || ' (edited)', updated_at = now() WHERE id = "
                           "(SELECT max(id) FROM documents WHERE collection = 'inbox')"))
        time.sleep(0.3)
    snap = job.wait(timeout=180)
    assert (snap.status, snap.attempt) == ("succeeded", 1)
    assert deleted >= 8 and snap.result["classified"] == 600 - deleted
    _assert_each_document_once(url, "inbox", model)


def test_cancelling_a_running_bulk_job_stops_it_before_its_next_page(workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    job = _bulk_job_under_way(workers, service_settings, model, rt_rows[:600], at_least=32)
    assert job.cancel() == "running"
    snap = job.wait(timeout=30)
    assert snap.status == "cancelled" and snap.progress_done < 600
    reap(service_settings)
    assert job.status() == "cancelled"  # the reaper never revives it
    with session_factory_for(url).begin() as s:
        written = s.scalar(text("SELECT count(*) FROM predictions"))
    assert written == snap.progress_done  # what was committed is whole pages, with the cursor


def test_cancelling_a_running_training_job_registers_nothing(workers, service_settings, minilm_path, rt_rows):
    url = service_settings.resolved_database_url
    load_documents(url, "reviews", rt_rows[:300])
    workers.start("a")
    job = submit_training("reviews", minilm_path, model_name="rt", settings=service_settings,
                          options={"epochs": 2, "batch_size": 16, "max_length": 64})
    wait_for(lambda: _running_with_progress(job, 1), timeout=120, what="a training step")
    job.cancel()
    snap = job.wait(timeout=60)
    assert snap.status == "cancelled"
    with session_factory_for(url).begin() as s:
        assert s.scalar(select(ModelVersion.id)) is None


def test_poison_documents_fail_alone_and_the_rest_of_the_batch_is_classified(
        workers, service_settings, minilm_artifact, rt_rows):
    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    poison = [
        {"external_id": "poison-1", "text": "this one is POISON to the model"},
        {"external_id": "blank", "text": "\t \n"},
        {"external_id": "huge", "text": "long " * 30_000},
        {"external_id": "poison-2", "text": "more POISON here"},
    ]
    load_documents(url, "inbox", rt_rows[:60] + poison)
    workers.start("a")
    result = submit_classification("inbox", model, settings=service_settings).result(timeout=120)
    assert (result["classified"], result["failed"]) == (60, 4)
    with session_factory_for(url).begin() as s:
        errors = dict(s.execute(text("SELECT external_id, error FROM latest_predictions WHERE error IS NOT NULL")).all())
    assert errors["blank"] == "text is empty or whitespace"
    assert errors["huge"].startswith("text is longer than 100000 characters")
    assert errors["poison-1"] == errors["poison-2"] == "prediction failed: RuntimeError: the model choked on this input"
    _assert_each_document_once(url, "inbox", model)


@pytest.mark.parametrize("broken", ["the model is broken", "CUDA error: an illegal memory access was encountered"])
def test_a_model_that_fails_every_document_writes_no_failure_rows_and_the_job_ends_dead(
        broken, workers, service_settings, rt_model, rt_rows):
    url, model = service_settings.resolved_database_url, rt_model
    load_documents(url, "inbox", rt_rows[:64])
    workers.start("a", BERTJOBS_TEST_BROKEN_MODEL=broken)
    job = submit_classification("inbox", model, settings=service_settings)
    [snap] = _reap_until_finished([job], service_settings)
    assert (snap.status, snap.attempt) == ("dead", 3)
    assert f": all 32 documents failed the same way: RuntimeError: {broken}" in snap.error
    with session_factory_for(url).begin() as s:
        assert s.scalar(text("SELECT count(*) FROM predictions")) == 0
    if broken.startswith("CUDA"):  # each attempt ended its worker process; prefork started another
        assert workers.log("a").count("this worker process ends") == 3
        assert workers.procs["a"].poll() is None


def test_a_long_task_redelivered_after_a_short_visibility_timeout_does_not_run_twice(
        workers, service_settings, minilm_artifact, rt_rows):
    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    load_documents(url, "inbox", rt_rows[:1500])
    workers.start("a", BERTJOBS_VISIBILITY_TIMEOUT="2")
    job = submit_classification("inbox", model, settings=service_settings)
    wait_for(lambda: _running_with_progress(job, 1), timeout=120, what="the job to start")
    workers.start("b", BERTJOBS_VISIBILITY_TIMEOUT="2")
    wait_for(lambda: "not claimable" in workers.log("b"), timeout=60, what="the redelivered message")
    snap = job.wait(timeout=180)
    assert (snap.status, snap.attempt) == ("succeeded", 1)
    _assert_each_document_once(url, "inbox", model)


def test_a_sharded_bulk_job_is_shared_by_two_workers_and_survives_losing_one(
        workers, service_settings, minilm_artifact, rt_rows):
    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    load_documents(url, "inbox", rt_rows[:800])
    workers.start("a")
    workers.start("b")
    job = submit_classification("inbox", model, shards=4, settings=service_settings)
    wait_for(lambda: "classify started" in workers.log("a") and "classify started" in workers.log("b")
             and job.snapshot().progress_done >= 64, timeout=120, what="both workers on shards")
    workers.kill("b")
    [snap] = _reap_until_finished([job], service_settings)
    assert snap.status == "succeeded"
    assert (snap.result["documents"], snap.result["classified"]) == (800, 800)
    assert len(snap.result["shards"]) == 4
    _assert_each_document_once(url, "inbox", model)


def test_a_pickled_message_is_refused_and_runs_nothing(workers, service_settings, minilm_artifact, rt_rows):
    from celery import Celery

    url = service_settings.resolved_database_url
    model = _register(url, minilm_artifact)
    load_documents(url, "inbox", rt_rows[:10])
    workers.start("a")
    job = submit_classification("inbox", model, settings=service_settings, enqueue=False)
    sender = Celery(broker=service_settings.broker_url)
    sender.conf.accept_content = ["pickle", "json"]
    sender.send_task("bertjobs.classify", args=[job.id], queue="classify", serializer="pickle")
    wait_for(lambda: "pickle" in workers.log("a") and "ContentDisallowed" in workers.log("a"), timeout=60,
             what="the worker refusing pickle")
    snap = job.snapshot()
    assert (snap.status, snap.attempt) == ("queued", 0)
