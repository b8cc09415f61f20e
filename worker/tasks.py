"""Celery tasks: one thin task per job kind. Each takes a job id and calls the job function."""
from __future__ import annotations

from worker import jobs, nightly, reaper
from worker.celery_app import TASKS, app
from worker.client import publish
from worker.config import get_settings


def _republish_on_retry(task, job_id: int, outcome: jobs.Outcome) -> str:
    if outcome is jobs.Outcome.retry:
        task.apply_async(args=[job_id], countdown=get_settings().retry_delay_seconds)
    return outcome.value


@app.task(name=TASKS["train"], bind=True)
def train(self, job_id: int) -> str:
    return _republish_on_retry(self, job_id, jobs.run_training(int(job_id), publish=publish))


@app.task(name=TASKS["classify"], bind=True)
def classify(self, job_id: int) -> str:
    return _republish_on_retry(self, job_id, jobs.run_classification(int(job_id), publish=publish))


@app.task(name=TASKS["reap"], ignore_result=True)
def reap() -> dict:
    report = reaper.reap()
    return {"requeued": report.requeued, "dead": report.dead, "cancelled": report.cancelled,
            "republished": report.republished}


@app.task(name=TASKS["nightly"], ignore_result=True)
def nightly_classification() -> list[int]:
    return [handle.id for handle in nightly.run_nightly()]
