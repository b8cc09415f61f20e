"""The JSON shapes of ``bertjobs ... --json``: one place, stable keys (README, "Scripting").

Plain functions from rows to dicts of JSON values; no database access, so every interface can reuse them.
Keys are only ever added, never renamed or removed. Times are ISO 8601 strings (or null).
"""
from __future__ import annotations

import json
import sys
from typing import Any


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def job_json(job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "parent_id": job.parent_id,
        "attempt": job.attempt, "max_attempts": job.max_attempts,
        "progress": {"done": job.progress_done or 0, "total": job.progress_total},
        "cancel_requested": bool(job.cancel_requested), "params": job.params or {}, "error": job.error,
        "result": job.result, "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def model_version_json(mv, aliases: list[str] | None = None) -> dict[str, Any]:
    """A model version; ``aliases`` are the alias names pointing at it (``production``...)."""
    metrics = dict(mv.metrics or {})
    history = metrics.pop("history", None)
    return {
        "model": mv.ref, "id": mv.id, "name": mv.name, "version": mv.version,
        "status": mv.status, "base_model": mv.base_model, "artifact": mv.artifact_path, "sha256": mv.artifact_sha256,
        "labels": mv.labels, "hyperparameters": mv.hyperparameters, "metrics": metrics, "history": history,
        "lineage": mv.lineage, "training_job_id": mv.training_job_id, "created_at": iso(mv.created_at),
        "aliases": list(aliases or []), "warnings": list(metrics.get("trust_warnings") or []),
        "description": (mv.lineage or {}).get("description"), "tags": (mv.lineage or {}).get("tags") or {},
    }


def prediction_json(doc, pred, mv) -> dict[str, Any]:
    return {
        "document_id": doc.id, "collection": doc.collection, "external_id": doc.external_id,
        "model": mv.ref, "model_version_id": mv.id, "label": pred.label,
        "labels": pred.labels, "score": pred.score, "scores": pred.scores, "error": pred.error,
        "job_id": pred.job_id, "created_at": iso(pred.created_at), "text": doc.text,
    }


def label_shares(tally) -> list[dict[str, Any]]:
    """A run's classified documents by label (db.repo.Tally): count, share and mean top score."""
    total = tally.classified
    return [{"label": t.label, "documents": t.documents, "share": t.documents / total if total else None,
             "mean_score": t.mean_score} for t in tally.labels]


def run_drift_json(item) -> dict[str, Any]:
    """A classification run and its drift against the runs before it (worker.ops.drift.RunDrift)."""
    run, drift = item.run, item.drift
    return {
        "job_id": run.job_id, "finished_at": iso(run.finished_at), "model": f"{run.model_name}:{run.model_version}",
        "model_version": run.model_version, "scope": run.scope, "filter": run.filter,
        "classified": run.tally.classified, "failed": run.tally.failed, "mean_score": run.tally.mean_score,
        "labels": label_shares(run.tally), "psi": drift.psi, "shifted": drift.shifted,
        "baseline": list(drift.baseline), "version_changed": drift.version_changed,
        "scope_changed": drift.scope_changed, "note": drift.note,
    }


def drift_json(collection: str, model_name: str, runs: list, *, threshold: float, baseline_runs: int) -> dict[str, Any]:
    """``bertjobs drift``: how runs are compared, and the runs, oldest first."""
    return {"collection": collection, "model": model_name, "threshold": threshold, "baseline_runs": baseline_runs,
            "runs": [run_drift_json(r) for r in runs]}


def print_json(value: Any, stream=None) -> None:
    """One JSON document, keys sorted, then a newline."""
    stream = stream or sys.stdout
    stream.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
