"""Errors of the job layer. Those that are about the input are never retried."""
from db.names import InvalidName
from worker.ml.errors import Cancelled, MLError


class BertjobsError(Exception):
    """Base class for bertjobs errors outside the ML code."""


class InvalidJob(BertjobsError, ValueError):
    """The job's parameters or data are wrong (unknown model, empty collection...); never retried."""


class LeaseLost(BertjobsError):
    """Another attempt owns the job now (or it was reset); stop without writing anything."""


# Errors a job ends `failed` on at once, with their message as the reason.
PERMANENT_ERRORS = (InvalidJob, InvalidName, MLError)

__all__ = ["BertjobsError", "InvalidJob", "InvalidName", "LeaseLost", "Cancelled", "MLError", "PERMANENT_ERRORS"]
