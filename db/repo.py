"""Data access. Every function takes a Session and never commits: the caller owns the transaction.

Job writes made by a worker are *fenced*: they only take effect while the job is ``running`` under the
attempt number the worker claimed. A stale owner (a paused process, a duplicate delivery) changes nothing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import Float, Select, and_, func, literal, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import (
    FINISHED_STATUSES,
    Document,
    Evaluation,
    Job,
    JobStatus,
    ModelAlias,
    ModelAliasHistory,
    ModelVersion,
    Prediction,
    utcnow,
)
from db.names import check_name, parse_model_ref  # the one name rule and model-reference parser (pure)

# Rows per INSERT statement: well under SQLite's 32k bound parameters and PostgreSQL's 65k.
_ROWS_PER_STATEMENT = 500


def _insert(session: Session, table):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"bertjobs supports PostgreSQL and SQLite, not {dialect}")


def _chunks(rows: Sequence[Any], size: int = _ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# ---------------------------------------------------------------- documents


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


# PostgreSQL: one statement per chunk. Identical rows are not touched (the WHERE on DO UPDATE); RETURNING
# gives the rows written, and xmax = 0 tells an insert from an update. Label sets travel as JSON text (NULL
# for none) and become jsonb server-side.
_PG_UPSERT_DOCUMENTS = text("""
INSERT INTO documents (collection, external_id, text, label, labels, created_at, updated_at)
SELECT :collection, e, t, l, CAST(ls AS JSONB), :now, :now
FROM unnest(CAST(:e AS TEXT[]), CAST(:t AS TEXT[]), CAST(:l AS TEXT[]), CAST(:ls AS TEXT[])) AS u(e, t, l, ls)
ON CONFLICT (collection, external_id) DO UPDATE
SET text = EXCLUDED.text, label = EXCLUDED.label, labels = EXCLUDED.labels, updated_at = EXCLUDED.updated_at
WHERE documents.text IS DISTINCT FROM EXCLUDED.text OR documents.label IS DISTINCT FROM EXCLUDED.label
   OR documents.labels IS DISTINCT FROM EXCLUDED.labels
RETURNING (xmax = 0) AS inserted
""")


def _label_set(row: dict[str, Any]) -> list[str] | None:
    # An empty label set is no label set: stored as NULL.
    return list(row.get("labels") or ()) or None


def upsert_documents(session: Session, collection: str, rows: Sequence[dict[str, Any]]) -> UpsertCounts:
    """Insert or update documents keyed by (collection, external_id); identical rows are left alone.

    A row has ``external_id``, ``text`` and optionally ``label`` (single-label) or ``labels`` (the label set of a
    multi-label document, normalised by the caller; empty or missing is NULL). A change of text, label or labels
    is an update. Within ``rows`` the last row of an id wins.
    """
    rows = list({r["external_id"]: r for r in rows}.values())
    if session.get_bind().dialect.name == "postgresql":
        inserted = updated = 0
        for chunk in _chunks(rows, 5000):
            written = session.execute(_PG_UPSERT_DOCUMENTS, {
                "collection": collection, "now": utcnow(), "e": [r["external_id"] for r in chunk],
                "t": [r["text"] for r in chunk], "l": [r.get("label") for r in chunk],
                "ls": [None if (ls := _label_set(r)) is None else json.dumps(ls, ensure_ascii=False)
                       for r in chunk]}).scalars().all()
            inserted += sum(1 for w in written if w)
            updated += sum(1 for w in written if not w)
        return UpsertCounts(inserted, updated, len(rows) - inserted - updated)
    inserted = updated = unchanged = 0
    for chunk in _chunks(rows):
        ids = [r["external_id"] for r in chunk]
        existing = {
            ext: (body, label, labels or None)
            for ext, body, label, labels in session.execute(
                select(Document.external_id, Document.text, Document.label, Document.labels).where(
                    Document.collection == collection, Document.external_id.in_(ids)
                )
            )
        }
        new_rows, changed = [], []
        for r in chunk:
            before = existing.get(r["external_id"])
            if before is None:
                new_rows.append(r)
            elif before != (r["text"], r.get("label"), _label_set(r)):
                changed.append(r)
            else:
                unchanged += 1
        now = utcnow()
        if new_rows:
            stmt = _insert(session, Document).on_conflict_do_nothing(index_elements=["collection", "external_id"])
            session.execute(
                stmt,
                [
                    {"collection": collection, "external_id": r["external_id"], "text": r["text"],
                     "label": r.get("label"), "labels": _label_set(r), "created_at": now, "updated_at": now}
                    for r in new_rows
                ],
            )
            inserted += len(new_rows)
        for r in changed:
            session.execute(
                update(Document)
                .where(Document.collection == collection, Document.external_id == r["external_id"])
                .values(text=r["text"], label=r.get("label"), labels=_label_set(r), updated_at=now)
            )
            updated += 1
    return UpsertCounts(inserted, updated, unchanged)


FILTER_KEYS = ("labels", "external_id_prefix", "created_after", "updated_after")


def document_filter(where: dict[str, Any] | None) -> list:
    """A user's document filter as SQL conditions. Values are bound parameters, never SQL text.

    Keys: ``labels`` (list of gold labels), ``external_id_prefix`` (LIKE-escaped), ``created_after`` and
    ``updated_after`` (ISO 8601 timestamps).

    ``labels`` filters single labels: documents whose ``label`` is one of them. It does not look at a multi-label
    document's ``labels`` set (its ``label`` is NULL, so it never matches).
    """
    if not where:
        return []
    unknown = sorted(set(where) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(f"unknown filter key(s) {', '.join(unknown)}; use {', '.join(FILTER_KEYS)}")
    conditions = []
    if "labels" in where:
        labels = where["labels"]
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise ValueError("filter labels must be a non-empty list of strings")
        conditions.append(Document.label.in_(labels))
    if "external_id_prefix" in where:
        prefix = where["external_id_prefix"]
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("filter external_id_prefix must be a non-empty string")
        conditions.append(Document.external_id.startswith(prefix, autoescape=True))
    for key, column in (("created_after", Document.created_at), ("updated_after", Document.updated_at)):
        if key in where:
            try:
                moment = datetime.fromisoformat(str(where[key]))
            except ValueError as exc:
                raise ValueError(f"filter {key} must be an ISO 8601 timestamp, got {where[key]!r}") from exc
            moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
            conditions.append(column > moment)
    return conditions


def _documents_in(collection: str, after_id: int | None, unpredicted_by: int | None, up_to_id: int | None = None,
                  where: dict[str, Any] | None = None):
    conditions = [Document.collection == collection, *document_filter(where)]
    if after_id is not None:
        conditions.append(Document.id > after_id)
    if up_to_id is not None:
        conditions.append(Document.id <= up_to_id)
    if unpredicted_by is not None:
        conditions.append(unpredicted_filter(unpredicted_by))
    return conditions


def count_documents(session: Session, collection: str, after_id: int | None = None,
                    unpredicted_by: int | None = None, up_to_id: int | None = None,
                    where: dict[str, Any] | None = None) -> int:
    """Documents of a collection, optionally in (after_id, up_to_id] and without a prediction from a version."""
    stmt = select(func.count()).select_from(Document).where(
        *_documents_in(collection, after_id, unpredicted_by, up_to_id, where))
    return session.scalar(stmt) or 0


def read_documents(session: Session, collection: str, after_id: int | None, limit: int,
                   unpredicted_by: int | None = None, up_to_id: int | None = None,
                   where: dict[str, Any] | None = None) -> list[tuple[int, str]]:
    """One keyset page of (id, text) in id order, strictly after ``after_id`` (and up to ``up_to_id``)."""
    conditions = _documents_in(collection, after_id, unpredicted_by, up_to_id, where)
    stmt = select(Document.id, Document.text).where(*conditions).order_by(Document.id).limit(limit)
    return [(i, t) for i, t in session.execute(stmt)]


def max_document_id(session: Session, collection: str) -> int | None:
    return session.scalar(select(func.max(Document.id)).where(Document.collection == collection))


def id_ranges(session: Session, collection: str, per_range: int,
              where: dict[str, Any] | None = None) -> list[tuple[int, int]]:
    """Split a collection into consecutive id ranges of about ``per_range`` documents each (one pass)."""
    numbered = (select(Document.id, func.row_number().over(order_by=Document.id).label("rn"))
                .where(*_documents_in(collection, None, None, None, where)).subquery())
    starts = list(session.scalars(select(numbered.c.id).where((numbered.c.rn - 1) % per_range == 0)
                                  .order_by(numbered.c.id)))
    if not starts:
        return []
    last = session.scalar(select(func.max(Document.id)).where(*_documents_in(collection, None, None, None, where)))
    ends = [nxt - 1 for nxt in starts[1:]] + [last]
    return list(zip(starts, ends))


@dataclass(frozen=True)
class LabelledSet:
    ids: list[int]
    texts: list[str]
    labels: list[str] | list[list[str]]  # one label per document, or one label set (multi_label=True)
    unlabelled: int


def load_labelled(session: Session, collection: str, where: dict[str, Any] | None = None, *,
                  multi_label: bool = False) -> LabelledSet:
    """The collection's labelled documents in id order, and how many of the selected ones have no label.

    With ``multi_label`` a document is labelled by a non-empty ``labels`` set and each element of ``labels`` is
    that list of strings; a document with only a single ``label`` counts as unlabelled then, and the other way
    round without it.
    """
    check_name("collection", collection)
    ids, texts, labels = [], [], []
    selected = _documents_in(collection, None, None, None, where)
    column = Document.labels if multi_label else Document.label
    for doc_id, body, label in session.execute(
        select(Document.id, Document.text, column).where(*selected, column.is_not(None)).order_by(Document.id)
    ):
        if multi_label:
            if not label:  # an empty set, or a JSON null written by hand: no labels
                continue
            label = [str(x) for x in label]
        ids.append(doc_id)
        texts.append(body)
        labels.append(label)
    total = session.scalar(select(func.count()).select_from(Document).where(*selected)) or 0
    return LabelledSet(ids, texts, labels, total - len(ids))


def collection_exists(session: Session, collection: str) -> bool:
    """Whether any document belongs to the collection (a collection exists by having documents).

    A name that breaks the name rule raises InvalidName: it is a wrong name, not an unknown one."""
    check_name("collection", collection)
    return session.scalar(select(Document.id).where(Document.collection == collection).limit(1)) is not None


def count_labelled(session: Session, collection: str, where: dict[str, Any] | None = None, *,
                   multi_label: bool = False) -> tuple[int, int]:
    """(selected, labelled): the documents the filter selects, and how many of them carry a label (or label set).

    Counts what ``load_labelled`` would load, without reading texts; a multi-label JSON null or empty set is
    unlabelled there and is counted as such here too.
    """
    selected = _documents_in(collection, None, None, None, where)
    total = session.scalar(select(func.count()).select_from(Document).where(*selected)) or 0
    if multi_label:
        labelled = sum(1 for (labels,) in session.execute(
            select(Document.labels).where(*selected, Document.labels.is_not(None))) if labels)
    else:
        labelled = session.scalar(select(func.count()).select_from(Document)
                                  .where(*selected, Document.label.is_not(None))) or 0
    return total, labelled


def model_name_exists(session: Session, name: str) -> bool:
    """Whether any version (ready or not) of a model name was ever registered (InvalidName for a bad name)."""
    check_name("model name", name)
    return session.scalar(select(ModelVersion.id).where(ModelVersion.name == name).limit(1)) is not None


# ---------------------------------------------------------------- jobs


def create_job(
    session: Session,
    kind: str,
    params: dict[str, Any],
    *,
    max_attempts: int,
    dedupe_key: str | None = None,
) -> tuple[Job, bool]:
    """Insert a queued job; with a ``dedupe_key`` already used, return that job instead. Returns (job, created)."""
    if dedupe_key is not None:
        existing = job_by_dedupe_key(session, dedupe_key)
        if existing is not None:
            return existing, False
    if dedupe_key is None:
        job = Job(kind=kind, params=params, max_attempts=max_attempts, status=JobStatus.queued.value)
        session.add(job)
        session.flush()
        return job, True
    # A concurrent submission with the same key may insert first: then its job is the one (no IntegrityError;
    # PostgreSQL waits for that insert's commit, SQLite writes one at a time).
    stmt = (_insert(session, Job.__table__)
            .values(kind=kind, params=params, max_attempts=max_attempts, dedupe_key=dedupe_key,
                    status=JobStatus.queued.value)
            .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Job.__table__.c.id))
    job_id = session.execute(stmt).scalar_one_or_none()
    if job_id is None:
        return job_by_dedupe_key(session, dedupe_key), False
    return get_job(session, job_id), True


def job_by_dedupe_key(session: Session, dedupe_key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def job_kind(session: Session, job_id: int) -> str | None:
    """A job's kind, read without its params (which a row written with SQL may hold as text that is not JSON)."""
    return session.scalar(select(Job.kind).where(Job.id == job_id))


def list_jobs(session: Session, *, limit: int = 50, status: str | None = None, kind: str | None = None) -> list[Job]:
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(Job.status == status)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    return list(session.scalars(stmt))


def claim_job(session: Session, job_id: int, owner: str, lease_seconds: int, now: datetime | None = None) -> int | None:
    """Atomically take a queued job, or a running one whose lease expired. Returns the new attempt, or None.

    Zero rows means someone else owns it, it is finished, cancelled, or out of attempts.
    """
    now = now or utcnow()
    claimable = or_(
        Job.status == JobStatus.queued.value,
        and_(Job.status == JobStatus.running.value, Job.lease_expires_at < now),
    )
    stmt = (
        update(Job)
        .where(Job.id == job_id, claimable, Job.cancel_requested.is_(False), Job.attempt < Job.max_attempts)
        .values(
            status=JobStatus.running.value,
            attempt=Job.attempt + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
        .returning(Job.attempt)
    )
    return session.execute(stmt).scalar_one_or_none()


def _fenced(job_id: int, attempt: int):
    # A parked sharded parent is running with no lease: nothing of its attempt may write any more.
    return and_(Job.id == job_id, Job.attempt == attempt, Job.status == JobStatus.running.value,
                Job.lease_expires_at.is_not(None))


def fence(session: Session, job_id: int, attempt: int) -> bool:
    """Lock the job row if this attempt still owns it. Call first in every transaction that writes results."""
    result = session.execute(update(Job).where(_fenced(job_id, attempt)).values(updated_at=utcnow()))
    return result.rowcount == 1


def heartbeat(session: Session, job_id: int, attempt: int, lease_seconds: int) -> bool | None:
    """Extend the lease. Returns cancel_requested, or None when this attempt no longer owns the job."""
    now = utcnow()
    stmt = (
        update(Job)
        .where(_fenced(job_id, attempt))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(Job.cancel_requested)
    )
    return session.execute(stmt).scalar_one_or_none()


def set_progress(
    session: Session, job_id: int, attempt: int, *, done: int, total: int | None = None, cursor: int | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Record progress (fenced). ``detail`` is for display only (``result["progress"]`` while the job runs:
    epoch and loss, documents in flight); the job's outcome replaces it when it finishes."""
    values: dict[str, Any] = {"progress_done": done, "updated_at": utcnow()}
    if total is not None:
        values["progress_total"] = total
    if cursor is not None:
        values["cursor"] = cursor
    if detail is not None:
        values["result"] = {"progress": detail}
    return session.execute(update(Job).where(_fenced(job_id, attempt)).values(**values)).rowcount == 1


def set_progress_detail(session: Session, job_id: int, attempt: int, detail: dict[str, Any]) -> bool:
    """Only the display detail (fenced): progress_done and the cursor stay what the last page committed."""
    return session.execute(update(Job).where(_fenced(job_id, attempt)).values(
        result={"progress": detail})).rowcount == 1


def finish_job(
    session: Session,
    job_id: int,
    attempt: int,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """End the job (fenced). False when this attempt no longer owns it."""
    assert status in FINISHED_STATUSES
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now,
                              "lease_owner": None, "lease_expires_at": None, "error": error}
    if result is not None:
        values["result"] = result
    if session.execute(update(Job).where(_fenced(job_id, attempt)).values(**values)).rowcount != 1:
        return False
    _finalize_parent_of(session, job_id)
    return True


# ---------------------------------------------------------------- shards


def create_shards(session: Session, parent_id: int, attempt: int, params: list[dict[str, Any]],
                  max_attempts: int, total: int) -> list[int]:
    """Insert queued child jobs and park the parent (running, no lease: it finishes with its last shard)."""
    now = utcnow()
    ids = []
    for p in params:
        job = Job(kind="classify", params=p, max_attempts=max_attempts, parent_id=parent_id,
                  status=JobStatus.queued.value, created_at=now, updated_at=now)
        session.add(job)
        session.flush()
        ids.append(job.id)
    session.execute(update(Job).where(_fenced(parent_id, attempt)).values(
        lease_owner=None, lease_expires_at=None, progress_done=0, progress_total=total,
        result={"shards": ids}, updated_at=now))
    return ids


def add_progress(session: Session, job_id: int, done: int) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(progress_done=Job.progress_done + done))


def _finalize_parent_of(session: Session, job_id: int) -> None:
    parent_id = session.scalar(select(Job.parent_id).where(Job.id == job_id))
    if parent_id is not None:
        finalize_parent(session, parent_id)


def finalize_parent(session: Session, parent_id: int) -> bool:
    """Finish a sharded job once the database says all its shards have finished. True if it did."""
    now = utcnow()
    # Lock the parent row: two shards finishing at once are serialized here.
    locked = session.execute(update(Job).where(Job.id == parent_id, Job.status == JobStatus.running.value,
                                               Job.lease_expires_at.is_(None)).values(updated_at=now))
    if locked.rowcount != 1:
        return False
    shards = session.execute(select(Job.id, Job.status, Job.result, Job.error).where(Job.parent_id == parent_id)).all()
    finished = {st.value for st in FINISHED_STATUSES}
    if not shards or any(sh.status not in finished for sh in shards):
        return False
    started = session.scalar(select(Job.started_at).where(Job.id == parent_id))
    totals = {k: sum((sh.result or {}).get(k, 0) for sh in shards) for k in ("documents", "classified", "failed")}
    first = next((sh.result for sh in shards if sh.result and "model" in sh.result), {}) or {}
    result = {"shards": [sh.id for sh in shards], "model": first.get("model"),
              "model_version_id": first.get("model_version_id"), "collection": first.get("collection"), **totals}
    if started is not None:
        seconds = (now - (started if started.tzinfo else started.replace(tzinfo=now.tzinfo))).total_seconds()
        result["seconds"] = round(seconds, 3)
        result["documents_per_second"] = round(totals["documents"] / seconds, 2) if seconds > 0 else None
    bad = [sh for sh in shards if sh.status in (JobStatus.failed.value, JobStatus.dead.value)]
    if bad:
        error = f"{len(bad)} of {len(shards)} shards failed; shard {bad[0].id}: {bad[0].error}"
        status = JobStatus.failed
    elif any(sh.status == JobStatus.cancelled.value for sh in shards):
        status, error = JobStatus.cancelled, "cancelled on request"
    else:
        status, error = JobStatus.succeeded, None
    session.execute(update(Job).where(Job.id == parent_id).values(
        status=status.value, finished_at=now, updated_at=now, result=result, error=error))
    return True


def requeue_job(session: Session, job_id: int, attempt: int, error: str) -> bool:
    """Give a job back to the queue after a failure worth retrying (fenced); a job asked to cancel ends instead."""
    if session.execute(update(Job).where(_fenced(job_id, attempt), Job.cancel_requested.is_(True))
                       .values(status=JobStatus.cancelled.value, lease_owner=None, lease_expires_at=None,
                               finished_at=utcnow(), updated_at=utcnow(), error="cancelled on request")).rowcount:
        _finalize_parent_of(session, job_id)
        return True
    values = {"status": JobStatus.queued.value, "lease_owner": None, "lease_expires_at": None,
              "error": error, "updated_at": utcnow()}
    return session.execute(update(Job).where(_fenced(job_id, attempt)).values(**values)).rowcount == 1


@dataclass(frozen=True)
class ExpiredJob:
    id: int
    kind: str
    attempt: int
    max_attempts: int
    cancel_requested: bool


def expired_jobs(session: Session, now: datetime, limit: int = 500) -> list[ExpiredJob]:
    """Running jobs whose lease ran out: their worker died, hung or lost the database."""
    stmt = (select(Job.id, Job.kind, Job.attempt, Job.max_attempts, Job.cancel_requested)
            .where(Job.status == JobStatus.running.value, Job.lease_expires_at < now).order_by(Job.id).limit(limit))
    return [ExpiredJob(*row) for row in session.execute(stmt)]


def release_expired(session: Session, job: ExpiredJob, now: datetime, status: JobStatus, error: str) -> bool:
    """Re-queue or end a job whose lease expired, unless someone renewed or re-claimed it meanwhile."""
    values: dict[str, Any] = {"status": status.value, "lease_owner": None, "lease_expires_at": None,
                              "error": error, "updated_at": now}
    if status is not JobStatus.queued:
        values["finished_at"] = now
    stmt = update(Job).where(Job.id == job.id, Job.attempt == job.attempt, Job.status == JobStatus.running.value,
                             Job.lease_expires_at < now).values(**values)
    if status is JobStatus.queued:  # a cancel that arrived meanwhile wins; the next pass ends the job
        stmt = stmt.where(Job.cancel_requested.is_(False))
    if session.execute(stmt).rowcount != 1:
        return False
    if status is not JobStatus.queued:
        _finalize_parent_of(session, job.id)
    return True


def cancel_pending_queued(session: Session, now: datetime) -> list[int]:
    """Queued jobs asked to cancel (a cancel that raced a re-queue) end cancelled."""
    ids = list(session.scalars(select(Job.id).where(Job.status == JobStatus.queued.value,
                                                     Job.cancel_requested.is_(True))))
    if ids:
        session.execute(update(Job).where(Job.id.in_(ids), Job.status == JobStatus.queued.value).values(
            status=JobStatus.cancelled.value, finished_at=now, updated_at=now, error="cancelled on request"))
        for job_id in ids:
            _finalize_parent_of(session, job_id)
    return ids


def stale_queued_jobs(session: Session, older_than: datetime, limit: int = 500) -> list[tuple[int, str]]:
    """Queued jobs untouched since ``older_than``: their message may be lost (a flushed or restarted Redis).

    Marks them touched, so each is re-published at most once per interval.
    """
    rows = list(session.execute(
        select(Job.id, Job.kind).where(Job.status == JobStatus.queued.value, Job.updated_at < older_than,
                                       Job.cancel_requested.is_(False)).order_by(Job.id).limit(limit)))
    if rows:
        session.execute(update(Job).where(Job.id.in_([r[0] for r in rows])).values(updated_at=utcnow()))
    return [(i, k) for i, k in rows]


def request_cancel(session: Session, job_id: int) -> Job | None:
    """Ask a job to stop: a queued job is cancelled at once, a running one stops at its next batch or step."""
    job = get_job(session, job_id)
    if job is None:
        return None
    if job.status in {s.value for s in FINISHED_STATUSES}:
        return job
    now = utcnow()
    values: dict[str, Any] = {"cancel_requested": True, "updated_at": now}
    unfinished = Job.status.not_in([st.value for st in FINISHED_STATUSES])
    # Shards first, then the job: the same lock order as a shard's own transaction (child, then parent).
    for targets in (Job.parent_id == job_id, Job.id == job_id):
        session.execute(
            update(Job).where(targets, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=now, error="cancelled before it started", **values)
        )
        session.execute(update(Job).where(targets, unfinished).values(**values))
    finalize_parent(session, job_id)
    _finalize_parent_of(session, job_id)
    return get_job(session, job_id)


# ---------------------------------------------------------------- models


def next_model_version(session: Session, name: str) -> int:
    return (session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0) + 1


def register_model_version(session: Session, **fields: Any) -> ModelVersion:
    """Insert a model version numbered one past the latest of its name."""
    mv = ModelVersion(version=next_model_version(session, fields["name"]), **fields)
    session.add(mv)
    session.flush()
    return mv


def resolve_model_version(session: Session, ref: str) -> ModelVersion | None:
    """The ready version ``ref`` names (``name``, ``name:3``, ``name@alias``; see db.names), or None."""
    name, selector = parse_model_ref(ref)
    stmt: Select = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.status == "ready")
    if isinstance(selector, int):
        stmt = stmt.where(ModelVersion.version == selector)
    elif isinstance(selector, str):
        stmt = stmt.join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id).where(ModelAlias.alias == selector)
    return session.scalar(stmt.order_by(ModelVersion.version.desc()).limit(1))


def list_model_versions(session: Session, name: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
    if name:
        check_name("model name", name)
        stmt = stmt.where(ModelVersion.name == name)
    return list(session.scalars(stmt))


def alias_holder(session: Session, name: str, alias: str, *, lock: bool = False) -> ModelAlias | None:
    """The alias row; ``lock`` holds it (PostgreSQL: FOR UPDATE) so two moves of one alias serialize."""
    stmt = select(ModelAlias).where(ModelAlias.name == name, ModelAlias.alias == alias)
    return session.scalar(stmt.with_for_update() if lock else stmt)


def set_alias(session: Session, mv: ModelVersion, alias: str, *, command: str = "promote",
              actor: str | None = None) -> int | None:
    """Point ``name@alias`` at this version and record the move in the alias history (a no-op if it holds it
    already). Returns the version id it pointed at before (None: a new alias)."""
    current = alias_holder(session, mv.name, alias, lock=True)
    if current is None:
        session.add(ModelAlias(name=mv.name, alias=alias, model_version_id=mv.id, updated_at=utcnow()))
        _record_alias_move(session, mv.name, alias, mv.id, None, command, actor)
        session.flush()
        return None
    previous = current.model_version_id
    if previous != mv.id:
        current.previous_version_id, current.model_version_id, current.updated_at = previous, mv.id, utcnow()
        _record_alias_move(session, mv.name, alias, mv.id, previous, command, actor)
        session.flush()
    return previous


def _record_alias_move(session: Session, name: str, alias: str, to_id: int, from_id: int | None, command: str,
                       actor: str | None) -> None:
    session.add(ModelAliasHistory(name=name, alias=alias, model_version_id=to_id, previous_version_id=from_id,
                                  command=command, actor=actor, created_at=utcnow()))


def alias_history(session: Session, name: str, alias: str | None = None,
                  limit: int | None = None) -> list[ModelAliasHistory]:
    """Moves of the model's aliases (or of one alias), oldest first (the newest ``limit`` of them)."""
    stmt = select(ModelAliasHistory).where(ModelAliasHistory.name == name)
    if alias is not None:
        stmt = stmt.where(ModelAliasHistory.alias == alias)
    if limit is not None:
        return list(reversed(list(session.scalars(stmt.order_by(ModelAliasHistory.id.desc()).limit(limit)))))
    return list(session.scalars(stmt.order_by(ModelAliasHistory.id)))


def alias_stack(session: Session, name: str, alias: str) -> list[int]:
    """The holders a rollback steps back through, oldest first, the current holder last: the history replayed,
    each promotion pushing its version (unless it is on top already) and each rollback popping one."""
    stack: list[int] = []
    for move in alias_history(session, name, alias):
        if move.command == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != move.model_version_id:  # a history that disagrees: trust the move
                stack.append(move.model_version_id)
        elif not stack or stack[-1] != move.model_version_id:
            stack.append(move.model_version_id)
    return stack


def rollback_alias(session: Session, name: str, alias: str, *, actor: str | None = None) -> ModelVersion | None:
    """Point ``name@alias`` at the holder before the current one in its history; None when there is none.

    A -> B -> C, rollback: B; rollback again: A (not C). The rollback is recorded in the history too.
    """
    current = alias_holder(session, name, alias, lock=True)
    if current is None:
        return None
    stack = alias_stack(session, name, alias)
    if not stack or stack[-1] != current.model_version_id:  # moved outside the history (by hand): start there
        stack.append(current.model_version_id)
    if len(stack) < 2:
        return None
    target = stack[-2]
    moved_from = current.model_version_id
    current.model_version_id, current.previous_version_id, current.updated_at = target, moved_from, utcnow()
    _record_alias_move(session, name, alias, target, moved_from, "rollback", actor)
    session.flush()
    return session.get(ModelVersion, target)


def aliases_by_version(session: Session, name: str | None = None) -> dict[int, list[str]]:
    """Model version id -> the aliases pointing at it (sorted)."""
    stmt = select(ModelAlias.model_version_id, ModelAlias.alias).order_by(ModelAlias.alias)
    if name:
        stmt = stmt.where(ModelAlias.name == name)
    out: dict[int, list[str]] = {}
    for version_id, alias in session.execute(stmt):
        out.setdefault(version_id, []).append(alias)
    return out


def active_jobs(session: Session, kind: str, dedupe_prefix: str) -> list[Job]:
    """Unfinished jobs of a kind whose dedupe key starts with a prefix (used to never overlap nightly runs)."""
    return list(session.scalars(select(Job).where(
        Job.kind == kind, Job.dedupe_key.startswith(dedupe_prefix, autoescape=True),
        Job.status.in_([JobStatus.queued.value, JobStatus.running.value]))))


def add_evaluation(session: Session, **fields: Any) -> Evaluation:
    """Record an evaluation of a model version on a labelled collection (see worker/evaluate.py)."""
    evaluation = Evaluation(**fields)
    session.add(evaluation)
    session.flush()
    return evaluation


def list_evaluations(session: Session, model_version_id: int, limit: int = 50) -> list[Evaluation]:
    """A model version's evaluations, newest first."""
    return list(session.scalars(select(Evaluation).where(Evaluation.model_version_id == model_version_id)
                                .order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(limit)))


# ---------------------------------------------------------------- predictions


# A prediction row's columns, in one list: the PostgreSQL statement, its payload and the columns a re-run
# overwrites all follow it (a new nullable column needs its name added here and nothing else).
_PREDICTION_COLUMNS = ("document_id", "model_version_id", "label", "labels", "score", "scores", "error", "job_id",
                       "created_at")
_PREDICTION_KEY = ("document_id", "model_version_id")
_UPDATED_ON_CONFLICT = tuple(c for c in _PREDICTION_COLUMNS if c not in _PREDICTION_KEY)

# PostgreSQL: one statement per page, the rows sent as one JSON array and turned into rows of the table's own
# type server-side (json_populate_recordset: JSON null is SQL NULL, a nested object fills a JSON column).
# Measured side by side with pages of 512 (bench/README.md): 1.1-1.2x the eight unnest() arrays this
# replaces, whose per-element array adaptation in the driver cost twice the client CPU; COPY into a temporary
# staging table saved as much client CPU but gave it back in slower commits.
_PG_UPSERT_PREDICTIONS = text(f"""
INSERT INTO predictions ({", ".join(_PREDICTION_COLUMNS)})
SELECT {", ".join(_PREDICTION_COLUMNS)}
FROM json_populate_recordset(CAST(NULL AS predictions), CAST(:rows AS JSON))
ON CONFLICT ({", ".join(_PREDICTION_KEY)}) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED_ON_CONFLICT)}
""")


def _json_value(value: Any) -> Any:
    """json.dumps' fallback for the payload: timestamps as ISO 8601 (an offset kept, a naive one read in the
    session's time zone, as the driver would send it)."""
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"a prediction value of type {type(value).__name__} cannot be sent: {value!r}")


def _dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_value, ensure_ascii=False, check_circular=False, allow_nan=False)


def _float_text(value: Any) -> Any:
    # JSON has no NaN or infinities; PostgreSQL's float input reads these words.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _predictions_json(rows: Sequence[dict[str, Any]]) -> str:
    # A column absent from a row is NULL (on SQLite it is left out of the INSERT); the database refuses a NULL
    # where the column is NOT NULL (document, model version, created_at).
    picked = [{c: r.get(c) for c in _PREDICTION_COLUMNS} for r in rows]
    try:
        return _dumps(picked)
    except ValueError:  # a NaN or an infinity: a float column takes it as a word; inside JSON it stays refused
        floats = [c for c in _PREDICTION_COLUMNS if isinstance(Prediction.__table__.c[c].type, Float)]
        return _dumps([{**r, **{c: _float_text(r[c]) for c in floats}} for r in picked])


def upsert_predictions(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Write predictions keyed by (document, model version), many rows per statement. Re-running overwrites.

    Runs in the caller's transaction and never commits. On PostgreSQL a (document, model version) may appear
    once in ``rows`` (twice is an error, as before); a NaN inside ``scores`` is a ValueError (JSON has none).
    """
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PG_UPSERT_PREDICTIONS, {"rows": _predictions_json(rows)})
        return len(rows)
    for chunk in _chunks(rows):
        stmt = _insert(session, Prediction)
        stmt = stmt.on_conflict_do_update(
            index_elements=["document_id", "model_version_id"],
            set_={c: getattr(stmt.excluded, c) for c in _UPDATED_ON_CONFLICT},
        )
        session.execute(stmt, list(chunk))
    return len(rows)


def unpredicted_filter(model_version_id: int):
    """Documents with no current prediction from this model version: none yet, or one older than the text.

    Written as a per-row lookup (a scalar subquery with LIMIT 1 on the (document, model version) unique index)
    rather than NOT EXISTS: PostgreSQL would plan NOT EXISTS as an anti-join that reads every prediction of the
    version on each page, and while the table's statistics lag behind a running job that grows quadratically.
    """
    return (select(literal(1)).where(Prediction.document_id == Document.id,
                                     Prediction.model_version_id == model_version_id,
                                     Prediction.created_at >= Document.updated_at)
            .limit(1).scalar_subquery().is_(None))


def analyze_if_stale(session: Session, table: str, rows: int) -> bool:
    """Refresh PostgreSQL's statistics of ``table`` when they undercount it by half (a fresh bulk load):
    with stale statistics the planner sorts a whole collection to read one page."""
    if session.get_bind().dialect.name != "postgresql" or table not in ("documents", "predictions"):
        return False
    estimate = session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table})
    if estimate is not None and estimate >= rows / 2:
        return False
    session.execute(text(f"ANALYZE {table}"))
    return True


def prediction_counts(session: Session, model_version_id: int, job_id: int | None = None) -> dict[str, int]:
    stmt = select(Prediction.error.is_(None), func.count()).where(Prediction.model_version_id == model_version_id)
    if job_id is not None:
        stmt = stmt.where(Prediction.job_id == job_id)
    counts = {"classified": 0, "failed": 0}
    for ok, n in session.execute(stmt.group_by(Prediction.error.is_(None))):
        counts["classified" if ok else "failed"] += n
    return counts


def list_predictions(
    session: Session, *, collection: str | None = None, model_version_id: int | None = None, limit: int = 20
) -> list[tuple[Document, Prediction, ModelVersion]]:
    stmt = (
        select(Document, Prediction, ModelVersion)
        .join(Prediction, Prediction.document_id == Document.id)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .order_by(Document.id, ModelVersion.id)
        .limit(limit)
    )
    if collection:
        check_name("collection", collection)
        stmt = stmt.where(Document.collection == collection)
    if model_version_id is not None:
        stmt = stmt.where(Prediction.model_version_id == model_version_id)
    return [tuple(row) for row in session.execute(stmt)]
