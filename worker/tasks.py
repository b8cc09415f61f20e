"""Celery tasks: one thin task per job kind. Each takes a job id and calls the job function.

A job that ended failed, dead or cancelled raises JobFailed / JobCancelled after the job function returns,
so Celery and Flower show FAILURE with the job's reason. It is declared in ``throws`` (logged without a
traceback), never retried, and acknowledged like any finished task (task_acks_on_failure_or_timeout).
"""
from __future__ import annotations

from worker import jobs
from worker.ops import nightly, reaper
from worker.celery_app import TASKS, app
from worker.client import JobHandle
from worker.errors import JobCancelled, JobFailed
from worker.publish import publish

_ENDED_BADLY = {jobs.Outcome.failed, jobs.Outcome.dead, jobs.Outcome.cancelled}


def _finish(task, job_id: int, outcome: jobs.Outcome) -> str:
    if outcome is jobs.Outcome.retry:
        task.apply_async(args=[job_id], countdown=jobs.retry_countdown(job_id))
    if outcome in _ENDED_BADLY:
        reason = JobHandle(job_id).snapshot().error or outcome.value
        if outcome is jobs.Outcome.cancelled:
            raise JobCancelled(f"job {job_id} cancelled: {reason}")
        raise JobFailed(f"job {job_id} {outcome.value}: {reason}")
    return outcome.value


def _reporter(task, job_id: int):
    """Progress as Celery task state (AsyncResult(id).info) and a task-progress event (Flower, event monitors)."""
    def report(done: int, total: int | None) -> None:
        meta = {"job_id": job_id, "done": done, "total": total}
        task.update_state(state="PROGRESS", meta=meta)
        task.send_event("task-progress", **meta)
    return report


_JOB_TASK = {"bind": True, "throws": (JobFailed,), "autoretry_for": (), "max_retries": 0}


@app.task(name=TASKS["train"], **_JOB_TASK)
def train(self, job_id: int) -> str:
    outcome = jobs.run_training(int(job_id), publish=publish, report=_reporter(self, int(job_id)))
    return _finish(self, job_id, outcome)


@app.task(name=TASKS["classify"], **_JOB_TASK)
def classify(self, job_id: int) -> str:
    outcome = jobs.run_classification(int(job_id), publish=publish, report=_reporter(self, int(job_id)))
    return _finish(self, job_id, outcome)


@app.task(name=TASKS["evaluate"], **_JOB_TASK)
def evaluate(self, job_id: int) -> str:
    outcome = jobs.run_evaluation(int(job_id), publish=publish, report=_reporter(self, int(job_id)))
    return _finish(self, job_id, outcome)


# Quiet housekeeping: no result and no task events (beat sends it every minute to the `maintenance` queue,
# which GPU workers do not consume unless asked: `bertjobs worker --queues maintenance`).
@app.task(name=TASKS["reap"], ignore_result=True, send_events=False)
def reap() -> dict:
    report = reaper.reap()
    return {"requeued": report.requeued, "dead": report.dead, "cancelled": report.cancelled,
            "republished": report.republished}


@app.task(name=TASKS["nightly"], ignore_result=True)
def nightly_classification() -> list[int]:
    return [handle.id for handle in nightly.run_nightly()]
