"""Running or waiting for a job from the command line: the job id first, then the progress bar on stderr
(worker/progress.py), then the job; Ctrl-C stops the waiting, never a queued job."""
from __future__ import annotations

import sys

from worker.cli.common import safe_url
from worker.cli.output import print_job
from worker.config import get_settings


def waiting_line(job_id: int, kind: str, inline: bool) -> None:
    """The job id, before any waiting: Ctrl-C stops the waiting, and `jobs wait` re-attaches."""
    where = "running here" if inline else "queued"
    print(f"job {job_id} {where} ({kind}); re-attach with: bertjobs jobs wait {job_id}", flush=True)


def follow(handle, *, inline_kind: str | None = None):
    """Draw the bar on stderr until the job ends (running it here first when ``inline_kind``); its last
    snapshot, or None when Ctrl-C stopped the waiting (one line says what happens to the job)."""
    from worker.progress import run_inline_with_progress, wait_with_progress

    try:
        if inline_kind:
            return run_inline_with_progress(handle, inline_kind, sys.stderr)
        return wait_with_progress(handle, sys.stderr)
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # below the bar
        if inline_kind:
            print(f"interrupted: job {handle.id} stops here; the reaper re-queues it once its lease expires",
                  file=sys.stderr)
        else:
            print(f"stopped waiting; job {handle.id} goes on: bertjobs jobs wait {handle.id}", file=sys.stderr)
        return None


def wait_for(handle, *, inline_kind: str | None = None) -> int:
    """Follow the job (see ``follow``), then print it; exit 0 if it succeeded (130 after Ctrl-C)."""
    snap = follow(handle, inline_kind=inline_kind)
    if snap is None:
        return 130
    print_job(snap)
    print_job_warnings(snap.result)
    return 0 if snap.status == "succeeded" else 1


def print_job_warnings(result: dict | None) -> None:
    """A training job's trust warnings, TF-IDF baseline line and epoch-selection warning, one ``warning:`` line
    each, after the job; then why a small set trained more epochs, and the refit."""
    result = result or {}
    for line in [*(result.get("warnings") or []), result.get("baseline"), result.get("selection_warning")]:
        if line:
            print(f"warning: {line}")
    if result.get("epochs_decided"):
        print(f"epochs: {result['epochs_decided']}")
    if result.get("refit"):
        from worker.ops.report import refit_sentence

        print(f"refit: {refit_sentence(result['refit'])}")


def broker_unreachable(handle) -> str:
    return (f"job {handle.id} is saved but the broker at {safe_url(get_settings().broker_url)} could not be "
            "reached; the reaper publishes it when the broker is back (or run it now with --inline)")


def run_or_wait(handle, kind: str, args) -> int:
    """After a submit: with --inline run the job here, with --wait follow it, else say it is queued."""
    if not args.inline and not handle.published:
        print(broker_unreachable(handle), file=sys.stderr)
        return 1
    if args.inline or args.wait:
        waiting_line(handle.id, kind, args.inline)
        return wait_for(handle, inline_kind=kind if args.inline else None)
    print(f"job {handle.id} queued ({kind}); follow it with: bertjobs jobs wait {handle.id}")
    return 0
