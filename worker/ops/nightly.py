"""The nightly bulk classification: every configured collection, with the model its alias points at.

Each run classifies what has no current prediction from that model version: documents imported since the
last run, documents whose text changed, and whatever a failed run left. At most one run per collection and
day (the idempotency key), and never while the previous one is still queued or running.
"""
from __future__ import annotations

import logging
from datetime import date

from db import repo
from db.models import utcnow
from db.session import session_factory_for
from worker.client import JobHandle, submit_classification
from worker.config import Settings, get_settings
from worker.errors import InvalidJob

log = logging.getLogger("bertjobs.nightly")


def run_nightly(settings: Settings | None = None, *, day: date | None = None, enqueue: bool = True) -> list[JobHandle]:
    """Create (at most) one classification job per configured collection for ``day``; return them."""
    settings = settings or get_settings()
    if not settings.nightly_model or not settings.nightly_collections:
        log.info("nightly: no BERTJOBS_NIGHTLY_MODEL or BERTJOBS_NIGHTLY_COLLECTIONS; nothing to do")
        return []
    day = day or utcnow().date()
    model = f"{settings.nightly_model}@{settings.nightly_alias}"
    handles = []
    for collection in settings.nightly_collections:
        prefix = f"nightly:{collection}:"
        with session_factory_for(settings.resolved_database_url).begin() as s:
            running = [j.id for j in repo.active_jobs(s, "classify", prefix) if j.dedupe_key != prefix + day.isoformat()]
            holder = repo.resolve_model_version(s, model)
        if running:
            log.warning("nightly %s: the previous run (job %s) is not finished; not starting another", collection, running)
            continue
        if holder is None:
            log.warning("nightly %s: no model version is %s; promote one first", collection, model)
            continue
        try:
            handle = submit_classification(collection, model, idempotency_key=prefix + day.isoformat(),
                                           settings=settings, enqueue=enqueue)
        except InvalidJob as exc:  # refused at submit (e.g. an empty collection): the other collections still run
            log.warning("nightly %s: not started: %s", collection, exc)
            continue
        log.info("nightly %s: job %s (%s) with %s", collection, handle.id,
                 "created" if handle.created else "already created today", holder.ref)
        handles.append(handle)
    return handles
