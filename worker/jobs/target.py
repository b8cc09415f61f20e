"""The model version a job runs: resolved from a reference (``name:3``, ``name@production``, ``name``) inside a
session, and loaded as the classifier a bulk job uses (cached per process by worker/ml/loader.py).

Evaluation, `bertjobs models quantize`, `models compare`, the gated promote and ``client.predict`` share it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db import repo
from worker.config import Settings
from worker.errors import InvalidJob


@dataclass(frozen=True)
class Target:
    """What a job needs of a model version, read inside a session and usable after it closes."""

    id: int
    ref: str
    labels: list[str]
    path: str
    sha256: str
    # Where the version's training data came from (its lineage): evaluated texts found there are counted apart.
    training_collection: str | None = None
    training_filter: dict[str, Any] | None = None

    @classmethod
    def of(cls, mv) -> "Target":
        lineage = mv.lineage or {}
        return cls(mv.id, mv.ref, list(mv.labels), mv.artifact_path, mv.artifact_sha256, lineage.get("collection"),
                   lineage.get("filter"))


def resolve(session: Session, ref: str) -> Target:
    """The ready model version ``ref`` names; InvalidJob (one line) when none does."""
    mv = repo.resolve_model_version(session, ref)
    if mv is None:
        raise InvalidJob(f"no ready model version matches {ref!r}")
    return Target.of(mv)


def load_for(target: Target, settings: Settings):
    """The classifier a bulk job would use for this version (cached per process)."""
    from worker.ml.loader import load_classifier

    return load_classifier(target.path, sha256=target.sha256, device=settings.device,
                           precision=settings.classify_precision, engine=settings.classify_engine)
