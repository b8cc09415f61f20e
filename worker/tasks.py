"""Celery tasks: one thin task per job kind. Each takes a job id and calls the job function."""
from __future__ import annotations

from worker import jobs
from worker.celery_app import TASKS, app

RETRY_DELAY_SECONDS = 10


def _republish_on_retry(task, job_id: int, outcome: jobs.Outcome) -> str:
    if outcome is jobs.Outcome.retry:
        task.apply_async(args=[job_id], countdown=RETRY_DELAY_SECONDS)
    return outcome.value


@app.task(name=TASKS["train"], bind=True)
def train(self, job_id: int) -> str:
    return _republish_on_retry(self, job_id, jobs.run_training(int(job_id)))


@app.task(name=TASKS["classify"], bind=True)
def classify(self, job_id: int) -> str:
    return _republish_on_retry(self, job_id, jobs.run_classification(int(job_id)))
