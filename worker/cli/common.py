"""What the command modules share: the command's own user error, database sessions and the flags several
commands take (``--json``, the document filter, how to run a job)."""
from __future__ import annotations

import argparse
from typing import Any

from worker.config import get_settings
from worker.errors import BertjobsError

MODEL_REF = "NAME, NAME:VERSION or NAME@ALIAS"


class CliError(BertjobsError):
    """A user error the command finds itself (no such file, no such job): one line, exit status 2."""


def sessions():
    from db.session import session_factory_for

    return session_factory_for(get_settings().resolved_database_url)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def json_flag() -> argparse.ArgumentParser:
    """A parent parser: ``--json`` after the subcommand too (``bertjobs --json jobs`` works as well)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document (keys: README, Scripting)")
    return parent


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    """Which documents of the collection a command reads (see ``document_filter``)."""
    parser.add_argument("--where-label", action="append", help="only documents with this gold label (repeatable)")
    parser.add_argument("--where-id-prefix", help="only documents whose external id starts with this")
    parser.add_argument("--updated-after", help="only documents imported or changed after this ISO 8601 time")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """How a job command runs its job (queued, waited for, or here), and the document filter."""
    parser.add_argument("--wait", action="store_true", help="wait for the job to finish")
    parser.add_argument("--inline", action="store_true", help="run the job in this process (no Redis needed)")
    parser.add_argument("--idempotency-key", help="the same key returns the existing job")
    add_filter_flags(parser)


def document_filter(args) -> dict[str, Any] | None:
    """The filter the ``add_filter_flags`` flags give, as the client and the jobs take it (None: everything)."""
    where: dict[str, Any] = {}
    if args.where_label:
        where["labels"] = args.where_label
    if args.where_id_prefix:
        where["external_id_prefix"] = args.where_id_prefix
    if args.updated_after:
        where["updated_after"] = args.updated_after
    return where or None
