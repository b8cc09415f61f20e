"""SQLAlchemy 2 typed models: the system of record for documents, jobs, model versions and predictions."""
from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.names import format_model_ref

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
# The same column type, but Python None is SQL NULL rather than a JSON null (so `IS NULL` means "no value").
NullableJSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobKind(str, enum.Enum):
    train = "train"
    classify = "classify"
    evaluate = "evaluate"


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    dead = "dead"


FINISHED_STATUSES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.dead)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection", "external_id"),
        # Keyset pagination walks a collection in id order.
        Index("ix_documents_collection_id", "collection", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    collection: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(200))
    # The label set of a multi-label document (sorted, no duplicates); `label` stays NULL then. NULL: none.
    labels: Mapped[list[str] | None] = mapped_column(NullableJSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 server_default=func.now())


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.queued.value, server_default="queued",
                                        index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, server_default=text("'{}'"))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # A shard of a bulk classification points at the job that split it; the parent finishes with its last shard.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    progress_done: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    cursor: Mapped[int | None] = mapped_column(BigInteger)
    # The attempt budget counts attempts without progress: progress_mark moves with every durable step (a
    # committed page, a recorded checkpoint); an attempt that ends (an error, a lost worker) without moving it
    # adds one to attempts_without_progress, one that moved it sets it to 0; the job is dead at max_attempts.
    progress_mark: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    progress_mark_at_claim: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    attempts_without_progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 server_default=func.now())


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="ready")
    artifact_path: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSONType)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    training_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())

    @property
    def ref(self) -> str:
        """``name:version``, the reference that names this version and no other."""
        return format_model_ref(self.name, self.version)


class ModelAlias(Base):
    """A movable name (``production``, ``staging``) pointing at one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("name", "alias"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str] = mapped_column(String(100))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    # What the alias pointed at before its last move: `bertjobs models rollback` goes back to it.
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 server_default=func.now())


class ModelAliasHistory(Base):
    """Every move of an alias: where it pointed from and to, when, by which command and whom. Rollbacks step
    back through it (promotions push a holder, rollbacks pop one)."""

    __tablename__ = "model_alias_history"
    __table_args__ = (Index("ix_model_alias_history_name_alias_id", "name", "alias", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str] = mapped_column(String(100))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    command: Mapped[str] = mapped_column(String(50))  # promote, promote --gate, rollback, migrated
    actor: Mapped[str | None] = mapped_column(String(200))  # user@host
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())


class Prediction(Base):
    """One row per (document, model version): a label with scores, or a failure with its reason."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("document_id", "model_version_id"),
        # Label counts per model version and low-confidence lists stay index scans at millions of rows.
        Index("ix_predictions_model_version_id_label", "model_version_id", "label"),
        Index("ix_predictions_model_version_id_score", "model_version_id", "score"),
        # What one job wrote: its label shares when it finishes (ClassificationRun), deleting a job (SET NULL).
        Index("ix_predictions_job_id", "job_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    # Every label a multi-label model predicted above its threshold (NULL for a single-label model).
    labels: Mapped[list[str] | None] = mapped_column(NullableJSONType)
    score: Mapped[float | None] = mapped_column(Float)
    scores: Mapped[dict[str, float] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())


class Evaluation(Base):
    """A model version's metrics on a labelled collection, as classified at ``created_at``."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    collection: Mapped[str] = mapped_column(String(200))
    filter: Mapped[dict[str, Any] | None] = mapped_column(NullableJSONType)
    content_sha256: Mapped[str] = mapped_column(String(64))
    documents: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)
    macro_f1: Mapped[float] = mapped_column(Float)
    baseline_accuracy: Mapped[float] = mapped_column(Float)
    baseline_macro_f1: Mapped[float] = mapped_column(Float)
    # per_class, confusion_matrix (single-label), labels, thresholds (multi-label), baseline, failed, unlabelled.
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())


class ClassificationRun(Base):
    """What a classification job that succeeded wrote, counted when it finished (one row per job a user started:
    a sharded job's row sums its shards). ``label_drift`` (a view) and ``bertjobs drift`` read it."""

    __tablename__ = "classification_runs"
    __table_args__ = (Index("ix_classification_runs_collection_finished_at", "collection", "finished_at"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True,
                                        autoincrement=False)
    collection: Mapped[str] = mapped_column(String(200))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    only_missing: Mapped[bool] = mapped_column(Boolean)  # only documents without a current prediction (new, changed)
    filter: Mapped[dict[str, Any] | None] = mapped_column(NullableJSONType)  # the job's document filter, if any
    classified: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    mean_score: Mapped[float | None] = mapped_column(Float)  # mean top score of the classified documents
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClassificationRunLabel(Base):
    """A run's classified documents by predicted label (NULL: a multi-label model gave none)."""

    __tablename__ = "classification_run_labels"
    __table_args__ = (UniqueConstraint("job_id", "label"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("classification_runs.job_id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    documents: Mapped[int] = mapped_column(BigInteger)
    mean_score: Mapped[float | None] = mapped_column(Float)


class ViewSettings(Base):
    """One row of settings the SQL views read (``bertjobs db upgrade`` writes it from the environment)."""

    __tablename__ = "view_settings"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    low_confidence_threshold: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow,
                                                 server_default=func.now())
