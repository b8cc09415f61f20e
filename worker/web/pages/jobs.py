"""Jobs: the filterable list with live progress, and one job's page (timeline, shards, counts, epochs)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import repo, views
from db.models import Evaluation, JobKind, JobStatus, ModelVersion
from db.names import parse_model_ref
from worker.present import iso, prediction_json
from worker.web.common import (NotFound, choice_param, date_param, int_param, keyset, limit_param,
                               model_param, name_param, page)
from worker.web.shown import first_line, job_item

KINDS = tuple(k.value for k in JobKind)
STATUSES = tuple(s.value for s in JobStatus)


def jobs_data(session: Session, path: dict, query) -> dict[str, Any]:
    filters = {
        "kind": choice_param(query, "kind", KINDS), "status": choice_param(query, "status", STATUSES),
        "collection": name_param(query, "collection", "collection"), "model": model_param(query),
        "from": query.get("from") or None, "to": query.get("to") or None, "shards": query.get("shards") == "1",
    }
    limit = limit_param(query)
    rows = views.jobs_page(session, before=int_param(query, "before"), limit=limit + 1, kind=filters["kind"],
                           status=filters["status"], collection=filters["collection"], model=filters["model"],
                           created_from=date_param(query, "from"), created_to=date_param(query, "to", end=True),
                           shards=filters["shards"])
    rows, next_before = keyset(rows, limit, lambda job: job.id)
    return {"jobs": [job_item(job) for job in rows], "filters": filters, "next_before": next_before,
            "kinds": KINDS, "statuses": STATUSES}


def _model_version_of(session: Session, job) -> ModelVersion | None:
    """The version a job ran with (classify, evaluate) or registered (train)."""
    result = job.result if isinstance(job.result, dict) else {}
    if result.get("model_version_id"):
        return session.get(ModelVersion, result["model_version_id"])
    if job.kind == "train":
        return views.version_trained_by(session, job.id)
    ref = job.params.get("model") if isinstance(job.params, dict) else None
    if not isinstance(ref, str):
        return None
    try:
        name, number = parse_model_ref(ref)
    except ValueError:
        return None
    return views.version(session, name, number) if isinstance(number, int) else None


def _timeline(job, shards) -> list[dict[str, Any]]:
    events = [{"at": iso(job.created_at), "what": "queued"}]
    if job.started_at:
        events.append({"at": iso(job.started_at), "what": "claimed" if job.attempt <= 1 else
                       f"first claimed (attempts: {job.attempt} of {job.max_attempts})"})
    if shards:
        events.append({"at": iso(shards[0].created_at), "what": f"split into {len(shards)} shards"})
    if job.status == "running" and job.lease_owner:
        events.append({"at": iso(job.lease_expires_at), "what": f"held by {job.lease_owner} until"})
    if job.cancel_requested:
        events.append({"at": iso(job.updated_at), "what": "cancel requested"})
    if job.finished_at:
        events.append({"at": iso(job.finished_at), "what": job.status + (f": {first_line(job.error)}" if job.error else "")})
    return events


def _epochs(session: Session, job, mv: ModelVersion | None) -> list[dict[str, Any]]:
    """A training job's epochs: the registered version's history, or what the running job published so far."""
    if job.kind != "train":
        return []
    if mv is not None:
        return list((mv.metrics or {}).get("history") or [])
    detail = (job.result or {}).get("progress") if isinstance(job.result, dict) else None
    return list(detail.get("history") or []) if isinstance(detail, dict) else []


def job_data(session: Session, path: dict, query) -> dict[str, Any]:
    job = repo.get_job(session, path["job_id"])
    if job is None:
        raise NotFound(f"no job {path['job_id']}")
    shards = views.shards_of(session, job.id)
    mv = _model_version_of(session, job)
    data: dict[str, Any] = {
        "job": job_item(job), "shards": [job_item(s) for s in shards], "timeline": _timeline(job, shards),
        "model": f"{mv.name}:{mv.version}" if mv else None, "epochs": _epochs(session, job, mv),
        "predictions": None, "failures": [], "evaluation_id": None,
    }
    if job.kind == "classify" and mv is not None:
        ids = [job.id, *(s.id for s in shards)]
        data["predictions"] = views.job_prediction_counts(session, ids, mv.id)
        data["failures"] = [prediction_json(d, p, mv) for d, p in views.job_failures(session, ids, mv.id)]
    if job.kind == "evaluate" and isinstance(job.result, dict) and job.result.get("evaluation_id"):
        data["evaluation_id"] = job.result["evaluation_id"] if session.get(Evaluation, job.result["evaluation_id"]) else None
    return data


def routes():
    return [*page("/jobs", "jobs", jobs_data, "jobs.html"),
            *page("/jobs/{job_id:int}", "job", job_data, "job.html")]
