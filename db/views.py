"""Read-only queries behind the web view (``bertjobs ui``): keyset pages and small aggregates.

Functions take a Session and never write. Lists are keyset pages: ``before``/``after`` an id, ``limit`` rows,
over the existing indexes (jobs by id, documents by (collection, id), predictions by (document, model version)
and (model version, label)). The rest of the reading goes through db.repo, as the CLI does.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from db.models import Document, Evaluation, Job, ModelAlias, ModelVersion, Prediction


# ---------------------------------------------------------------- jobs


def jobs_page(session: Session, *, before: int | None = None, limit: int = 50, kind: str | None = None,
              status: str | None = None, collection: str | None = None, model: str | None = None,
              created_from: datetime | None = None, created_to: datetime | None = None,
              shards: bool = False) -> list[Job]:
    """Jobs newest first, strictly before id ``before``; shards only with ``shards`` (they show under their
    parent). ``model`` matches a model name or a ``name:N`` reference, asked for or trained."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(Job.id < before)
    if not shards:
        stmt = stmt.where(Job.parent_id.is_(None))
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if status:
        stmt = stmt.where(Job.status == status)
    if collection:
        stmt = stmt.where(Job.params["collection"].as_string() == collection)
    if model:
        pinned = Job.params["model"].as_string()
        stmt = stmt.where(or_(pinned == model, pinned.startswith(model + ":", autoescape=True),
                              Job.params["requested_model"].as_string() == model,
                              Job.params["model_name"].as_string() == model))
    if created_from is not None:
        stmt = stmt.where(Job.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Job.created_at < created_to)
    return list(session.scalars(stmt))


def jobs_by_id(session: Session, ids: Sequence[int]) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.id.in_(list(ids))).order_by(Job.id))) if ids else []


def shards_of(session: Session, parent_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.id)))


def job_prediction_counts(session: Session, job_ids: Sequence[int], model_version_id: int) -> dict[str, int]:
    """Predictions the jobs wrote (a sharded job's shards write under their own ids): classified and failed."""
    return _classified_and_failed(session, Prediction.model_version_id == model_version_id,
                                  Prediction.job_id.in_(list(job_ids)))


def _classified_and_failed(session: Session, *conditions, join_documents: bool = False) -> dict[str, int]:
    stmt = select(Prediction.error.is_(None), func.count()).where(*conditions).group_by(Prediction.error.is_(None))
    if join_documents:
        stmt = stmt.join(Document, Document.id == Prediction.document_id)
    counts = {"classified": 0, "failed": 0}
    for ok, n in session.execute(stmt):
        counts["classified" if ok else "failed"] += n
    return counts


def job_failures(session: Session, job_ids: Sequence[int], model_version_id: int,
                 limit: int = 20) -> list[tuple[Document, Prediction]]:
    """The first failure rows the jobs wrote, in document order."""
    stmt = (select(Document, Prediction).join(Prediction, Prediction.document_id == Document.id)
            .where(Prediction.model_version_id == model_version_id, Prediction.job_id.in_(list(job_ids)),
                   Prediction.error.is_not(None))
            .order_by(Document.id).limit(limit))
    return [(d, p) for d, p in session.execute(stmt)]


def nightly_runs(session: Session, collection: str, limit: int = 14) -> list[Job]:
    """The collection's nightly runs (idempotency key ``nightly:COLLECTION:DATE``), newest first."""
    prefix = f"nightly:{collection}:"
    return list(session.scalars(select(Job).where(Job.dedupe_key.startswith(prefix, autoescape=True))
                                .order_by(Job.id.desc()).limit(limit)))


def labels_by_run(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str | None, int]]:
    """Run id -> label -> predictions the run (or its shards) wrote; failures count under None."""
    if not run_ids:
        return {}
    root = func.coalesce(Job.parent_id, Job.id)
    stmt = (select(root, Prediction.label, func.count()).join(Job, Job.id == Prediction.job_id)
            .where(root.in_(list(run_ids))).group_by(root, Prediction.label))
    out: dict[int, dict[str | None, int]] = {run_id: {} for run_id in run_ids}
    for run_id, label, n in session.execute(stmt):
        out[run_id][label] = n
    return out


# ---------------------------------------------------------------- models


def version(session: Session, name: str, number: int) -> ModelVersion | None:
    """A version by name and number, whatever its status."""
    return session.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == number))


def version_trained_by(session: Session, job_id: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.training_job_id == job_id)
                          .order_by(ModelVersion.id.desc()).limit(1))


def latest_evaluation(session: Session, model_version_id: int, collection: str) -> Evaluation | None:
    return session.scalar(select(Evaluation).where(Evaluation.model_version_id == model_version_id,
                                                   Evaluation.collection == collection)
                          .order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(1))


def evaluation_counts(session: Session) -> dict[int, int]:
    """Model version id -> how many evaluations it has."""
    stmt = select(Evaluation.model_version_id, func.count()).group_by(Evaluation.model_version_id)
    return {mv_id: n for mv_id, n in session.execute(stmt)}


def _disagreeing(a_id: int, b_id: int, collection: str):
    """The ``version_disagreements`` view's rows for any two versions (of one model or not), in a collection."""
    pa, pb = aliased(Prediction), aliased(Prediction)
    return (select(Document, pa, pb)
            .join(pa, and_(pa.document_id == Document.id, pa.model_version_id == a_id))
            .join(pb, and_(pb.document_id == Document.id, pb.model_version_id == b_id))
            .where(Document.collection == collection, pa.label.is_not(None), pb.label.is_not(None),
                   pa.label != pb.label))


def disagreements(session: Session, a_id: int, b_id: int, collection: str, *, after: int | None = None,
                  limit: int = 50) -> list[tuple[Document, Prediction, Prediction]]:
    """Documents of ``collection`` the two versions labelled differently, in id order after ``after``."""
    stmt = _disagreeing(a_id, b_id, collection).order_by(Document.id).limit(limit)
    if after is not None:
        stmt = stmt.where(Document.id > after)
    return [(d, a, b) for d, a, b in session.execute(stmt)]


def compared_counts(session: Session, a_id: int, b_id: int, collection: str) -> dict[str, int]:
    """Documents of the collection both versions labelled, and on how many they disagree."""
    pa, pb = aliased(Prediction), aliased(Prediction)
    both = (select(func.count(), func.count().filter(pa.label != pb.label))
            .select_from(Document)
            .join(pa, and_(pa.document_id == Document.id, pa.model_version_id == a_id))
            .join(pb, and_(pb.document_id == Document.id, pb.model_version_id == b_id))
            .where(Document.collection == collection, pa.label.is_not(None), pb.label.is_not(None)))
    documents, disagreeing = session.execute(both).one()
    return {"documents": documents or 0, "disagreements": disagreeing or 0}


# ---------------------------------------------------------------- collections


def collections(session: Session) -> list[dict[str, Any]]:
    """Every collection with its document count, how many carry a gold label (or label set), and when a
    document last changed."""
    labelled = or_(Document.label.is_not(None), Document.labels.is_not(None))
    stmt = (select(Document.collection, func.count(), func.count().filter(labelled), func.max(Document.updated_at))
            .group_by(Document.collection).order_by(Document.collection))
    return [{"collection": c, "documents": n, "labelled": k, "updated_at": at} for c, n, k, at in session.execute(stmt)]


def collection_summary(session: Session, collection: str) -> dict[str, Any]:
    """One collection's ``collections`` row and its gold label counts (``None``: unlabelled or a label set), in
    one pass over its documents."""
    stmt = (select(Document.label, func.count(), func.count(Document.labels), func.max(Document.updated_at))
            .where(Document.collection == collection).group_by(Document.label).order_by(func.count().desc()))
    rows = session.execute(stmt).all()
    return {"collection": collection, "documents": sum(n for _, n, _, _ in rows),
            "labelled": sum(n if label is not None else sets for label, n, sets, _ in rows),
            "updated_at": max((at for *_, at in rows if at is not None), default=None),
            "label_counts": {label: n for label, n, _, _ in rows}}


def documents_page(session: Session, collection: str, *, after: int | None = None,
                   limit: int = 50) -> list[Document]:
    stmt = select(Document).where(Document.collection == collection).order_by(Document.id).limit(limit)
    if after is not None:
        stmt = stmt.where(Document.id > after)
    return list(session.scalars(stmt))


def alias_holders(session: Session, alias: str) -> list[ModelVersion]:
    """The versions an alias (``production``) points at, one per model name."""
    stmt = (select(ModelVersion).join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
            .where(ModelAlias.alias == alias).order_by(ModelVersion.name))
    return list(session.scalars(stmt))


def coverage(session: Session, collection: str, model_version_id: int) -> dict[str, int]:
    """The collection's documents by their current row from the version, in one pass: ``classified``, ``failed``
    (a failure row), ``waiting`` (no row, or one older than the text: what the next run classifies)."""
    current = and_(Prediction.id.is_not(None), Prediction.created_at >= Document.updated_at)
    stmt = (select(func.count().filter(current, Prediction.error.is_(None)),
                   func.count().filter(current, Prediction.error.is_not(None)),
                   func.count().filter(~current))
            .select_from(Document)
            .outerjoin(Prediction, and_(Prediction.document_id == Document.id,
                                        Prediction.model_version_id == model_version_id))
            .where(Document.collection == collection))
    classified, failed, waiting = session.execute(stmt).one()
    return {"classified": classified or 0, "failed": failed or 0, "waiting": waiting or 0}


def failures_page(session: Session, collection: str, model_version_id: int, *, after: int | None = None,
                  limit: int = 20) -> list[tuple[Document, Prediction]]:
    """The version's failure rows in the collection, in document order after ``after``."""
    stmt = (select(Document, Prediction).join(Prediction, Prediction.document_id == Document.id)
            .where(Document.collection == collection, Prediction.model_version_id == model_version_id,
                   Prediction.error.is_not(None))
            .order_by(Document.id).limit(limit))
    if after is not None:
        stmt = stmt.where(Document.id > after)
    return [(d, p) for d, p in session.execute(stmt)]
