"""`bertjobs jobs [list|show|wait|cancel]`: the job table, one job, its progress bar until it ends, cancelling."""
from __future__ import annotations

import argparse

from worker.cli.common import CliError, json_flag, sessions
from worker.cli.follow import wait_for
from worker.cli.output import print_job, print_job_table
from worker.present import job_json, print_json

KINDS = ["train", "classify", "evaluate"]  # db.models.JobKind's values (not imported: `--help` stays quick)


def cmd_list(args) -> int:
    from db import repo
    from db.models import JobStatus

    statuses = [st.value for st in JobStatus]
    if args.status and args.status not in statuses:
        raise CliError(f"unknown job status {args.status!r}; use one of {', '.join(statuses)}")
    with sessions().begin() as s:
        jobs = repo.list_jobs(s, limit=args.limit, status=args.status, kind=args.kind)
        print_json([job_json(job) for job in jobs]) if args.json else print_job_table(jobs)
    return 0


def cmd_show(args) -> int:
    from db import repo

    with sessions().begin() as s:
        job = repo.get_job(s, args.id)
        if job is None:
            raise CliError(f"no job {args.id}")
        print_json(job_json(job)) if args.json else print_job(job)
    return 0


def cmd_wait(args) -> int:
    from worker.client import JobHandle

    handle = JobHandle(args.id)
    try:
        handle.snapshot()
    except LookupError as exc:  # "no job N"
        raise CliError(str(exc)) from exc
    return wait_for(handle)


def cmd_cancel(args) -> int:
    from worker.client import cancel

    try:
        status = cancel(args.id)
    except LookupError as exc:  # "no job N"
        raise CliError(str(exc)) from exc
    if args.json:
        print_json({"id": args.id, "status": status})
    else:
        print(f"job {args.id}: {status}" + (" (it learns of it at its next heartbeat and stops before its next page or training step)" if status == "running" else ""))
    return 0


def register(sub) -> None:
    jb = sub.add_parser("jobs", help="list, show, wait for or cancel jobs", parents=[json_flag()])
    jb.set_defaults(func=cmd_list)
    jb.add_argument("--status")
    jb.add_argument("--kind", choices=KINDS)
    jb.add_argument("--limit", type=int, default=30)
    jsub = jb.add_subparsers(dest="action")
    jl = jsub.add_parser("list", parents=[json_flag()])
    # The same filters after `list`; SUPPRESS keeps `jobs --status X list` from being reset to the default.
    jl.add_argument("--status", default=argparse.SUPPRESS)
    jl.add_argument("--kind", choices=KINDS, default=argparse.SUPPRESS)
    jl.add_argument("--limit", type=int, default=argparse.SUPPRESS, help="(default: 30)")
    for action, func in (("show", cmd_show), ("cancel", cmd_cancel)):
        a = jsub.add_parser(action, parents=[json_flag()])
        a.add_argument("id", type=int)
        a.set_defaults(func=func)
    jw = jsub.add_parser("wait", help="show the job's progress bar until it ends (exit 0 if it succeeded)")
    jw.add_argument("id", type=int)
    jw.set_defaults(func=cmd_wait)
