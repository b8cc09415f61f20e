"""Helpers the repository modules share: dialect-specific INSERT, chunking, the fence condition."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from datetime import datetime

from sqlalchemy import and_, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.errors import UnsupportedDatabase
from db.models import Job, JobStatus, utcnow

# Rows per INSERT statement: well under SQLite's 32k bound parameters and PostgreSQL's 65k.
ROWS_PER_STATEMENT = 500


def insert(session: Session, table):
    """INSERT with the dialect's ON CONFLICT clauses."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise UnsupportedDatabase(f"bertjobs supports PostgreSQL and SQLite, not {dialect}")


def chunks(rows: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def fenced(job_id: int, attempt: int):
    """The condition of a fenced write: the job is running under this attempt, with a lease.

    A parked sharded parent is running with no lease: nothing of its attempt may write any more."""
    return and_(Job.id == job_id, Job.attempt == attempt, Job.status == JobStatus.running.value,
                Job.lease_expires_at.is_not(None))


def streak_after_this_attempt():
    """attempts_without_progress once the current attempt ends: 0 if it moved the progress mark, else one more."""
    return case((Job.progress_mark > Job.progress_mark_at_claim, 0), else_=Job.attempts_without_progress + 1)


def short_lock_timeout(session: Session, seconds: float = 2.0) -> None:
    """PostgreSQL: in this transaction, give up on a row lock after ``seconds`` (LockNotAvailable, SQLSTATE 55P03)
    instead of waiting behind a frozen holder. SQLite has one writer at a time and its own busy timeout."""
    if is_postgresql(session):
        session.execute(text(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'"))


def clock(session: Session):
    """Now by the database's clock, for leases, expiry and stamps: on PostgreSQL now() (this transaction's start)
    as an SQL expression, so hosts with skewed clocks agree; SQLite's clock is this host's."""
    return func.now() if is_postgresql(session) else utcnow()


def database_now(session: Session) -> datetime:
    """The database's clock read as a value (see ``clock``)."""
    return session.scalar(select(func.now())) if is_postgresql(session) else utcnow()
