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


def _reporter(task, job_id: int):
    """Progress as Celery task state (AsyncResult(id).info) and a task-progress event (Flower, event monitors)."""
    def report(done: int, total: int | None) -> None:
        meta = {"job_id": job_id, "done": done, "total": total}
        task.update_state(state="PROGRESS", meta=meta)
        task.send_event("task-progress", **meta)
    return report


@app.task(name=TASKS["train"], bind=True)
def train(self, job_id: int) -> str:
    outcome = jobs.run_training(int(job_id), publish=publish, report=_reporter(self, int(job_id)))
    return _republish_on_retry(self, job_id, outcome)


@app.task(name=TASKS["classify"], bind=True)
def classify(self, job_id: int) -> str:
    outcome = jobs.run_classification(int(job_id), publish=publish, report=_reporter(self, int(job_id)))
    return _republish_on_retry(self, job_id, outcome)


@app.task(name=TASKS["evaluate"], bind=True)
def evaluate(self, job_id: int) -> str:
    from worker.evaluate import run_evaluation

    outcome = run_evaluation(int(job_id), publish=publish, report=_reporter(self, int(job_id)))
    return _republish_on_retry(self, job_id, outcome)


@app.task(name=TASKS["reap"], ignore_result=True)
def reap() -> dict:
    report = reaper.reap()
    return {"requeued": report.requeued, "dead": report.dead, "cancelled": report.cancelled,
            "republished": report.republished}


@app.task(name=TASKS["nightly"], ignore_result=True)
def nightly_classification() -> list[int]:
    return [handle.id for handle in nightly.run_nightly()]
