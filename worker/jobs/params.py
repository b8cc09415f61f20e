"""Job parameters, validated before anything is enqueued and again when a worker reads them."""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from worker.errors import InvalidJob
from worker.ml.config import TrainConfig
from worker.ml.errors import InvalidTrainingData
from db.names import check_name, parse_model_ref


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


def looks_local(base_model: str) -> bool:
    """A base model given as a path (not a hub id): starts with '/', '.' or '~', or exists on disk."""
    return base_model.startswith(("/", ".", "~")) or Path(base_model).expanduser().exists()


def check_local_base_model(base_model: str) -> None:
    """A local base model must be a folder with config.json and weights; a hub id is left to the worker."""
    if not looks_local(base_model):
        return
    folder = Path(base_model).expanduser()
    if not folder.is_dir():
        raise InvalidJob(f"base model folder {base_model!r} does not exist")
    if not (folder / "config.json").is_file():
        raise InvalidJob(f"base model folder {base_model!r} has no config.json")
    if not (any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))):
        raise InvalidJob(f"base model folder {base_model!r} has no weights (*.safetensors or pytorch_model.bin)")


MAX_DESCRIPTION = 2000


def check_description(description: Any, tags: Any) -> None:
    """A description is text (at most MAX_DESCRIPTION characters); tags map short keys to text values."""
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise InvalidJob(f"description must be text of at most {MAX_DESCRIPTION} characters")
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidJob("tags must map keys to text values (--tag key=value)")
    bad = [k for k in tags if not k.strip() or len(k) > 64 or "=" in k]
    if bad:
        raise InvalidJob(f"bad tag key {bad[0]!r}: 1 to 64 characters without '='")


def check_allowed_base_model(base_model: str, allowed: list[str]) -> None:
    """With an allow-list (BERTJOBS_ALLOWED_BASE_MODELS), a base model must be a folder under one of its folders
    or a hub id under one of its hub prefixes ('org/' prefixes, or an exact id)."""
    if not allowed or _allowed(base_model, allowed):
        return
    raise InvalidJob(f"base model {base_model!r} is not allowed here; BERTJOBS_ALLOWED_BASE_MODELS allows "
                     f"{', '.join(allowed)}")


def _allowed(base_model: str, allowed: list[str]) -> bool:
    if looks_local(base_model):
        folder = Path(base_model).expanduser().resolve()
        return any(folder.is_relative_to(Path(p).expanduser().resolve()) for p in allowed if looks_local(p))
    hub = [p for p in allowed if not looks_local(p)]
    return any(base_model.startswith(p) if p.endswith("/") else base_model in (p,) or base_model.startswith(p + "/")
               for p in hub)


class _JsonParams:
    """Parameters stored as the job's JSON: built from it with a clear error, written back as a dict."""

    kind = "job"

    @classmethod
    def from_dict(cls, values: Any):
        """Build from a job row's JSON; anything unreadable (not an object, unknown or missing keys) is InvalidJob."""
        if not isinstance(values, dict):
            raise InvalidJob(f"{cls.kind} parameters must be a JSON object, got {values!r:.100}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in values if k not in names)
        if unknown:
            raise InvalidJob(f"unknown {cls.kind} parameter(s) {', '.join(unknown)}; valid keys: {', '.join(names)}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [n for n in required if n not in values]
        if missing:
            raise InvalidJob(f"missing {cls.kind} parameter(s) {', '.join(missing)}; valid keys: {', '.join(names)}")
        try:
            return cls(**values)
        except (TypeError, AttributeError) as exc:  # a value of the wrong type
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
    description: str | None = None  # what the model is for: stored in the model version's lineage
    tags: dict[str, str] = field(default_factory=dict)  # key -> value, stored beside the description

    def __post_init__(self) -> None:
        check_name("collection", self.collection)
        check_filter(self.filter)
        check_name("model name", self.model_name)
        check_description(self.description, self.tags)
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
    requested_model: str | None = None  # the reference given at submit (``model`` is pinned to NAME:VERSION)

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
        parse_model_ref(self.model)



@dataclass(frozen=True)
class EvaluateParams(_JsonParams):
    kind = "evaluation"
    collection: str  # a labelled collection (label, or label sets for a multi-label model)
    model: str  # name, name:VERSION or name@ALIAS
    filter: dict[str, Any] | None = None  # which documents of the collection (db.repo.document_filter)
    requested_model: str | None = None  # the reference given at submit (``model`` is pinned to NAME:VERSION)

    def __post_init__(self) -> None:
        check_name("collection", self.collection)
        check_filter(self.filter)
        parse_model_ref(self.model)
