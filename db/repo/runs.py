"""Classification runs: what a job wrote, counted when it finished, and the runs of a model over a collection.

``tally_predictions`` is one GROUP BY over the job's own predictions (ix_predictions_job_id), run in the
transaction that finishes the job; ``record_run`` keeps it (classification_runs, classification_run_labels) for
the ``label_drift`` view and ``bertjobs drift``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import ClassificationRun, ClassificationRunLabel, ModelVersion, Prediction


@dataclass(frozen=True)
class LabelTally:
    label: str | None  # None: a multi-label model gave no label
    documents: int
    mean_score: float | None


@dataclass(frozen=True)
class Tally:
    """A job's predictions: ``classified`` (success rows) by label, and ``failed`` (failure rows)."""

    classified: int
    failed: int
    labels: tuple[LabelTally, ...]

    @property
    def mean_score(self) -> float | None:
        """The mean top score of the classified documents."""
        scored = [(t.documents, t.mean_score) for t in self.labels if t.mean_score is not None]
        n = sum(k for k, _ in scored)
        return sum(k * m for k, m in scored) / n if n else None

    def to_json(self) -> dict[str, Any]:
        """The keys a classification job's result carries (``label_counts``: most frequent label first)."""
        return {"classified": self.classified, "failed": self.failed, "mean_score": self.mean_score,
                "label_counts": [{"label": t.label, "documents": t.documents, "mean_score": t.mean_score}
                                 for t in self.labels]}

    @classmethod
    def from_json(cls, result: dict[str, Any] | None) -> "Tally | None":
        """A job result's tally; None when it has none (a job that finished before runs were counted)."""
        if not result or not isinstance(result.get("label_counts"), list):
            return None
        labels = tuple(LabelTally(t["label"], int(t["documents"]), t.get("mean_score"))
                       for t in result["label_counts"])
        return cls(int(result.get("classified", 0)), int(result.get("failed", 0)), labels)

    @classmethod
    def merge(cls, tallies: Iterable["Tally"]) -> "Tally":
        """Several jobs' tallies as one (a sharded job's shards): counts add up, mean scores are weighted."""
        tallies = list(tallies)
        by_label: dict[str | None, list[tuple[int, float | None]]] = {}
        for tally in tallies:
            for t in tally.labels:
                by_label.setdefault(t.label, []).append((t.documents, t.mean_score))
        return cls(sum(t.classified for t in tallies), sum(t.failed for t in tallies),
                   _ordered(LabelTally(label, sum(n for n, _ in parts), _weighted(parts))
                            for label, parts in by_label.items()))


def _weighted(parts: list[tuple[int, float | None]]) -> float | None:
    scored = [(n, m) for n, m in parts if m is not None]
    total = sum(n for n, _ in scored)
    return sum(n * m for n, m in scored) / total if total else None


def _ordered(labels: Iterable[LabelTally]) -> tuple[LabelTally, ...]:
    return tuple(sorted(labels, key=lambda t: (-t.documents, t.label is None, t.label or "")))


def tally_predictions(session: Session, job_id: int) -> Tally:
    """Count the predictions a job wrote (rows still carrying its id), in one pass over them."""
    ok = Prediction.error.is_(None)
    stmt = (select(ok, Prediction.label, func.count(), func.avg(Prediction.score))
            .where(Prediction.job_id == job_id).group_by(ok, Prediction.label))
    labels, failed = [], 0
    for success, label, n, mean in session.execute(stmt):
        if success:
            labels.append(LabelTally(label, n, float(mean) if mean is not None else None))
        else:
            failed += n
    return Tally(sum(t.documents for t in labels), failed, _ordered(labels))


def record_run(session: Session, job_id: int, *, collection: str, model_version_id: int, only_missing: bool,
               filter: dict[str, Any] | None, tally: Tally, finished_at: datetime) -> bool:
    """Keep a finished run's tally (once: False if the job has a row already)."""
    if session.get(ClassificationRun, job_id) is not None:
        return False
    session.add(ClassificationRun(job_id=job_id, collection=collection, model_version_id=model_version_id,
                                  only_missing=only_missing, filter=filter, classified=tally.classified,
                                  failed=tally.failed, mean_score=tally.mean_score, finished_at=finished_at))
    session.flush()
    session.add_all([ClassificationRunLabel(job_id=job_id, label=t.label, documents=t.documents,
                                            mean_score=t.mean_score) for t in tally.labels])
    session.flush()
    return True


@dataclass(frozen=True)
class RunRow:
    """A recorded run with its model's name and version."""

    job_id: int
    collection: str
    model_name: str
    model_version: int
    only_missing: bool
    filter: dict[str, Any] | None
    finished_at: datetime
    tally: Tally

    @property
    def scope(self) -> str:
        """Which documents the run classified: ``all`` of them (matching its filter), or only ``new`` ones (no
        current prediction from that model version: new or changed texts; everything for a version's first run)."""
        return "new" if self.only_missing else "all"


def classification_runs(session: Session, collection: str, model_name: str, limit: int) -> list[RunRow]:
    """The latest ``limit`` runs of a model (any version) over a collection, oldest first."""
    stmt = (select(ClassificationRun, ModelVersion.name, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == ClassificationRun.model_version_id)
            .where(ClassificationRun.collection == collection, ModelVersion.name == model_name)
            .order_by(ClassificationRun.finished_at.desc(), ClassificationRun.job_id.desc()).limit(limit))
    runs = list(session.execute(stmt))[::-1]
    labels = _labels_of(session, [run.job_id for run, _, _ in runs])
    return [RunRow(run.job_id, run.collection, name, version, run.only_missing, run.filter, run.finished_at,
                   Tally(run.classified, run.failed, _ordered(labels.get(run.job_id, []))))
            for run, name, version in runs]


def _labels_of(session: Session, job_ids: Sequence[int]) -> dict[int, list[LabelTally]]:
    out: dict[int, list[LabelTally]] = {}
    if not job_ids:
        return out
    stmt = select(ClassificationRunLabel).where(ClassificationRunLabel.job_id.in_(list(job_ids)))
    for row in session.scalars(stmt):
        out.setdefault(row.job_id, []).append(LabelTally(row.label, row.documents, row.mean_score))
    return out


def run_series(session: Session) -> list[tuple[str, str]]:
    """Every (collection, model name) with a recorded run."""
    stmt = (select(ClassificationRun.collection, ModelVersion.name).distinct()
            .join(ModelVersion, ModelVersion.id == ClassificationRun.model_version_id)
            .order_by(ClassificationRun.collection, ModelVersion.name))
    return [(c, m) for c, m in session.execute(stmt)]
