"""A sharded job's outcome from its finished shards (worker/jobs/shards.py): pure, no database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from db.repo import ShardRow
from worker.jobs.shards import parent_outcome

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def _shard(shard_id, status="succeeded", documents=10, error=None):
    return ShardRow(shard_id, status, {"model": "m:1", "model_version_id": 1, "collection": "c",
                                       "documents": documents, "classified": documents, "failed": 0}, error)


def test_all_shards_succeeded_sums_their_counts_and_rates_over_the_parents_run():
    outcome = parent_outcome([_shard(2), _shard(3, documents=30)], NOW - timedelta(seconds=8), NOW)
    assert (outcome.status.value, outcome.error) == ("succeeded", None)
    assert outcome.result["shards"] == [2, 3] and outcome.result["documents"] == 40
    assert outcome.result["seconds"] == 8.0 and outcome.result["documents_per_second"] == 5.0


def test_a_failed_or_dead_shard_fails_the_parent_and_names_the_first():
    outcome = parent_outcome([_shard(2, "cancelled"), _shard(3, "dead", error="lost"), _shard(4, "failed")],
                             None, NOW)
    assert outcome.status.value == "failed"
    assert outcome.error == "2 of 3 shards failed; shard 3: lost"
    assert "seconds" not in outcome.result  # never started: no rate


def test_a_cancelled_shard_without_failures_cancels_the_parent():
    naive_start = (NOW - timedelta(seconds=1)).replace(tzinfo=None)
    outcome = parent_outcome([_shard(2), _shard(3, "cancelled", documents=0)], naive_start, NOW)
    assert (outcome.status.value, outcome.error) == ("cancelled", "cancelled on request")
    assert outcome.result["seconds"] == 1.0
