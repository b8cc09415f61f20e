"""Training hyperparameters: a dataclass with no heavy imports, so clients validate before enqueueing."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from worker.ml.errors import InvalidTrainingData


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
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if not 0 < self.learning_rate < 1:
            problems.append("learning_rate must be between 0 and 1")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.weight_decay < 0:
            problems.append("weight_decay must be >= 0")
        if not 8 <= self.max_length <= 8192:
            problems.append("max_length must be between 8 and 8192")
        if not 0 < self.val_fraction < 1:
            problems.append("val_fraction must be between 0 and 1")
        if self.select_metric not in {"macro_f1", "accuracy"}:
            problems.append("select_metric must be macro_f1 or accuracy")
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
