"""Job parameters, validated before anything is enqueued and again when a worker reads them."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.errors import InvalidJob
from worker.ml.config import TrainConfig
from worker.ml.errors import InvalidTrainingData

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def check_filter(where: Any) -> dict[str, Any] | None:
    """Validate a document filter (see db.repo.document_filter) before anything is enqueued."""
    if where is None:
        return None
    if not isinstance(where, dict):
        raise InvalidJob(f"filter must be an object, got {where!r}")
    from db.repo import document_filter

    try:
        document_filter(where)
    except ValueError as exc:
        raise InvalidJob(str(exc)) from exc
    return where


def check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidJob(f"{kind} must be 1-200 letters, digits, '.', '_' or '-', got {value!r}")
    return value


class _JsonParams:
    """Parameters stored as the job's JSON: built from it with a clear error, written back as a dict."""

    kind = "job"

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidJob(f"bad {cls.kind} parameters: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainParams(_JsonParams):
    kind = "training"
    collection: str
    base_model: str
    model_name: str
    options: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields other than base_model
    skip_unlabelled: bool = False
    filter: dict[str, Any] | None = None  # which documents of the collection (db.repo.document_filter)

    def __post_init__(self) -> None:
        check_name("collection", self.collection)
        check_filter(self.filter)
        check_name("model name", self.model_name)
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise InvalidJob("base_model must be a hub name or a local path")
        if "base_model" in self.options:
            raise InvalidJob("give base_model once, not in options")
        self.train_config()

    def train_config(self) -> TrainConfig:
        try:
            return TrainConfig.from_dict({"base_model": self.base_model, **self.options})
        except InvalidTrainingData as exc:
            raise InvalidJob(str(exc)) from exc



@dataclass(frozen=True)
class ClassifyParams(_JsonParams):
    kind = "classification"
    collection: str
    model: str  # name, name:VERSION or name@ALIAS
    only_missing: bool = True  # skip documents this model version already classified
    shards: int | None = None  # split into this many jobs; None: one per BERTJOBS_CLASSIFY_SHARD_SIZE documents
    id_min: int | None = None  # set on a shard: its document id range, inclusive
    id_max: int | None = None
    filter: dict[str, Any] | None = None  # which documents of the collection (db.repo.document_filter)

    @property
    def is_shard(self) -> bool:
        return self.id_min is not None

    def __post_init__(self) -> None:
        check_name("collection", self.collection)
        check_filter(self.filter)
        if self.shards is not None and (not isinstance(self.shards, int) or isinstance(self.shards, bool)
                                        or not 1 <= self.shards <= 1024):
            raise InvalidJob(f"shards must be a whole number from 1 to 1024, got {self.shards!r}")
        if (self.id_min is None) != (self.id_max is None) or (
                self.id_min is not None and not (isinstance(self.id_min, int) and isinstance(self.id_max, int)
                                                 and self.id_min <= self.id_max)):
            raise InvalidJob("id_min and id_max go together, as whole numbers with id_min <= id_max")
        name, _, selector = self.model.replace("@", ":").partition(":")
        check_name("model name", name)
        if ":" in self.model and not selector.isdigit():
            raise InvalidJob(f"model version must be a number: {self.model!r}")



@dataclass(frozen=True)
class EvaluateParams(_JsonParams):
    kind = "evaluation"
    collection: str  # a labelled collection (label, or label sets for a multi-label model)
    model: str  # name, name:VERSION or name@ALIAS
    filter: dict[str, Any] | None = None  # which documents of the collection (db.repo.document_filter)

    def __post_init__(self) -> None:
        check_name("collection", self.collection)
        check_filter(self.filter)
        if not isinstance(self.model, str):
            raise InvalidJob(f"model must be NAME, NAME:VERSION or NAME@ALIAS, got {self.model!r}")
        name, _, selector = self.model.replace("@", ":").partition(":")
        check_name("model name", name)
        if ":" in self.model and not selector.isdigit():
            raise InvalidJob(f"model version must be a number: {self.model!r}")
