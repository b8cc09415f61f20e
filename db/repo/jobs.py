"""The job state machine: create, claim, fence, heartbeat, progress, finish, requeue, cancel.

Every function takes a Session and never commits: the caller owns the transaction. Job writes made by a
worker are *fenced*: they only take effect while the job is ``running`` under the attempt number the worker
claimed. A stale owner (a paused process, a duplicate delivery) changes nothing.

A function that can end a shard takes ``aggregate`` (worker/jobs/shards.py): the parent ends with its last shard.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from db.errors import InvalidTransition
from db.models import FINISHED_STATUSES, Job, JobStatus
from db.repo._common import clock, fenced, insert, streak_after_this_attempt
from db.repo.shards import Aggregate, finalize_parent, finalize_parent_of


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
    stmt = (insert(session, Job.__table__)
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

    Zero rows means someone else owns it, it is finished, cancelled, or out of attempts: ``max_attempts``
    attempts in a row ended without durable progress (taking over an expired lease ends its attempt here).
    """
    now = clock(session) if now is None else now
    running = Job.status == JobStatus.running.value
    claimable = or_(
        and_(Job.status == JobStatus.queued.value, Job.attempts_without_progress < Job.max_attempts),
        and_(running, Job.lease_expires_at < now, streak_after_this_attempt() < Job.max_attempts),
    )
    stmt = (
        update(Job)
        .where(Job.id == job_id, claimable, Job.cancel_requested.is_(False))
        .values(
            status=JobStatus.running.value,
            attempt=Job.attempt + 1,
            attempts_without_progress=case((running, streak_after_this_attempt()),
                                           else_=Job.attempts_without_progress),
            progress_mark_at_claim=Job.progress_mark,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
        .returning(Job.attempt)
    )
    return session.execute(stmt).scalar_one_or_none()


def attempts_without_progress(session: Session, job_id: int) -> int:
    """Attempts in a row without durable progress, counting the current one as it ends (read under the fence)."""
    return session.scalar(select(streak_after_this_attempt()).where(Job.id == job_id))


def mark_progress(session: Session, job_id: int, attempt: int) -> bool:
    """Record durable progress that is not a page (a training checkpoint written), fenced."""
    return session.execute(update(Job).where(fenced(job_id, attempt)).values(
        progress_mark=Job.progress_mark + 1, updated_at=clock(session))).rowcount == 1


def fence(session: Session, job_id: int, attempt: int) -> bool:
    """Lock the job row if this attempt still owns it. Call first in every transaction that writes results."""
    result = session.execute(update(Job).where(fenced(job_id, attempt)).values(updated_at=clock(session)))
    return result.rowcount == 1


def heartbeat(session: Session, job_id: int, attempt: int, lease_seconds: int) -> bool | None:
    """Extend the lease. Returns cancel_requested, or None when this attempt no longer owns the job."""
    now = clock(session)
    stmt = (
        update(Job)
        .where(fenced(job_id, attempt))
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
    values: dict[str, Any] = {"progress_done": done, "updated_at": clock(session)}
    if total is not None:
        values["progress_total"] = total
    if cursor is not None:  # a committed page: durable progress
        values["cursor"] = cursor
        values["progress_mark"] = Job.progress_mark + 1
    if detail is not None:
        values["result"] = {"progress": detail}
    return session.execute(update(Job).where(fenced(job_id, attempt)).values(**values)).rowcount == 1


def set_progress_detail(session: Session, job_id: int, attempt: int, detail: dict[str, Any]) -> bool:
    """Only the display detail (fenced): progress_done and the cursor stay what the last page committed."""
    return session.execute(update(Job).where(fenced(job_id, attempt)).values(
        result={"progress": detail})).rowcount == 1


def finish_job(
    session: Session,
    job_id: int,
    attempt: int,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    aggregate: Aggregate,
) -> bool:
    """End the job (fenced), and its parent if it was the last shard. False when this attempt no longer owns it."""
    if status not in FINISHED_STATUSES:
        raise InvalidTransition(f"a job cannot finish {getattr(status, 'value', status)!r}; its final statuses are "
                                f"{', '.join(s.value for s in FINISHED_STATUSES)}")
    now = clock(session)
    values: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now,
                              "lease_owner": None, "lease_expires_at": None, "error": error}
    if result is not None:
        values["result"] = result
    if session.execute(update(Job).where(fenced(job_id, attempt)).values(**values)).rowcount != 1:
        return False
    finalize_parent_of(session, job_id, aggregate)
    return True


def requeue_job(session: Session, job_id: int, attempt: int, error: str, *, aggregate: Aggregate,
                without_progress: int = 0) -> bool:
    """Give a job back to the queue after a failure worth retrying (fenced); a job asked to cancel ends instead.
    ``without_progress``: attempts in a row without progress, this one included (attempts_without_progress)."""
    if session.execute(update(Job).where(fenced(job_id, attempt), Job.cancel_requested.is_(True))
                       .values(status=JobStatus.cancelled.value, lease_owner=None, lease_expires_at=None,
                               finished_at=clock(session), updated_at=clock(session),
                               error="cancelled on request")).rowcount:
        finalize_parent_of(session, job_id, aggregate)
        return True
    values = {"status": JobStatus.queued.value, "lease_owner": None, "lease_expires_at": None,
              "error": error, "updated_at": clock(session), "attempts_without_progress": without_progress}
    return session.execute(update(Job).where(fenced(job_id, attempt)).values(**values)).rowcount == 1


def request_cancel(session: Session, job_id: int, *, aggregate: Aggregate) -> Job | None:
    """Ask a job to stop: a queued job is cancelled at once, a running one stops at its next batch or step."""
    job = get_job(session, job_id)
    if job is None:
        return None
    if job.status in {s.value for s in FINISHED_STATUSES}:
        return job
    now = clock(session)
    values: dict[str, Any] = {"cancel_requested": True, "updated_at": now}
    unfinished = Job.status.not_in([st.value for st in FINISHED_STATUSES])
    # Shards first, then the job: the same lock order as a shard's own transaction (child, then parent).
    for targets in (Job.parent_id == job_id, Job.id == job_id):
        session.execute(
            update(Job).where(targets, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=now, error="cancelled before it started", **values)
        )
        session.execute(update(Job).where(targets, unfinished).values(**values))
    finalize_parent(session, job_id, aggregate)  # a parked parent whose shards all ended just now
    finalize_parent_of(session, job_id, aggregate)
    return get_job(session, job_id)


def active_jobs(session: Session, kind: str, dedupe_prefix: str) -> list[Job]:
    """Unfinished jobs of a kind whose dedupe key starts with a prefix (used to never overlap nightly runs)."""
    return list(session.scalars(select(Job).where(
        Job.kind == kind, Job.dedupe_key.startswith(dedupe_prefix, autoescape=True),
        Job.status.in_([JobStatus.queued.value, JobStatus.running.value]))))
