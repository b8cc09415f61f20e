"""Errors, in three kinds that decide what happens to a job.

- permanent: the job or its input is wrong; it fails now and is never retried;
- transient: the database, the broker or storage failed for a moment; the attempt is retried (with backoff);
- systemic: every document fails the same way, the accelerator is poisoned; the attempt is retried.

The job runtime reads the type only, never the message (``kind_of``). Errors defined where this module cannot be
imported count by their own base: ``InvalidName`` (db may import only db) and ``MLError`` (worker/ml imports
nothing of ours) are permanent; SQLAlchemy's operational errors and disconnects, and ``StorageUnavailable`` (a
storage error other than a missing or unreadable file while an artifact is read), are transient.
"""
from __future__ import annotations

import enum

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from db.names import InvalidName
from worker.ml.errors import Cancelled, MLError, StorageUnavailable


class BertjobsError(Exception):
    """Base class for bertjobs errors outside the ML code."""


class PermanentError(BertjobsError):
    """The job or its input is wrong: fail now, never retry."""


class TransientError(BertjobsError):
    """The database, the broker or storage failed for a moment: retry with backoff."""


class SystemicError(BertjobsError):
    """Everything fails the same way (every document, a poisoned CUDA context): retry the attempt."""


class AcceleratorPoisoned(SystemicError):
    """A CUDA error: the process's accelerator context is unusable. The attempt is retried, the process ends."""


class InvalidJob(PermanentError, ValueError):
    """The job's parameters or data are wrong (unknown model, empty collection...)."""


class LeaseLost(BertjobsError):
    """Another attempt owns the job now (or it was reset); stop without writing anything."""


class JobFailed(PermanentError, RuntimeError):
    """The job ended failed, cancelled or dead; its task raises this after the outcome is written (FAILURE)."""


class JobCancelled(JobFailed):
    """The job ended cancelled."""


class ErrorKind(str, enum.Enum):
    permanent = "permanent"
    transient = "transient"
    systemic = "systemic"
    unexpected = "unexpected"  # none of the above (a bug): retried like a systemic error, logged with a traceback


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (PermanentError, InvalidName, MLError)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, OperationalError, DisconnectionError,
                                                    StorageUnavailable)


def kind_of(exc: BaseException) -> ErrorKind:
    """The kind of an error, by its type (and SQLAlchemy's own flag for a connection it dropped)."""
    if isinstance(exc, PERMANENT_ERRORS):
        return ErrorKind.permanent
    if isinstance(exc, TRANSIENT_ERRORS) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return ErrorKind.transient
    if isinstance(exc, SystemicError):
        return ErrorKind.systemic
    return ErrorKind.unexpected


__all__ = ["BertjobsError", "PermanentError", "TransientError", "SystemicError", "AcceleratorPoisoned", "InvalidJob", "InvalidName",
           "JobFailed", "JobCancelled", "LeaseLost", "Cancelled", "MLError", "ErrorKind", "PERMANENT_ERRORS",
           "TRANSIENT_ERRORS", "kind_of"]
