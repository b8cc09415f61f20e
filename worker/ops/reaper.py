"""The reaper (run periodically by celery beat): recovers jobs whose worker or message was lost.

- a running job whose lease expired goes back to the queue and is published again, or ends ``dead`` once
  ``max_attempts`` attempts in a row made no progress (a job that kills its worker every time at the same
  place), or ``cancelled`` if that was asked;
- a queued job untouched for a while is published again (its message may have died with Redis); a
  duplicate message is harmless, since only one claim can win.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError

from db import repo
from db.models import JobStatus
from db.session import session_factory_for
from worker.config import Settings, get_settings
from worker.jobs.runtime import one_line
from worker.publish import publish
from worker.jobs.shards import parent_outcome

log = logging.getLogger("bertjobs.reaper")


@dataclass
class ReapReport:
    requeued: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    republished: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.dead or self.cancelled or self.republished)


def reap(settings: Settings | None = None, *, now: datetime | None = None) -> ReapReport:
    settings = settings or get_settings()
    report = ReapReport()
    to_publish: list[tuple[int, str]] = []
    sessions = session_factory_for(settings.resolved_database_url)
    with sessions.begin() as s:
        now = repo.database_now(s) if now is None else now  # the database's clock: hosts' clocks may be skewed
        expired = repo.expired_job_ids(s, now)
    for job_id in expired:  # one transaction per job, skipping locked rows: one stuck row holds up no other
        try:
            with sessions.begin() as s:
                repo.short_lock_timeout(s)
                job = repo.lock_expired(s, job_id, now)
                if job is not None and _release(s, job, now, report):
                    to_publish.append((job.id, job.kind))
        except OperationalError as exc:  # a lock held by a frozen worker (its parent's row): the next pass
            log.warning("job %s: left for the next pass: %s", job_id, one_line(exc))
    with sessions.begin() as s:
        repo.short_lock_timeout(s)
        report.cancelled.extend(repo.cancel_pending_queued(s, now, aggregate=parent_outcome))
        cutoff = now - timedelta(seconds=settings.republish_after_seconds)
        for job_id, kind in repo.touch_stale_queued_jobs(s, cutoff):
            report.republished.append(job_id)
            to_publish.append((job_id, kind))
    for job_id, kind in to_publish:
        try:
            publish(job_id, kind, settings)
        except Exception as exc:  # noqa: BLE001 - the next run publishes it again
            log.warning("job %s: could not publish: %s", job_id, exc)
    if report:
        log.info("reaper: requeued %s, dead %s, cancelled %s, republished %s",
                 report.requeued, report.dead, report.cancelled, report.republished)
    return report


def _release(s, job: repo.ExpiredJob, now: datetime, report: ReapReport) -> bool:
    """End the lost attempt of a locked expired job: cancelled if asked, dead once ``max_attempts`` attempts in a
    row made no progress, else re-queued (True: publish it again)."""
    if job.cancel_requested:
        if repo.release_expired(s, job, now, JobStatus.cancelled, "cancelled on request; its worker was lost",
                                aggregate=parent_outcome):
            report.cancelled.append(job.id)
    elif job.without_progress >= job.max_attempts:
        reason = (f"dead: the lease expired on attempt {job.without_progress} of {job.max_attempts} without progress "
                  f"({job.attempt} attempts in all; worker lost)")
        if repo.release_expired(s, job, now, JobStatus.dead, reason, aggregate=parent_outcome):
            report.dead.append(job.id)
    elif repo.release_expired(s, job, now, JobStatus.queued,
                              f"attempt {job.attempt} lost its worker (lease expired); re-queued",
                              aggregate=parent_outcome):
        report.requeued.append(job.id)
        return True
    return False
