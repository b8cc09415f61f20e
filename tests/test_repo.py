"""Data access on real PostgreSQL, each test inside a transaction that is rolled back."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from db import repo
from db.models import JobStatus, Prediction, utcnow
from worker.jobs.shards import parent_outcome


def _job(session, **kw):
    job, _ = repo.create_job(session, "classify", {"collection": "c", "model": "m"},
                             max_attempts=kw.pop("max_attempts", 3), **kw)
    return job


def _model_version(session, name="m", **kw):
    fields = dict(name=name, base_model="tiny", status="ready", artifact_path="/nowhere", artifact_sha256="0" * 64,
                  labels=["neg", "pos"], hyperparameters={}, metrics={}, lineage={})
    fields.update(kw)
    return repo.register_model_version(session, **fields)


def test_a_queued_job_is_claimed_once_and_the_second_claim_gets_nothing(pg_session):
    job = _job(pg_session)
    assert repo.claim_job(pg_session, job.id, "w1", lease_seconds=60) == 1
    assert repo.claim_job(pg_session, job.id, "w2", lease_seconds=60) is None
    pg_session.refresh(job)
    assert (job.status, job.attempt, job.lease_owner) == ("running", 1, "w1")


def test_a_running_job_whose_lease_expired_is_claimed_again_with_the_next_attempt(pg_session):
    job = _job(pg_session)
    repo.claim_job(pg_session, job.id, "w1", lease_seconds=60)
    later = utcnow() + timedelta(seconds=120)
    assert repo.claim_job(pg_session, job.id, "w2", lease_seconds=60, now=later) == 2


def test_a_job_out_of_attempts_cannot_be_claimed(pg_session):
    job = _job(pg_session, max_attempts=1)
    repo.claim_job(pg_session, job.id, "w1", lease_seconds=60)
    assert repo.claim_job(pg_session, job.id, "w2", lease_seconds=60, now=utcnow() + timedelta(hours=1)) is None


def test_writes_of_a_stale_attempt_change_nothing(pg_session):
    job = _job(pg_session)
    repo.claim_job(pg_session, job.id, "w1", lease_seconds=60)
    repo.claim_job(pg_session, job.id, "w2", lease_seconds=60, now=utcnow() + timedelta(seconds=120))
    assert repo.fence(pg_session, job.id, 1) is False
    assert repo.set_progress(pg_session, job.id, 1, done=99) is False
    assert repo.heartbeat(pg_session, job.id, 1, 60) is None
    assert repo.finish_job(pg_session, job.id, 1, JobStatus.succeeded, aggregate=parent_outcome) is False
    assert repo.fence(pg_session, job.id, 2) is True
    pg_session.refresh(job)
    assert (job.status, job.progress_done) == ("running", 0)


def test_heartbeat_reports_a_cancel_request(pg_session):
    job = _job(pg_session)
    repo.claim_job(pg_session, job.id, "w1", lease_seconds=60)
    assert repo.heartbeat(pg_session, job.id, 1, 60) is False
    repo.request_cancel(pg_session, job.id, aggregate=parent_outcome)
    assert repo.heartbeat(pg_session, job.id, 1, 60) is True


def test_cancelling_a_queued_job_ends_it_and_it_can_never_be_claimed(pg_session):
    job = _job(pg_session)
    assert repo.request_cancel(pg_session, job.id, aggregate=parent_outcome).status == "cancelled"
    assert repo.claim_job(pg_session, job.id, "w1", lease_seconds=60) is None


def test_the_same_dedupe_key_returns_the_existing_job(pg_session):
    first, created = repo.create_job(pg_session, "train", {"a": 1}, max_attempts=3, dedupe_key="k1")
    again, created_again = repo.create_job(pg_session, "train", {"a": 2}, max_attempts=3, dedupe_key="k1")
    assert created and not created_again and again.id == first.id


def test_reimporting_identical_documents_changes_nothing_and_changed_ones_update(pg_session):
    rows = [{"external_id": "a", "text": "one", "label": "x"}, {"external_id": "b", "text": "two", "label": None}]
    assert repo.upsert_documents(pg_session, "c", rows) == repo.UpsertCounts(2, 0, 0)
    assert repo.upsert_documents(pg_session, "c", rows) == repo.UpsertCounts(0, 0, 2)
    rows[1] = {"external_id": "b", "text": "two, edited", "label": None}
    assert repo.upsert_documents(pg_session, "c", rows) == repo.UpsertCounts(0, 1, 1)
    assert repo.count_documents(pg_session, "c") == 2


def test_keyset_pages_walk_a_collection_in_id_order_without_gaps(pg_session):
    repo.upsert_documents(pg_session, "c", [{"external_id": str(i), "text": f"t{i}"} for i in range(25)])
    repo.upsert_documents(pg_session, "other", [{"external_id": "x", "text": "elsewhere"}])
    seen, cursor = [], None
    while page := repo.read_documents(pg_session, "c", cursor, 10):
        seen += page
        cursor = page[-1][0]
    assert [t for _, t in seen] == [f"t{i}" for i in range(25)]
    assert [i for i, _ in seen] == sorted(i for i, _ in seen)


def test_prediction_upserts_are_keyed_by_document_and_model_version(pg_session):
    repo.upsert_documents(pg_session, "c", [{"external_id": "a", "text": "one"}, {"external_id": "b", "text": "two"}])
    ids = [i for i, _ in repo.read_documents(pg_session, "c", None, 10)]
    mv = _model_version(pg_session)
    row = lambda d, label: {"document_id": d, "model_version_id": mv.id, "label": label, "score": 0.9,  # noqa: E731
                            "scores": {"neg": 0.1, "pos": 0.9}, "error": None, "job_id": None, "created_at": utcnow()}
    repo.upsert_predictions(pg_session, [row(ids[0], "pos")])
    assert repo.count_documents(pg_session, "c", unpredicted_by=mv.id) == 1
    repo.upsert_predictions(pg_session, [row(ids[0], "neg"), row(ids[1], "pos")])
    assert repo.prediction_counts(pg_session, mv.id) == {"classified": 2, "failed": 0}
    labels = {d.external_id: p.label for d, p, _ in repo.list_predictions(pg_session, collection="c")}
    assert labels == {"a": "neg", "b": "pos"}


def test_prediction_upserts_keep_every_value_overwrite_with_nulls_and_leave_the_commit_to_the_caller(pg_session):
    s = pg_session  # its commits and rollbacks are savepoints inside the test's transaction
    repo.upsert_documents(s, "c", [{"external_id": str(i), "text": f"t{i}"} for i in range(3)])
    a, b, c = [i for i, _ in repo.read_documents(s, "c", None, 10)]
    mv, job = _model_version(s).id, _job(s).id
    s.commit()
    t0 = datetime(2026, 11, 27, 6, 41, 36, 123456, tzinfo=timezone.utc)
    t1 = datetime(2026, 11, 27, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))

    def ok(doc, label, score, at):
        return {"document_id": doc, "model_version_id": mv, "label": label, "score": score,
                "scores": {"neg": 1 - score, "pos": score, "ünïcode \"k\"": [0.1]}, "error": None, "job_id": job,
                "created_at": at}

    def failed(doc, at):
        return {"document_id": doc, "model_version_id": mv, "label": None, "score": None, "scores": None,
                "error": 'tokenizer said "no" \\ ✗\nsecond line', "job_id": None, "created_at": at}

    def stored():
        return ({p.document_id: (p.label, p.score, p.scores, p.error, p.job_id, p.created_at)
                 for p in s.scalars(select(Prediction).execution_options(populate_existing=True))},
                s.scalar(text("SELECT count(*) FROM predictions WHERE scores IS NULL")))

    def as_stored(row):
        return tuple(row[k] for k in ("label", "score", "scores", "error", "job_id", "created_at"))

    # Two pages in one transaction, the second overwriting a row of the first with a failure (NULLs).
    assert repo.upsert_predictions(s, [ok(a, "pos", 0.75, t0), failed(c, t0)]) == 2
    assert repo.upsert_predictions(s, [failed(a, t1), ok(b, "pos", 0.1 + 0.2, t1)]) == 2
    s.commit()
    repo.upsert_predictions(s, [ok(c, "neg", 1e-300, t1)])  # a later run overwrites a failure
    s.commit()
    expected = {a: as_stored(failed(a, t1)), b: as_stored(ok(b, "pos", 0.1 + 0.2, t1)),
                c: as_stored(ok(c, "neg", 1e-300, t1))}
    assert stored() == (expected, 1)  # SQL NULL scores, not JSON null; floats and microseconds exact

    repo.upsert_predictions(s, [ok(a, "pos", 0.5, t0)])  # never commits: the caller's rollback takes it back
    s.rollback()
    assert stored() == (expected, 1)


def test_prediction_upserts_keep_non_finite_scores_and_write_absent_optional_columns_as_null(pg_session):
    repo.upsert_documents(pg_session, "c", [{"external_id": str(i), "text": f"t{i}"} for i in range(3)])
    ids = [i for i, _ in repo.read_documents(pg_session, "c", None, 10)]
    mv = _model_version(pg_session).id
    row = lambda d, score, scores: {"document_id": d, "model_version_id": mv, "label": "pos",  # noqa: E731
                                    "score": score, "scores": scores, "error": None, "job_id": None,
                                    "created_at": utcnow()}
    repo.upsert_predictions(pg_session, [row(ids[0], float("nan"), None), row(ids[1], float("-inf"), {"pos": 1.0}),
                                         row(ids[2], 0.5, None)])
    stored = {p.document_id: p for p in pg_session.scalars(select(Prediction).execution_options(
        populate_existing=True))}
    assert math.isnan(stored[ids[0]].score) and stored[ids[1]].score == float("-inf") and stored[ids[2]].score == 0.5
    with pytest.raises(ValueError):  # JSON has no NaN: refused before the statement, the transaction intact
        repo.upsert_predictions(pg_session, [row(ids[0], 0.5, {"pos": float("nan")})])
    assert "labels" not in row(ids[0], 0.5, None)  # an absent nullable column is NULL, also on an overwrite
    repo.upsert_predictions(pg_session, [{**row(ids[1], 0.5, None), "labels": ["pos"]}])
    repo.upsert_predictions(pg_session, [row(ids[1], 0.25, None)])
    assert pg_session.scalar(text("SELECT count(*) FROM predictions WHERE labels IS NULL")) == 3
    assert repo.prediction_counts(pg_session, mv) == {"classified": 3, "failed": 0}


def test_prediction_rows_with_exactly_the_columns_are_written_whole_and_left_as_the_caller_gave_them(pg_session):
    repo.upsert_documents(pg_session, "c", [{"external_id": str(i), "text": f"t{i}"} for i in range(2)])
    ids = [i for i, _ in repo.read_documents(pg_session, "c", None, 10)]
    mv = _model_version(pg_session).id
    at = datetime(2026, 12, 6, 5, 0, 0, 7, tzinfo=timezone.utc)
    rows = [{"document_id": d, "model_version_id": mv, "label": "pos", "labels": None, "score": 0.1 + 0.2,
             "scores": {"neg": 0.7, "pos": 0.1 + 0.2}, "error": None, "job_id": None, "created_at": at} for d in ids]
    given = [dict(r) for r in rows]
    assert repo.upsert_predictions(pg_session, rows) == 2
    assert rows == given and rows[0]["created_at"] is at
    stored = {p.document_id: (p.score, p.scores, p.created_at) for p in pg_session.scalars(
        select(Prediction).execution_options(populate_existing=True))}
    assert stored == {d: (0.1 + 0.2, {"neg": 0.7, "pos": 0.1 + 0.2}, at) for d in ids}


def test_prediction_upserts_skip_deleted_documents_and_store_the_same_values_on_both_databases(any_db_url):
    from db.session import session_factory_for

    sessions = session_factory_for(any_db_url)
    at = datetime(2026, 12, 6, 3, 0, 0, 250000, tzinfo=timezone.utc)
    with sessions.begin() as s:
        repo.upsert_documents(s, "c", [{"external_id": str(i), "text": f"t{i}"} for i in range(3)])
        a, b, gone = [i for i, _ in repo.read_documents(s, "c", None, 10)]
        mv, job = _model_version(s).id, _job(s).id
        s.execute(text("DELETE FROM documents WHERE id = :i"), {"i": gone})

    def row(doc, label, score, **extra):
        return {"document_id": doc, "model_version_id": mv, "label": label, "score": score, "job_id": job,
                "scores": None if label is None else {"neg": 1 - score, "pos": score}, "error": None,
                "created_at": at, **extra}

    with sessions.begin() as s:  # the deleted document gets no row; a later page in the transaction overwrites
        assert repo.upsert_predictions(s, [row(a, "pos", 0.75), row(gone, "pos", 0.5), row(b, "neg", 0.25)]) == 2
        assert repo.upsert_predictions(s, [row(b, None, None, error="bad \"text\"\n", labels=["x"])]) == 1
    with sessions.begin() as s:
        stored = {p.document_id: (p.label, p.labels, p.score, p.scores, p.error, p.job_id, p.created_at)
                  for p in s.scalars(select(Prediction))}
    stamp = stored[a][-1].replace(tzinfo=timezone.utc) if stored[a][-1].tzinfo is None else stored[a][-1]
    assert stamp == at
    assert {d: v[:-1] for d, v in stored.items()} == {
        a: ("pos", None, 0.75, {"neg": 0.25, "pos": 0.75}, None, job),
        b: (None, ["x"], None, None, 'bad "text"\n', job)}


def test_model_references_resolve_to_latest_a_version_or_an_alias(pg_session):
    v1 = _model_version(pg_session)
    v2 = _model_version(pg_session)
    assert (v1.version, v2.version) == (1, 2)
    assert repo.resolve_model_version(pg_session, "m").id == v2.id
    assert repo.resolve_model_version(pg_session, "m:1").id == v1.id
    assert repo.resolve_model_version(pg_session, "m@production") is None
    repo.set_alias(pg_session, v1, "production")
    assert repo.resolve_model_version(pg_session, "m@production").id == v1.id
    repo.set_alias(pg_session, v2, "production")
    assert repo.resolve_model_version(pg_session, "m@production").id == v2.id
    assert repo.resolve_model_version(pg_session, "m:9") is None
    with pytest.raises(ValueError):
        repo.parse_model_ref("m:latest")


def test_user_filters_are_bound_parameters_and_match_literally(pg_session):
    rows = [{"external_id": "a%b", "text": "percent", "label": "x"},
            {"external_id": "aXb", "text": "letter", "label": "y"},
            {"external_id": "x'; DROP TABLE documents; --", "text": "quote", "label": "x"}]
    repo.upsert_documents(pg_session, "c", rows)
    assert repo.count_documents(pg_session, "c", where={"external_id_prefix": "a%"}) == 1
    assert repo.count_documents(pg_session, "c", where={"external_id_prefix": "x'; DROP"}) == 1
    assert repo.count_documents(pg_session, "c", where={"labels": ["x"]}) == 2
    assert repo.count_documents(pg_session, "c", where={"updated_after": "2000-01-01T00:00:00"}) == 3
    assert repo.count_documents(pg_session, "c", where={"updated_after": "2999-01-01T00:00:00+00:00"}) == 0
    assert repo.count_documents(pg_session, "c") == 3
    for bad in ({"sql": "1=1"}, {"labels": "x"}, {"updated_after": "yesterday"}):
        with pytest.raises(ValueError):
            repo.count_documents(pg_session, "c", where=bad)


def test_a_retry_that_races_a_cancel_ends_the_job_cancelled_not_queued(pg_session):
    job = _job(pg_session)
    repo.claim_job(pg_session, job.id, "w1", lease_seconds=60)
    repo.request_cancel(pg_session, job.id, aggregate=parent_outcome)
    assert repo.requeue_job(pg_session, job.id, 1, "boom", aggregate=parent_outcome) is True
    pg_session.refresh(job)
    assert job.status == "cancelled"


def test_a_parked_parent_takes_no_more_heartbeats_or_fenced_writes(pg_session):
    parent = _job(pg_session)
    repo.claim_job(pg_session, parent.id, "w1", lease_seconds=60)
    repo.create_shards(pg_session, parent.id, 1, [{"collection": "c", "model": "m:1", "id_min": 1, "id_max": 9}],
                       max_attempts=3, total=9)
    assert repo.heartbeat(pg_session, parent.id, 1, 60) is None
    assert repo.fence(pg_session, parent.id, 1) is False
    pg_session.refresh(parent)
    assert parent.status == "running" and parent.lease_expires_at is None


def test_label_sets_are_written_as_sql_null_or_json_and_a_change_of_labels_alone_is_an_update(any_db_url):
    from db.session import session_factory_for

    with session_factory_for(any_db_url).begin() as s:
        rows = [{"external_id": "a", "text": "one", "labels": ["x", "ü \"q\""]},
                {"external_id": "b", "text": "two", "labels": []},      # an empty set is NULL
                {"external_id": "c", "text": "three", "label": "pos"}]  # no labels key at all
        assert repo.upsert_documents(s, "c", rows) == repo.UpsertCounts(3, 0, 0)
        assert repo.upsert_documents(s, "c", rows) == repo.UpsertCounts(0, 0, 3)
        assert s.scalar(text("SELECT count(*) FROM documents WHERE labels IS NULL")) == 2  # not JSON null
        rows[0] = {**rows[0], "labels": ["x"]}
        rows[1] = {**rows[1], "labels": ["y"]}
        assert repo.upsert_documents(s, "c", rows) == repo.UpsertCounts(0, 2, 1)
        rows[0] = {**rows[0], "labels": None}
        assert repo.upsert_documents(s, "c", rows) == repo.UpsertCounts(0, 1, 2)
        assert repo.load_labelled(s, "c", multi_label=True).labels == [["y"]]


def test_load_labelled_reads_label_sets_with_multi_label_and_single_labels_without(any_db_url):
    from db.session import session_factory_for

    with session_factory_for(any_db_url).begin() as s:
        repo.upsert_documents(s, "c", [
            {"external_id": "k1", "text": "both topics", "labels": ["politics", "sport"]},
            {"external_id": "k2", "text": "single", "label": "pos"},
            {"external_id": "k3", "text": "nothing"},
            {"external_id": "x4", "text": "one topic", "labels": ["sport"]},
            {"external_id": "k5", "text": "emptied by hand", "labels": ["tmp"]},
        ])
        repo.upsert_documents(s, "other", [{"external_id": "k1", "text": "elsewhere", "labels": ["sport"]}])
        s.execute(text("UPDATE documents SET labels = '[]' WHERE external_id = 'k5'"))  # not NULL, but empty

        multi = repo.load_labelled(s, "c", multi_label=True)
        assert multi.texts == ["both topics", "one topic"]
        assert multi.labels == [["politics", "sport"], ["sport"]]
        assert multi.ids == sorted(multi.ids) and multi.unlabelled == 3
        filtered = repo.load_labelled(s, "c", {"external_id_prefix": "k"}, multi_label=True)
        assert (filtered.texts, filtered.unlabelled) == (["both topics"], 3)

        single = repo.load_labelled(s, "c")  # as before: the single label column only
        assert (single.texts, single.labels, single.unlabelled) == (["single"], ["pos"], 4)
        assert repo.load_labelled(s, "c", {"labels": ["sport"]}, multi_label=True) == repo.LabelledSet([], [], [], 0)


def test_finishing_a_job_with_a_status_that_is_not_final_is_refused(pg_session):
    from db.errors import InvalidTransition

    job = _job(pg_session)
    repo.claim_job(pg_session, job.id, "w1", lease_seconds=60)
    with pytest.raises(InvalidTransition, match="cannot finish 'queued'"):
        repo.finish_job(pg_session, job.id, 1, JobStatus.queued, aggregate=parent_outcome)
    pg_session.refresh(job)
    assert job.status == "running"


def test_a_sharded_parent_ends_in_the_transaction_of_its_last_shard_with_their_totals(pg_session):
    parent = _job(pg_session)
    repo.claim_job(pg_session, parent.id, "w1", lease_seconds=60)
    shard = {"collection": "c", "model": "m:1", "id_min": 1, "id_max": 9}
    ids = repo.create_shards(pg_session, parent.id, 1, [shard, shard], max_attempts=3, total=10)
    for n, shard_id in enumerate(ids):
        pg_session.refresh(parent)
        assert parent.status == "running"
        repo.claim_job(pg_session, shard_id, "w2", lease_seconds=60)
        assert repo.finish_job(pg_session, shard_id, 1, JobStatus.succeeded, aggregate=parent_outcome, result={
            "model": "m:1", "model_version_id": 7, "collection": "c", "documents": 5, "classified": 4 + n,
            "failed": 1 - n})
    pg_session.refresh(parent)
    assert (parent.status, parent.error) == ("succeeded", None)
    assert {k: parent.result[k] for k in ("shards", "model", "documents", "classified", "failed")} == {
        "shards": ids, "model": "m:1", "documents": 10, "classified": 9, "failed": 1}
    assert repo.finalize_parent(pg_session, parent.id, parent_outcome) is False  # once only


def test_leases_expiry_and_stamps_follow_the_database_clock_not_this_hosts(clean_pg, make_settings, monkeypatch):
    """This host's clock runs an hour fast: the lease it takes is still a minute by PostgreSQL's clock, the reaper
    leaves the job alone, and a page read now is not stamped an hour in the future."""
    import sys

    from db.session import session_factory_for
    from helpers import insert_job
    from worker.jobs.paging import walk_pages
    from worker.ops.reaper import reap

    def fast():
        return datetime.now(timezone.utc) + timedelta(hours=1)

    for module in [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("db", "worker")]:
        if getattr(module, "utcnow", None) is utcnow:
            monkeypatch.setattr(module, "utcnow", fast)
    job_id = insert_job(clean_pg, "classify", {"collection": "c", "model": "m"})
    sessions = session_factory_for(clean_pg)
    with sessions.begin() as s:
        assert repo.claim_job(s, job_id, "w1", lease_seconds=60) == 1
        repo.upsert_documents(s, "c", [{"external_id": "a", "text": "hello"}])
    report = reap(make_settings(clean_pg))
    assert report.requeued == report.dead == []
    with sessions.begin() as s:
        left = s.scalar(text("SELECT extract(epoch FROM lease_expires_at - now()) FROM jobs WHERE id = :i"),
                        {"i": job_id})
        assert 50 < left <= 60
    [(_, _, read_at)] = list(walk_pages(sessions, "c", None, 10))
    assert read_at < datetime.now(timezone.utc) + timedelta(minutes=5)
