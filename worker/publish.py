"""Publishing: a job id sent to the queue of its kind, as any Celery client can do by task name.

One publisher app per broker URL and process (made on first use, never per call: each publish reuses its
connection), set to fail fast: a down broker fails a publish in about two seconds, and the job stays queued
in the database until the reaper publishes it again. Celery is imported only here, in worker/celery_app.py
and in worker/tasks.py.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from worker.config import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

_apps: dict[tuple[int, str], "Celery"] = {}
_lock = threading.Lock()
_RETRY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}


def _publisher(settings: Settings) -> "Celery":
    # Keyed by process too: a forked worker child makes its own connections rather than share its parent's.
    key = (os.getpid(), settings.broker_url)
    with _lock:
        if key not in _apps:
            from worker.celery_app import make_celery  # imported on first publish: the client stays light

            app = make_celery(settings)
            app.conf.broker_connection_timeout = 1.0
            app.conf.broker_transport_options = {**app.conf.broker_transport_options, "socket_connect_timeout": 1.0,
                                                 "socket_timeout": 5.0, "max_retries": 1}
            _apps[key] = app
        return _apps[key]


def publish(job_id: int, kind: str, settings: Settings | None = None) -> None:
    """Send the job id to the queue of its kind; raises if the broker cannot be reached (in about 2 s)."""
    from worker.celery_app import QUEUES, TASKS

    settings = settings or get_settings()
    _publisher(settings).send_task(TASKS[kind], args=[job_id], queue=QUEUES[kind], ignore_result=True,
                                   retry=True, retry_policy=_RETRY)
