"""A classification run's label counts, kept when it succeeds (the ``label_drift`` view, ``bertjobs drift``).

A job counts its own predictions in the transaction that finishes it and carries the counts in its result
(``label_counts``, ``mean_score``); a sharded job's result sums its shards' (worker/jobs/shards.py). The run a
user started, a plain job or a sharded parent, is then kept in classification_runs, in that same transaction.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from db import repo
from db.models import JobKind, JobStatus
from worker.jobs.params import ClassifyParams


def record_finished_run(session: Session, job_id: int) -> bool:
    """Keep the run if the job is a classification a user started, has succeeded and carries its counts."""
    job = repo.get_job(session, job_id)
    if (job is None or job.kind != JobKind.classify.value or job.parent_id is not None
            or job.status != JobStatus.succeeded.value):
        return False
    tally = repo.Tally.from_json(job.result)
    if tally is None or job.result.get("model_version_id") is None:
        return False
    params = ClassifyParams.from_dict(job.params)
    return repo.record_run(session, job_id, collection=params.collection,
                           model_version_id=job.result["model_version_id"], only_missing=params.only_missing,
                           filter=params.filter, tally=tally, finished_at=job.finished_at)
