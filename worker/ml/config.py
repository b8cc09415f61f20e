"""Training hyperparameters: a dataclass with no heavy imports, so clients validate before enqueueing."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from worker.ml.errors import InvalidTrainingData

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_INTS = ("epochs", "batch_size", "max_length", "seed")
_FLOATS = ("learning_rate", "weight_decay", "warmup_ratio", "val_fraction")
_STRS = ("base_model", "device", "precision", "select_metric")


def _type_problems(config: "TrainConfig") -> list[str]:
    problems = []
    for name in _INTS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name} must be an integer, got {value!r}")
    for name in _FLOATS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{name} must be a finite number, got {value!r}")
    for name in _STRS:
        value = getattr(config, name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{name} must be a non-empty string, got {value!r}")
    return problems


@dataclass
class TrainConfig:
    """Hyperparameters. Defaults follow the usual BERT fine-tuning recipe."""

    base_model: str
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 128
    val_fraction: float = 0.2
    seed: int = 42
    device: str = "auto"
    precision: str = "auto"
    select_metric: str = "macro_f1"

    def validate(self) -> None:
        problems = _type_problems(self)
        if problems:  # ranges only make sense once the types are right
            raise InvalidTrainingData("; ".join(problems))
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if not 0 < self.learning_rate < 1:
            problems.append("learning_rate must be between 0 and 1")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if not 0 <= self.weight_decay < 1:
            problems.append("weight_decay must be in [0, 1)")
        if not 8 <= self.max_length <= 8192:
            problems.append("max_length must be between 8 and 8192")
        if not 0 < self.val_fraction < 1:
            problems.append("val_fraction must be between 0 and 1")
        if self.select_metric not in {"macro_f1", "accuracy"}:
            problems.append("select_metric must be macro_f1 or accuracy")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        if not _DEVICE.match(self.device):
            problems.append("device must be auto, cpu, cuda or cuda:N")
        if problems:
            raise InvalidTrainingData("; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidTrainingData(f"unknown training option(s): {', '.join(unknown)}")
        try:
            config = cls(**values)
        except TypeError as exc:
            raise InvalidTrainingData(str(exc)) from exc
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
