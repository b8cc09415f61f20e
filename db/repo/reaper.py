"""What the reaper reads and writes: jobs whose lease expired, cancels that raced a re-queue, lost messages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.errors import InvalidTransition
from db.models import FINISHED_STATUSES, Job, JobStatus
from db.repo._common import clock, streak_after_this_attempt
from db.repo.shards import Aggregate, finalize_parent_of


@dataclass(frozen=True)
class ExpiredJob:
    id: int
    kind: str
    attempt: int
    max_attempts: int
    cancel_requested: bool
    without_progress: int  # attempts in a row without progress once this one ends (attempts_without_progress)


def expired_job_ids(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Running jobs whose lease ran out: their worker died, hung or lost the database."""
    return list(session.scalars(select(Job.id).where(Job.status == JobStatus.running.value, Job.lease_expires_at < now)
                                .order_by(Job.id).limit(limit)))


def lock_expired(session: Session, job_id: int, now: datetime) -> ExpiredJob | None:
    """An expired job with its row locked for this transaction; None when its lease was renewed or taken meanwhile,
    or when another transaction holds the row (PostgreSQL: SKIP LOCKED; a worker paused inside its page
    transaction is passed over, and the server ends that transaction at idle_in_transaction_session_timeout)."""
    stmt = (select(Job.id, Job.kind, Job.attempt, Job.max_attempts, Job.cancel_requested, streak_after_this_attempt())
            .where(Job.id == job_id, Job.status == JobStatus.running.value, Job.lease_expires_at < now)
            .with_for_update(skip_locked=True))
    row = session.execute(stmt).one_or_none()
    return None if row is None else ExpiredJob(*row)


def release_expired(session: Session, job: ExpiredJob, now: datetime, status: JobStatus, error: str, *,
                    aggregate: Aggregate) -> bool:
    """Re-queue or end a job whose lease expired, unless someone renewed or re-claimed it meanwhile."""
    if status is not JobStatus.queued and status not in FINISHED_STATUSES:
        raise InvalidTransition(f"an expired job goes back to the queue or ends, not {status.value!r}")
    values: dict[str, Any] = {"status": status.value, "lease_owner": None, "lease_expires_at": None,
                              "error": error, "updated_at": now, "attempts_without_progress": job.without_progress}
    if status is not JobStatus.queued:
        values["finished_at"] = now
    stmt = update(Job).where(Job.id == job.id, Job.attempt == job.attempt, Job.status == JobStatus.running.value,
                             Job.lease_expires_at < now).values(**values)
    if status is JobStatus.queued:  # a cancel that arrived meanwhile wins; the next pass ends the job
        stmt = stmt.where(Job.cancel_requested.is_(False))
    if session.execute(stmt).rowcount != 1:
        return False
    if status is not JobStatus.queued:
        finalize_parent_of(session, job.id, aggregate)
    return True


def cancel_pending_queued(session: Session, now: datetime, *, aggregate: Aggregate) -> list[int]:
    """Queued jobs asked to cancel (a cancel that raced a re-queue) end cancelled."""
    ids = list(session.scalars(select(Job.id).where(Job.status == JobStatus.queued.value,
                                                     Job.cancel_requested.is_(True))))
    if ids:
        session.execute(update(Job).where(Job.id.in_(ids), Job.status == JobStatus.queued.value).values(
            status=JobStatus.cancelled.value, finished_at=now, updated_at=now, error="cancelled on request"))
        for job_id in ids:
            finalize_parent_of(session, job_id, aggregate)
    return ids


def touch_stale_queued_jobs(session: Session, older_than: datetime, limit: int = 500) -> list[tuple[int, str]]:
    """Queued jobs untouched since ``older_than`` (their message may be lost: a flushed or restarted Redis),
    marked touched now so that each is published again at most once per interval. Returns (id, kind) pairs."""
    rows = list(session.execute(
        select(Job.id, Job.kind).where(Job.status == JobStatus.queued.value, Job.updated_at < older_than,
                                       Job.cancel_requested.is_(False)).order_by(Job.id).limit(limit)))
    if rows:
        session.execute(update(Job).where(Job.id.in_([r[0] for r in rows])).values(updated_at=clock(session)))
    return [(i, k) for i, k in rows]
