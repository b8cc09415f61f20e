"""Settings: the only module that reads the environment (prefix ``BERTJOBS_``); outside the code that runs,
migrations/env.py reads BERTJOBS_DATABASE_URL for an ``alembic`` command run by hand."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from db.session import normalise_database_url
from worker.ml.engine import ENGINES, INSTALL_HINT, openvino_available

DEFAULT_DATA_DIR = Path("bertjobs-data")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BERTJOBS_", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the embedded SQLite file and the model store live by default.")
    database_url: str = Field("", description="SQLAlchemy URL of the system of record; empty means a SQLite file in data_dir.")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    result_backend: str = Field("", description="Celery result backend for progress states; default: the broker.")
    model_store: Path | None = Field(None, description="Folder of trained model artifacts; default data_dir/models.")

    lease_seconds: int = Field(300, ge=2, description="How long a claim lasts without a heartbeat.")
    heartbeat_seconds: float = Field(30.0, gt=0, description="How often a running job renews its lease and reads cancellation.")
    max_attempts: int = Field(3, ge=1, description="Claims a job gets before it is dead.")
    retry_delay_seconds: float = Field(10.0, ge=0, description="Wait before re-running a job after an unexpected error.")
    visibility_timeout: int = Field(49 * 3600, ge=1, description="Redis visibility timeout, above the longest task.")
    task_time_limit_seconds: int = Field(48 * 3600, ge=60, description="Hard limit: a task running longer is killed.")
    reaper_interval_seconds: float = Field(60.0, gt=0, description="How often celery beat runs the reaper.")
    republish_after_seconds: int = Field(300, ge=1, description="A job queued this long untouched is published again.")

    nightly_model: str = Field("", description="Model name the nightly run classifies with (its nightly_alias version).")
    nightly_alias: str = Field("production", description="Alias of the model the nightly run uses.")
    # NoDecode: the environment gives the README's comma-separated form, not JSON (a JSON list still works).
    nightly_collections: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Collections the nightly run classifies.")
    nightly_time: str = Field("02:00", description="When beat starts the nightly run, HH:MM in UTC.")

    # Comma-separated, as nightly_collections. Enforced at submit and by workers (a job row is SQL anyone may write).
    allowed_base_models: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Base models a training job may name: folder prefixes (absolute paths) and hub id prefixes "
        "('org/' or an exact id); empty: any."))

    max_text_chars: int = Field(100_000, ge=1, description="Longest document text accepted on import and classified.")
    classify_chunk_size: int = Field(512, ge=1, description="Documents per page of a classification job: read, "
                                     "classified and committed together with the job's progress.")
    classify_shard_size: int = Field(100_000, ge=1, description="A bulk job over more documents splits into shards of this size.")
    classify_batch_size: int = Field(64, ge=1, description="A token budget, not a count of texts: one forward pass "
                                     "(a batch) holds up to this many 32-token texts' worth of padded tokens, so "
                                     "more short texts or fewer long ones.")
    classify_pipeline: bool = Field(True, description="on: a bulk job reads and tokenizes the next pages and commits "
                                                      "finished ones while the model runs; off: one stage at a time.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    train_processes: int = Field(0, ge=0, le=64, description="Processes one training job runs on "
                                 "(DistributedDataParallel, one per GPU): 0 = every GPU this worker sees when "
                                 "training runs on CUDA, else 1; N = N (on the CPU: gloo processes, for testing).")
    classify_precision: str = Field("auto", description="auto, fp32, bf16, fp16 or int8 (CPU, opt-in) for bulk jobs.")
    classify_engine: str = Field("torch", description="torch, openvino (CPU, the bertjobs[openvino] extra) or auto "
                                                      "(OpenVINO on the CPU where it is installed) for bulk jobs.")

    low_confidence_threshold: float = Field(0.6, gt=0, lt=1, description=(
        "The low_confidence_predictions view lists production predictions whose top score is below this; "
        "`bertjobs db upgrade` writes it where the view reads it (the view_settings table)."))
    drift_psi_threshold: float = Field(0.2, gt=0, description=(
        "`bertjobs drift` flags a run whose label shares moved this much (population-stability index) "
        "from the runs before it."))
    drift_baseline_runs: int = Field(7, ge=1, description=(
        "How many runs before a run its label shares are compared with (their mean shares)."))

    ui_host: str = Field("127.0.0.1", description="Address `bertjobs ui` binds to; any but loopback needs ui_token.")
    ui_port: int = Field(8000, ge=1, le=65535, description="Port of `bertjobs ui`.")
    ui_token: str = Field("", description="Token the web view asks for (required when it is not on loopback).")

    @field_validator("nightly_collections", "allowed_base_models", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            if value.strip().startswith("["):
                import json

                try:
                    return json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"expected names separated by commas, got {value!r}") from exc
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("classify_precision", "classify_engine")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        choices = {"classify_precision": PRECISIONS, "classify_engine": ENGINES}[info.field_name]
        value = value.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    @field_validator("nightly_time")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        hour, _, minute = value.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise ValueError(f"nightly_time must be HH:MM, got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_database_url(value.strip())

    @model_validator(mode="after")
    def _engine_runs_it(self) -> "Settings":
        if self.classify_engine == "openvino" and self.device.startswith("cuda"):
            raise ValueError(f"BERTJOBS_CLASSIFY_ENGINE: openvino runs on the CPU, but BERTJOBS_DEVICE is {self.device}")
        if self.classify_engine == "openvino" and self.classify_precision == "fp16":
            raise ValueError("BERTJOBS_CLASSIFY_ENGINE: openvino runs fp32, bf16 or int8, but BERTJOBS_CLASSIFY_PRECISION "
                             "is fp16")
        return self

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> "Settings":
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(f"BERTJOBS_HEARTBEAT_SECONDS ({self.heartbeat_seconds}) must be at most half of "
                             f"BERTJOBS_LEASE_SECONDS ({self.lease_seconds}), or leases expire between heartbeats")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bertjobs.db').as_posix()}"

    @property
    def resolved_model_store(self) -> Path:
        return self.model_store if self.model_store is not None else self.data_dir / "models"


class SettingsError(ValueError):
    """A setting from the environment is wrong; the message is one line naming the variable."""


def describe_validation_error(exc: ValidationError) -> str:
    """``BERTJOBS_X: what is wrong`` for the first problem (pydantic's own text is many lines)."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else ""
    message = str(err.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    text = f"BERTJOBS_{field.upper()}: {message}{more}" if field else f"{message}{more}"
    return " ".join(text.split())


def check_device(settings: Settings) -> None:
    """Refuse ``cuda`` on a host without CUDA. Called only by commands that will use the device;
    torch.cuda.is_available() and device_count() do not create a CUDA context."""
    if not settings.device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise SettingsError(f"BERTJOBS_DEVICE: {settings.device} was asked for, but this host has no usable CUDA")
    index = int(settings.device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise SettingsError(f"BERTJOBS_DEVICE: {settings.device} was asked for, but this host has "
                            f"{torch.cuda.device_count()} CUDA device(s)")


def check_engine(settings: Settings) -> None:
    """Refuse ``BERTJOBS_CLASSIFY_ENGINE=openvino`` where OpenVINO is not installed: at submit, before an inline
    run and when a worker starts, never in the middle of a job. (Nothing is imported to find out.)"""
    if settings.classify_engine == "openvino" and not openvino_available():
        raise SettingsError(f"BERTJOBS_CLASSIFY_ENGINE: openvino was asked for, but OpenVINO is not installed here "
                            f"({INSTALL_HINT})")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
