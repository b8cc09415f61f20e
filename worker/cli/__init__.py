"""The ``bertjobs`` command: db, import, train, classify, predict, evaluate, jobs, results, drift, models, data,
worker, beat, reap, nightly, metrics, demo, completion.

One module per noun registers its subcommands (``register(subparsers)``) and holds their ``cmd_*`` functions;
worker/cli/output.py prints for people, worker/present.py shapes ``--json``. A user error of any layer (the
taxonomy of worker/errors.py, a bad setting, a database that cannot be used) is one line ``error: ...`` on
stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from sqlalchemy.exc import DBAPIError

from worker.cli import data, db, drift, evaluate, imports, jobs, models, ops, results, submit
from worker.cli.common import CliError, safe_url
from worker.config import SettingsError, get_settings
from worker.errors import BertjobsError, InvalidName, MLError

# What a user can cause and read as one line: bad input (names, parameters, data, files, settings) and a database
# that is unreachable or has no schema.
ONE_LINE_ERRORS = (BertjobsError, InvalidName, MLError, SettingsError, DBAPIError)

__all__ = ["CliError", "build_parser", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bertjobs")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertjobs", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log what the jobs do")
    p.add_argument("--json", action="store_true", help="print one JSON document (jobs, results, models, data check)")
    p.add_argument("--version", action="version", version=f"bertjobs {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    for register in (db.register, imports.register, submit.register, evaluate.register, jobs.register,
                     results.register, drift.register, models.register, ops.register_services, data.register, ops.register_tools):
        register(sub)
    from worker.web.command import register as register_ui  # the web view (worker/web/): imports nothing heavy

    register_ui(sub)
    return p


def _stdout_gone() -> int:
    """The reader of our output went away (``| head``): stop quietly, as ``cat`` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:  # --help, --version, a usage error: their output may go into a closed pipe too
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_gone()
        raise


def _message(exc: Exception) -> str:
    """The one line a user error prints: its own message, or what is wrong with the database."""
    if not isinstance(exc, DBAPIError):
        return str(exc)
    url = safe_url(get_settings().resolved_database_url)
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return f"the database at {url} has no bertjobs schema yet; run: bertjobs db upgrade"
    return f"database at {url}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        get_settings()  # a wrong setting is one line for every command, before anything runs
        if getattr(args, "inline", False):
            from worker.config import check_device, check_engine

            check_device(get_settings())  # before the job is saved: BERTJOBS_DEVICE=cuda on a host without it
            check_engine(get_settings())
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _stdout_gone()
    except ONE_LINE_ERRORS as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 2
