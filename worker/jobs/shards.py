"""The outcome of a sharded bulk classification, built from its finished shards.

The repository finishes the parent in the transaction that finishes its last shard (db/repo/shards.py);
what the parent's row then says is decided here: every function of the repository that can end a shard
takes ``parent_outcome`` as its ``aggregate``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from db.models import JobStatus
from db.repo import ParentOutcome, ShardRow, Tally

_COUNTS = ("documents", "classified", "failed")


def parent_outcome(shards: list[ShardRow], started: datetime | None, now: datetime) -> ParentOutcome:
    """The parent's result (its shards, model, totals, rate) and status: failed if any shard failed or died,
    else cancelled if any was cancelled, else succeeded."""
    status, error = _status(shards)
    return ParentOutcome(status, _result(shards, started, now), error)


def _result(shards: list[ShardRow], started: datetime | None, now: datetime) -> dict[str, Any]:
    totals = {k: sum((sh.result or {}).get(k, 0) for sh in shards) for k in _COUNTS}
    first = next((sh.result for sh in shards if sh.result and "model" in sh.result), {}) or {}
    result = {"shards": [sh.id for sh in shards], "model": first.get("model"),
              "model_version_id": first.get("model_version_id"), "collection": first.get("collection"), **totals}
    tallies = [Tally.from_json(sh.result) for sh in shards]
    if all(t is not None for t in tallies):  # the label counts of the run (worker/jobs/runs.py)
        result.update(Tally.merge(tallies).to_json())
    if started is not None:
        seconds = (now - (started if started.tzinfo else started.replace(tzinfo=now.tzinfo))).total_seconds()
        result["seconds"] = round(seconds, 3)
        result["documents_per_second"] = round(totals["documents"] / seconds, 2) if seconds > 0 else None
    return result


def _status(shards: list[ShardRow]) -> tuple[JobStatus, str | None]:
    bad = [sh for sh in shards if sh.status in (JobStatus.failed.value, JobStatus.dead.value)]
    if bad:
        return JobStatus.failed, f"{len(bad)} of {len(shards)} shards failed; shard {bad[0].id}: {bad[0].error}"
    if any(sh.status == JobStatus.cancelled.value for sh in shards):
        return JobStatus.cancelled, "cancelled on request"
    return JobStatus.succeeded, None
