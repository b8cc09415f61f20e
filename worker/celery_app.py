"""The Celery application. Imports no torch: the worker's parent process never touches the model or CUDA.

Settings chosen on purpose (the database, not the broker, decides whether a job runs):
- JSON only (pickle refused); a message carries only a job id.
- ``task_acks_late``: a message is acknowledged after the task returns, so a worker that dies loses nothing;
  redelivery is harmless because a job runs only under a claim in the database.
- ``worker_prefetch_multiplier=1`` and concurrency 1: a worker holds one job at a time (one per GPU).
- Redis ``visibility_timeout`` above the longest task: Redis re-delivers unacknowledged messages after it.
- ``task_reject_on_worker_lost=False``: a task whose process dies is acknowledged, not re-queued forever;
  the reaper re-queues the job from the database until it runs out of attempts, then marks it dead.
- ``task_time_limit``: a hung task is killed (then re-queued by the reaper, up to ``max_attempts``).
- Beat sends the reaper to its own ``maintenance`` queue every ``reaper_interval_seconds``, and the nightly
  classification at ``nightly_time`` (UTC) when ``nightly_model`` and ``nightly_collections`` are set.
"""
from __future__ import annotations

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_process_init

from worker.config import Settings, SettingsError, get_settings

TASKS = {"train": "bertjobs.train", "classify": "bertjobs.classify", "reap": "bertjobs.reap",
         "nightly": "bertjobs.nightly", "evaluate": "bertjobs.evaluate"}
QUEUES = {"train": "train", "classify": "classify", "reap": "maintenance", "nightly": "maintenance",
          "evaluate": "classify"}


def beat_schedule(settings: Settings) -> dict:
    schedule = {
        "reap-lost-jobs": {
            "task": TASKS["reap"],
            "schedule": settings.reaper_interval_seconds,
            "options": {"queue": QUEUES["reap"], "expires": settings.reaper_interval_seconds},
        },
    }
    if settings.nightly_model and settings.nightly_collections:
        hour, minute = settings.nightly_time.split(":")
        schedule["nightly-classification"] = {
            "task": TASKS["nightly"],
            "schedule": crontab(hour=int(hour), minute=int(minute)),
            "options": {"queue": QUEUES["nightly"]},
        }
    return schedule


def make_celery(settings: Settings) -> Celery:
    app = Celery("bertjobs", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        event_serializer="json",
        task_ignore_result=True,  # outcomes live in the jobs table; the backend only carries PROGRESS states
        result_backend=settings.result_backend or settings.broker_url,
        result_expires=24 * 3600,
        task_acks_late=True,
        task_acks_on_failure_or_timeout=True,  # a job that ended failed (JobFailed) is acknowledged, not redelivered
        task_store_errors_even_if_ignored=True,  # ... and its task shows FAILURE with the job's reason
        task_reject_on_worker_lost=False,  # a job that kills its worker is not re-queued forever by the broker
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="prefork",
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        # A hung task is killed past this; its job's lease then expires and the reaper re-queues it, until
        # max_attempts. No soft limit: jobs stop themselves through cancellation (between pages or training steps), not exceptions mid-page.
        task_time_limit=settings.task_time_limit_seconds,
        broker_connection_retry_on_startup=True,
        task_routes={TASKS[kind]: {"queue": queue} for kind, queue in QUEUES.items()},
        task_default_queue=QUEUES["classify"],
        task_create_missing_queues=True,
        worker_send_task_events=True,  # Flower shows tasks as they run
        task_send_sent_event=True,
        beat_schedule=beat_schedule(settings),
        timezone="UTC",
    )
    return app


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    from db.session import dispose_all

    dispose_all()


@worker_process_init.connect
def _parallel_tokenizer(**_kwargs) -> None:
    """Each child tokenizes its pages on every core (worker/ml/hf.py says why that is safe only after the fork)."""
    from worker.ml.hf import enable_tokenizer_parallelism

    enable_tokenizer_parallelism()


try:
    app = make_celery(get_settings())
except SettingsError as _exc:  # `celery -A worker.celery_app worker` with a bad setting: one line, not a traceback
    import sys

    print(f"error: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None
