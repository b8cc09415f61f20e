"""Label drift of a model over a collection, run by run: ``bertjobs drift`` and ``bertjobs metrics``.

The runs are classification_runs rows (db/repo/runs.py); the comparison is worker/ml/drift.py's: each run's
label shares against the mean shares of up to BERTJOBS_DRIFT_BASELINE_RUNS runs before it of the same model name
(any version: a version change is marked, not left out), flagged at BERTJOBS_DRIFT_PSI_THRESHOLD.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db import repo
from worker.config import Settings
from worker.ml.drift import Drift, Run, compare


@dataclass(frozen=True)
class RunDrift:
    run: repo.RunRow
    drift: Drift


def _as_run(row: repo.RunRow) -> Run:
    where = f" {json.dumps(row.filter, sort_keys=True)}" if row.filter else ""
    return Run(row.job_id, row.model_version, row.scope + where,
               {t.label: t.documents for t in row.tally.labels})


def drift_runs(session: Session, collection: str, model_name: str, shown: int, settings: Settings) -> list[RunDrift]:
    """The latest ``shown`` runs, oldest first, each with its drift against the runs before it."""
    window = settings.drift_baseline_runs
    rows = repo.classification_runs(session, collection, model_name, limit=shown + window)
    drifts = compare([_as_run(r) for r in rows], window=window, threshold=settings.drift_psi_threshold)
    return [RunDrift(r, d) for r, d in zip(rows, drifts)][-shown:]


def latest_drifts(session: Session, settings: Settings) -> list[RunDrift]:
    """The latest run of every model over every collection it classified, with its drift."""
    return [drift for collection, model in repo.run_series(session)
            for drift in drift_runs(session, collection, model, 1, settings)]
