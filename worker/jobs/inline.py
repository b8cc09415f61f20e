"""The embedded runner: a job, and any shards it spawns, run in this process (`--inline`, the demo, tests)."""
from __future__ import annotations

from db.models import JobKind
from worker.config import Settings
from worker.jobs.classification import run_classification
from worker.jobs.evaluation import run_evaluation
from worker.jobs.runtime import Outcome
from worker.jobs.training import run_training

RUNNERS = {JobKind.train.value: run_training, JobKind.classify.value: run_classification,
           JobKind.evaluate.value: run_evaluation}


def run_inline(job_id: int, kind: str, *, settings: Settings | None = None) -> Outcome:
    """Run the job here, retrying here as asked, then the shards it spawned; the first job's outcome."""
    pending: list[tuple[int, str]] = [(job_id, kind)]
    first: Outcome | None = None
    while pending:
        current, current_kind = pending.pop(0)
        runner = RUNNERS[current_kind]
        spawned: list[tuple[int, str]] = []

        def collect(new_id: int, new_kind: str) -> None:
            spawned.append((new_id, new_kind))

        outcome = runner(current, settings=settings, publish=collect)
        while outcome is Outcome.retry:
            outcome = runner(current, settings=settings, publish=collect)
        pending.extend(spawned)
        first = first or outcome
    return first
