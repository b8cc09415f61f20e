"""Errors of the job layer. Those that are about the input are never retried."""
from db.names import InvalidName
from worker.ml.errors import Cancelled, MLError


class BertjobsError(Exception):
    """Base class for bertjobs errors outside the ML code."""


class InvalidJob(BertjobsError, ValueError):
    """The job's parameters or data are wrong (unknown model, empty collection...); never retried."""


class LeaseLost(BertjobsError):
    """Another attempt owns the job now (or it was reset); stop without writing anything."""


class JobFailed(BertjobsError, RuntimeError):
    """The job ended failed, cancelled or dead; the message says why. A task raises it after the job function
    has written that outcome, so Celery (and Flower) show FAILURE; it is never retried."""


class JobCancelled(JobFailed):
    """The job ended cancelled."""


# Errors a job ends `failed` on at once, with their message as the reason.
PERMANENT_ERRORS = (InvalidJob, InvalidName, MLError)

__all__ = ["BertjobsError", "InvalidJob", "InvalidName", "JobFailed", "JobCancelled", "LeaseLost", "Cancelled", "MLError",
           "PERMANENT_ERRORS"]
