"""Compare: two versions on a labelled collection, from what is stored (nothing is evaluated here).

Metrics and per-class scores come from each version's latest stored evaluation on the collection (``bertjobs
evaluate`` or ``models compare`` write them); the disagreements are the ``version_disagreements`` view's rows:
documents both versions classified (bulk predictions) with different labels.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import repo, views
from db.models import Evaluation
from worker.jobs.evaluation import as_dict
from worker.web.common import BadRequest, NotFound, int_param, keyset, limit_param, name_param, page


def _resolve(session: Session, query, key: str):
    ref = query.get(key) or None
    if ref is None:
        return None
    try:
        mv = repo.resolve_model_version(session, ref)
    except ValueError as exc:
        raise BadRequest(f"{key}: {exc}") from None
    if mv is None:
        raise NotFound(f"no ready model version matches {ref!r}")
    return mv


def _per_class(a: dict | None, b: dict | None) -> list[dict[str, Any]]:
    """Each class's scores under both versions and the change in F1 (b minus a)."""
    pa, pb = (a or {}).get("per_class") or {}, (b or {}).get("per_class") or {}
    rows = []
    for label in dict.fromkeys([*pa, *pb]):
        fa, fb = pa.get(label, {}).get("f1"), pb.get(label, {}).get("f1")
        rows.append({"label": label, "a": pa.get(label), "b": pb.get(label),
                     "delta_f1": fb - fa if fa is not None and fb is not None else None})
    return rows


def _choices(session: Session) -> dict[str, list[str]]:
    """What the form offers: every ready version, and the collections versions were evaluated or trained on."""
    versions = [mv for mv in repo.list_model_versions(session) if mv.status == "ready"]
    evaluated = set(session.scalars(select(Evaluation.collection).distinct()))
    trained = {(mv.lineage or {}).get("collection") for mv in versions} - {None}
    return {"versions": [f"{mv.name}:{mv.version}" for mv in versions], "collections": sorted(evaluated | trained)}


def compare_data(session: Session, path: dict, query) -> dict[str, Any]:
    """``models compare --json`` (collection, a, b, documents, disagreements, examples) from stored rows."""
    a, b = _resolve(session, query, "a"), _resolve(session, query, "b")
    collection = name_param(query, "collection", "collection")
    data: dict[str, Any] = {"collection": collection, "a": None, "b": None, "models": None, "documents": 0,
                            "disagreements": 0, "examples": [], "per_class": [], "next_after": None,
                            "choices": _choices(session), "query": {k: query.get(k) or "" for k in ("a", "b", "collection")}}
    if a is None or b is None or collection is None:
        if any(query.get(k) for k in ("a", "b", "collection")):
            raise BadRequest("compare needs two versions (a, b) and a collection")
        return data
    refs = [f"{mv.name}:{mv.version}" for mv in (a, b)]
    evs = [views.latest_evaluation(session, mv.id, collection) for mv in (a, b)]
    data["a"], data["b"] = [as_dict(ev, ref) if ev else None for ev, ref in zip(evs, refs)]
    data["models"] = {"a": refs[0], "b": refs[1]}
    data["per_class"] = _per_class(data["a"], data["b"])
    data.update(views.compared_counts(session, a.id, b.id, collection))
    limit = limit_param(query)
    rows = views.disagreements(session, a.id, b.id, collection, after=int_param(query, "after"), limit=limit + 1)
    rows, data["next_after"] = keyset(rows, limit, lambda row: row[0].id)
    data["examples"] = [{"document_id": d.id, "external_id": d.external_id, "text": d.text,
                         "gold": d.labels if d.labels is not None else d.label, "a": pa.label, "b": pb.label,
                         "score_a": pa.score, "score_b": pb.score} for d, pa, pb in rows]
    return data


def routes():
    return page("/compare", "compare", compare_data, "compare.html")
