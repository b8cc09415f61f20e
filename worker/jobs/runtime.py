"""The job runtime: claim a job, keep its lease (Heartbeat), run its body with a JobContext, record the outcome.

A body raises to end its job: a permanent error fails it, any other error puts it back in the queue until its
attempts are spent (worker/errors.py decides which by the error's type). Plain functions, callable without Celery.
"""
from __future__ import annotations

import enum
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db import repo
from db.models import JobKind, JobStatus
from db.session import session_factory_for
from worker.config import Settings, get_settings
from worker.errors import AcceleratorPoisoned, Cancelled, ErrorKind, LeaseLost, kind_of
from worker.jobs.shards import parent_outcome

log = logging.getLogger("bertjobs.jobs")
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ends a wait

# How a job hands new jobs (shards) to the queue: the Celery task passes client.publish; the embedded
# runner collects them to run in-process. Jobs never import Celery.
Publish = Callable[[int, str], None]
# How a job reports progress outside the database (the Celery task state, for Flower): (done, total).
ReportProgress = Callable[[int, "int | None"], None]


class Outcome(str, enum.Enum):
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    retry = "retry"  # put back in the queue after an error that is not permanent; publish it again
    skipped = "skipped"  # not claimable: finished, owned by someone else, cancelled or out of attempts
    lost = "lost"  # another attempt took the job over while this one ran; nothing was written
    dead = "dead"  # an error that is not permanent on every attempt


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


class JobLog(logging.LoggerAdapter):
    """Every line of a running job carries its id, attempt, kind and (once known) model version."""

    def process(self, msg, kwargs):
        fields = " ".join(f"{k}={v}" for k, v in self.extra.items() if v is not None)
        return f"[{fields}] {msg}", kwargs


class Heartbeat(threading.Thread):
    """Extends the lease in the background and notices cancellation or a lost lease."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, attempt: int, lease_seconds: int,
                 interval: float):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.sessions, self.job_id, self.attempt = sessions, job_id, attempt
        self.lease_seconds, self.interval = lease_seconds, interval
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            with self.sessions.begin() as s:
                state = repo.heartbeat(s, self.job_id, self.attempt, self.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - a database hiccup; the next beat tries again
            log.warning("job %s: heartbeat failed: %s", self.job_id, one_line(exc))
            return
        if state is None:
            self.lost.set()
        elif state:
            self.cancelled.set()

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class JobContext:
    """What a running job needs: its ids, parameters, sessions, settings and stop signals."""

    job_id: int
    attempt: int
    params: dict[str, Any]
    sessions: sessionmaker[Session]
    settings: Settings
    heartbeat: Heartbeat
    publish: Publish | None = None
    report: ReportProgress | None = None
    log: JobLog = field(default_factory=lambda: JobLog(log, {}))
    _last_progress: float = field(default=0.0)

    def should_stop(self) -> bool:
        return self.heartbeat.cancelled.is_set() or self.heartbeat.lost.is_set()

    def check(self) -> None:
        if self.heartbeat.lost.is_set():
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} lost its lease")
        if self.heartbeat.cancelled.is_set():
            raise Cancelled("cancelled on request")

    def fenced(self, s: Session, **progress: Any) -> None:
        """Start of every writing transaction: lock the job row if this attempt still owns it. With ``progress``
        (``repo.set_progress``'s keywords) the same statement records it: one round trip less per page."""
        owned = (repo.set_progress(s, self.job_id, self.attempt, **progress) if progress
                 else repo.fence(s, self.job_id, self.attempt))
        if not owned:
            self.heartbeat.lost.set()
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} no longer owns the job")

    def progress(self, done: int, total: int | None = None, *, every: float = 0.0, **extra: Any) -> None:
        now = time.monotonic()
        if every and now - self._last_progress < every and (total is None or done < total):
            return
        self._last_progress = now
        with self.sessions.begin() as s:
            self.fenced(s)
            repo.set_progress(s, self.job_id, self.attempt, done=done, total=total, **extra)
        self.report_progress(done, total)

    def report_progress(self, done: int, total: int | None) -> None:
        """Tell the outside world (best effort: a broker hiccup never fails the job)."""
        if self.report is None:
            return
        try:
            self.report(done, total)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("progress report failed: %s", exc)

    def end(self, status: JobStatus, *, error: str | None = None, result: dict | None = None) -> bool:
        with self.sessions.begin() as s:
            return repo.finish_job(s, self.job_id, self.attempt, status, error=error, result=result,
                                   aggregate=parent_outcome)


@dataclass(frozen=True)
class _Claim:
    attempt: int
    params: Any
    max_attempts: int


def run_attempt(job_id: int, kind: JobKind, body: Callable[[JobContext], None], settings: Settings | None = None,
                owner: str | None = None, publish: Publish | None = None,
                report: ReportProgress | None = None) -> Outcome:
    """Claim the job (one attempt), run ``body`` under a heartbeat, and record how it ended."""
    settings = settings or get_settings()
    # A frozen worker's transaction (and its row locks) ends about when its lease does.
    sessions = session_factory_for(settings.resolved_database_url, idle_in_transaction_seconds=settings.lease_seconds)
    owner = owner or default_owner()
    claim = _claim(sessions, job_id, kind, owner, settings)
    if isinstance(claim, Outcome):
        return claim
    heartbeat = Heartbeat(sessions, job_id, claim.attempt, settings.lease_seconds, settings.heartbeat_seconds)
    heartbeat.start()
    jlog = JobLog(log, {"job": job_id, "attempt": claim.attempt, "kind": kind.value, "model": None})
    ctx = JobContext(job_id, claim.attempt, claim.params, sessions, settings, heartbeat, publish, report, jlog)
    jlog.info("%s started by %s", kind.value, owner)
    try:
        body(ctx)
        return Outcome.succeeded
    except LeaseLost as exc:
        jlog.warning("%s", exc)
        return Outcome.lost
    except Cancelled:
        if heartbeat.lost.is_set():
            return Outcome.lost
        ctx.end(JobStatus.cancelled, error="cancelled on request")
        jlog.info("cancelled")
        return Outcome.cancelled
    except Exception as exc:
        return _after_error(ctx, exc, claim.max_attempts)
    finally:
        heartbeat.stop()


def _claim(sessions: sessionmaker[Session], job_id: int, kind: JobKind, owner: str,
           settings: Settings) -> _Claim | Outcome:
    """This attempt's claim on the job, or the outcome when there is none to run."""
    try:
        with sessions.begin() as s:
            repo.get_job(s, job_id)
    except ValueError as exc:  # params that are not JSON at all (SQLite stores any text): fail on this claim
        return _fail_unreadable(sessions, job_id, kind, owner, settings, f"job parameters are not JSON: {one_line(exc)}")
    try:
        with sessions.begin() as s:
            job = repo.get_job(s, job_id)
            if job is None or job.kind != kind.value:
                log.error("job %s: no %s job with this id", job_id, kind.value)
                return Outcome.skipped
            repo.short_lock_timeout(s)
            attempt = repo.claim_job(s, job_id, owner, settings.lease_seconds)
            # Copied if it is an object; anything else (a SQL row's [1, 2], "abc", null) stays as it is and fails
            # the job on this claim when the body parses it (TrainParams/ClassifyParams.from_dict).
            params = dict(job.params) if isinstance(job.params, dict) else job.params
            max_attempts, status = job.max_attempts, job.status
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        # Its row is locked by a frozen worker's transaction: the reaper re-queues the job once that ends.
        log.info("job %s: its row is locked by another transaction; leaving it to the reaper", job_id)
        return Outcome.skipped
    if attempt is None:
        log.info("job %s: not claimable (status %s); leaving it", job_id, status)
        return Outcome.skipped
    return _Claim(attempt, params, max_attempts)


def _after_error(ctx: JobContext, exc: Exception, max_attempts: int) -> Outcome:
    """A permanent error fails the job; any other puts it back in the queue, until ``max_attempts`` attempts in a
    row ended without durable progress (a committed page, a recorded checkpoint): then it is dead."""
    kind = kind_of(exc)
    if kind is ErrorKind.permanent:
        ctx.end(JobStatus.failed, error=one_line(exc))
        ctx.log.info("failed: %s", one_line(exc))
        return Outcome.failed
    if kind is ErrorKind.transient:
        ctx.log.warning("%s error: %s: %s", kind.value, type(exc).__name__, one_line(exc))
    else:
        ctx.log.exception("%s error", kind.value)
    reason = f"{type(exc).__name__}: {one_line(exc)}"
    with ctx.sessions.begin() as s:
        if not repo.fence(s, ctx.job_id, ctx.attempt):
            ctx.log.warning("attempt %s no longer owns the job; nothing written", ctx.attempt)
            return Outcome.lost
        streak = repo.attempts_without_progress(s, ctx.job_id)
        if streak < max_attempts:
            repo.requeue_job(s, ctx.job_id, ctx.attempt, f"attempt {ctx.attempt} failed, will retry: {reason}",
                             aggregate=parent_outcome, without_progress=streak)
        else:
            repo.finish_job(s, ctx.job_id, ctx.attempt, JobStatus.dead, aggregate=parent_outcome,
                            error=f"dead after {streak} attempts in a row without progress ({ctx.attempt} in all); "
                                  f"last error: {reason}")
    end_if_poisoned(ctx, exc, requeued=streak < max_attempts)
    return Outcome.retry if streak < max_attempts else Outcome.dead


def end_if_poisoned(ctx: JobContext, exc: Exception, *, requeued: bool) -> None:
    """After a CUDA error the process's accelerator is unusable: end it (prefork starts a fresh child). The
    attempt's end is committed first; a re-queued job is published again here, or by the reaper."""
    if not isinstance(exc, AcceleratorPoisoned):
        return
    ctx.log.error("the accelerator is poisoned (%s); this worker process ends", one_line(exc))
    if requeued and ctx.publish is not None:
        try:
            ctx.publish(ctx.job_id, ctx.log.extra.get("kind") or "classify")
        except Exception as pub_exc:  # noqa: BLE001 - the reaper publishes it again
            ctx.log.warning("could not publish the retry: %s", one_line(pub_exc))
    logging.shutdown()
    os._exit(70)


def retry_countdown(job_id: int, settings: Settings | None = None) -> float:
    """Seconds before a re-queued job is published again: the retry delay, doubled for every attempt in a row
    that made no progress (at most 5 minutes)."""
    settings = settings or get_settings()
    with session_factory_for(settings.resolved_database_url).begin() as s:
        job = repo.get_job(s, job_id)
        streak = job.attempts_without_progress if job is not None else 0
    return min(300.0, settings.retry_delay_seconds * 2 ** max(0, streak - 1))


def _fail_unreadable(sessions: sessionmaker[Session], job_id: int, kind: JobKind, owner: str, settings: Settings,
                     reason: str) -> Outcome:
    with sessions.begin() as s:
        if repo.job_kind(s, job_id) != kind.value:
            log.error("job %s: no %s job with this id", job_id, kind.value)
            return Outcome.skipped
        attempt = repo.claim_job(s, job_id, owner, settings.lease_seconds)
        if attempt is None:
            return Outcome.skipped
        repo.finish_job(s, job_id, attempt, JobStatus.failed, error=reason, aggregate=parent_outcome)
    log.info("job %s failed: %s", job_id, reason)
    return Outcome.failed
