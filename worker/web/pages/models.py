"""Models: every name with its versions, aliases and their history; one version's training report."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import repo, views
from db.names import check_name
from worker.jobs.evaluation import as_dict
from worker.present import iso, model_version_json
from worker.web.common import BadRequest, NotFound, page


def _moves(session: Session, name: str, versions: dict[int, str], limit: int = 20) -> list[dict[str, Any]]:
    """The model's alias moves, newest first (``models history``)."""
    return [{"alias": m.alias, "to": versions.get(m.model_version_id), "from": versions.get(m.previous_version_id),
             "command": m.command, "actor": m.actor, "at": iso(m.created_at)}
            for m in reversed(repo.alias_history(session, name, limit=limit))]


def models_data(session: Session, path: dict, query) -> dict[str, Any]:
    aliases = repo.aliases_by_version(session)
    evaluated = views.evaluation_counts(session)
    by_name: dict[str, list] = {}
    for mv in repo.list_model_versions(session):
        by_name.setdefault(mv.name, []).append(mv)
    models = []
    for name, versions in by_name.items():
        refs = {mv.id: f"{mv.name}:{mv.version}" for mv in versions}
        items = [{**model_version_json(mv, aliases.get(mv.id)), "evaluation_count": evaluated.get(mv.id, 0)}
                 for mv in reversed(versions)]
        models.append({"name": name, "versions": items,
                       "aliases": {alias: refs[mv.id] for mv in versions for alias in aliases.get(mv.id, [])},
                       "alias_history": _moves(session, name, refs)})
    return {"models": models}


def _version(session: Session, path: dict):
    try:
        check_name("model name", path["name"])
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    mv = views.version(session, path["name"], path["version"])
    if mv is None:
        raise NotFound(f"no model version {path['name']}:{path['version']}")
    return mv


def version_data(session: Session, path: dict, query) -> dict[str, Any]:
    """``models show --json``, plus the moves of the model's aliases."""
    mv = _version(session, path)
    ref = f"{mv.name}:{mv.version}"
    refs = {v.id: f"{v.name}:{v.version}" for v in repo.list_model_versions(session, mv.name)}
    return {**model_version_json(mv, repo.aliases_by_version(session, mv.name).get(mv.id)),
            "evaluations": [as_dict(ev, ref) for ev in repo.list_evaluations(session, mv.id)],
            "alias_history": _moves(session, mv.name, refs), "versions": list(refs.values())}


def routes():
    return [*page("/models", "models", models_data, "models.html"),
            *page("/models/{name}/{version:int}", "version", version_data, "version.html")]
