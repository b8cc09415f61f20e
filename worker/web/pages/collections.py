"""Collections: documents, labelled share, label counts, production coverage, failures, nightly label shares."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import repo, views
from db.models import ModelVersion
from worker.present import iso, prediction_json
from worker.web.common import BadRequest, NotFound, int_param, keyset, limit_param, page
from worker.web.shown import job_item


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "labelled_share": _share(row["labelled"], row["documents"]), "updated_at": iso(row["updated_at"])}


def collections_data(session: Session, path: dict, query) -> dict[str, Any]:
    return {"collections": [_summary(row) for row in views.collections(session)]}


def _production(session: Session, collection: str) -> list[dict[str, Any]]:
    """Per model with a ``production`` version: documents it classified, failed on, and still waiting for it
    (no prediction yet, or one older than the document's text: what the next nightly run classifies)."""
    out = []
    for mv in views.alias_holders(session, "production"):
        out.append({"model": f"{mv.name}:{mv.version}", "model_version_id": mv.id,
                    **views.coverage(session, collection, mv.id)})
    return [row for row in out if row["classified"] or row["failed"]] or out


def _nightly(session: Session, collection: str) -> list[dict[str, Any]]:
    runs = views.nightly_runs(session, collection)
    labels = views.labels_by_run(session, [job.id for job in runs])
    out = []
    for job in runs:
        counts = labels.get(job.id, {})
        total = sum(counts.values())
        out.append({"job": job_item(job), "date": (job.dedupe_key or "").rsplit(":", 1)[-1], "predictions": total,
                    "labels": {("(failed)" if k is None else k): n for k, n in counts.items()},
                    "share": {("(failed)" if k is None else k): _share(n, total) for k, n in counts.items()}})
    return out


def collection_data(session: Session, path: dict, query) -> dict[str, Any]:
    name = path["name"]
    try:
        exists = repo.collection_exists(session, name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not exists:
        raise NotFound(f"unknown collection {name!r}")
    summary = views.collection_summary(session, name)
    label_counts = summary.pop("label_counts")
    limit = limit_param(query)
    docs, next_after = keyset(views.documents_page(session, name, after=int_param(query, "after"), limit=limit + 1),
                              limit, lambda doc: doc.id)
    production = _production(session, name)
    failures, next_failure, failures_model = [], None, None
    if production:
        mv = session.get(ModelVersion, production[0]["model_version_id"])
        failures_model = production[0]["model"]
        rows = views.failures_page(session, name, mv.id, after=int_param(query, "failures_after"), limit=21)
        rows, next_failure = keyset(rows, 20, lambda row: row[0].id)
        failures = [prediction_json(d, p, mv) for d, p in rows]
    return {
        **_summary(summary), "label_counts": {("(none)" if k is None else k): n for k, n in label_counts.items()},
        "production": production, "failures": failures, "failures_model": failures_model, "next_failures_after": next_failure,
        "nightly": _nightly(session, name),
        "page": [{"document_id": d.id, "external_id": d.external_id, "text": d.text, "label": d.label,
                  "labels": d.labels, "updated_at": iso(d.updated_at)} for d in docs],
        "next_after": next_after,
    }


def routes():
    return [*page("/collections", "collections", collections_data, "collections.html"),
            *page("/collections/{name}", "collection", collection_data, "collection.html")]
