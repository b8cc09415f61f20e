"""Shards of a bulk classification: child jobs under a parked parent, and the parent's end with its last shard.

A parent finishes exactly once, in the transaction that finishes its last shard. What its outcome says
(result, totals, status) is job logic the caller passes in as ``aggregate`` (worker/jobs/shards.py); this module
only locks the parent, reads its shards and writes the outcome.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import FINISHED_STATUSES, Job, JobStatus
from db.repo._common import clock, database_now, fenced


@dataclass(frozen=True)
class ShardRow:
    id: int
    status: str
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class ParentOutcome:
    status: JobStatus
    result: dict[str, Any]
    error: str | None


# A sharded job's outcome from its finished shards, its start time (None if never started) and now.
Aggregate = Callable[[list[ShardRow], datetime | None, datetime], ParentOutcome]


def create_shards(session: Session, parent_id: int, attempt: int, params: list[dict[str, Any]],
                  max_attempts: int, total: int) -> list[int]:
    """Insert queued child jobs and park the parent (running, no lease: it finishes with its last shard)."""
    now = clock(session)
    ids = []
    for p in params:
        job = Job(kind="classify", params=p, max_attempts=max_attempts, parent_id=parent_id,
                  status=JobStatus.queued.value, created_at=now, updated_at=now)
        session.add(job)
        session.flush()
        ids.append(job.id)
    session.execute(update(Job).where(fenced(parent_id, attempt)).values(
        lease_owner=None, lease_expires_at=None, progress_done=0, progress_total=total,
        result={"shards": ids}, updated_at=now))
    return ids


def add_progress(session: Session, job_id: int, done: int) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(progress_done=Job.progress_done + done))


def finalize_parent(session: Session, parent_id: int, aggregate: Aggregate) -> bool:
    """Finish a sharded job once the database says all its shards have finished. True if it did."""
    now = database_now(session)
    # Lock the parent row: two shards finishing at once are serialized here.
    locked = session.execute(update(Job).where(Job.id == parent_id, Job.status == JobStatus.running.value,
                                               Job.lease_expires_at.is_(None)).values(updated_at=now))
    if locked.rowcount != 1:
        return False
    shards = [ShardRow(*row) for row in session.execute(
        select(Job.id, Job.status, Job.result, Job.error).where(Job.parent_id == parent_id).order_by(Job.id))]
    finished = {st.value for st in FINISHED_STATUSES}
    if not shards or any(sh.status not in finished for sh in shards):
        return False
    outcome = aggregate(shards, session.scalar(select(Job.started_at).where(Job.id == parent_id)), now)
    session.execute(update(Job).where(Job.id == parent_id).values(
        status=outcome.status.value, finished_at=now, updated_at=now, result=outcome.result, error=outcome.error))
    return True


def finalize_parent_of(session: Session, job_id: int, aggregate: Aggregate) -> bool:
    """After a job ended: finish its parent if it was the parent's last unfinished shard."""
    parent_id = session.scalar(select(Job.parent_id).where(Job.id == job_id))
    return parent_id is not None and finalize_parent(session, parent_id, aggregate)
