"""Errors of the data layer (db imports only db). Each is also the ValueError an older caller catches."""
from __future__ import annotations


class DatabaseError(Exception):
    """Base class for errors raised by the repository functions."""


class InvalidFilter(DatabaseError, ValueError):
    """A document filter with an unknown key or a value of the wrong kind; never retried."""


class InvalidTransition(DatabaseError, ValueError):
    """A job write the state machine does not have (finishing a job with a status that is not final)."""


class UnsupportedDatabase(DatabaseError, NotImplementedError):
    """A database other than PostgreSQL or SQLite."""
