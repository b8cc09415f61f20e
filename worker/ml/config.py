"""Training hyperparameters: a dataclass with no heavy imports, so clients validate before enqueueing."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from worker.ml.errors import InvalidTrainingData

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # what _DEVICE accepts, for help texts and errors
SELECT_METRICS = ("macro_f1", "accuracy")
_INTS = ("epochs", "batch_size", "max_length", "seed", "gradient_accumulation", "early_stopping_patience",
         "window_overlap", "max_windows", "trials")
_FLOATS = ("learning_rate", "weight_decay", "warmup_ratio", "val_fraction")
_STRS = ("base_model", "device", "precision", "select_metric", "lr_schedule", "long_documents")
LR_SCHEDULES = ("linear", "cosine", "constant")
LONG_DOCUMENTS = ("truncate", "head_tail", "windows")
# head_tail: the share of a long text's model input taken from its start, the rest from its end (Sun et al. 2019's
# 128 + 382 of 512 tokens; worker/ml/head_tail.py). Recorded with the model version, so inference cuts the same way.
HEAD_FRACTION = 0.25
# How a windowed document's logits come from its windows' (worker/ml/longdocs.py). ``max`` is what windows use
# unless told otherwise: it scored best in bench/long_docs.py (bench/README.md, "Long documents").
WINDOW_POOLINGS = ("mean", "max", "confidence")
RECOMMENDED_POOLING = "max"
# Epochs when none are given: DEFAULT_EPOCHS, or more where that many passes over a small training split would take
# fewer than MIN_STEPS optimizer steps, at most MAX_AUTO_EPOCHS (the validation split still picks the epoch kept).
# Three epochs of 717 documents are 69 steps: on the 2016 debates (bench/quality.py --corpus debates) they left
# the model under TF-IDF+LR (validation macro-F1 0.44 against 0.73), where ten epochs reached 0.72 by the sixth;
# on the test split ten scored 0.72-0.76 in three seeds (a plain Trainer's three: 0.61-0.64), seven 0.68-0.72.
# Sets of about 3,300 documents and more (at batch 32 and a 20% validation split) keep three.
DEFAULT_EPOCHS = 3
MIN_STEPS = 250
MAX_AUTO_EPOCHS = 10
# What a hyperparameter search may vary, and the values it draws from by default.
SEARCH_SPACE = {
    "learning_rate": [2e-5, 3e-5, 5e-5, 1e-4],
    "epochs": [2, 3, 4],
    "batch_size": [16, 32],
    "warmup_ratio": [0.0, 0.06, 0.1],
}


def _type_problems(config: "TrainConfig") -> list[str]:
    problems = []
    for name in _INTS:
        value = getattr(config, name)
        if name == "epochs" and value is None:  # unset: resolved from the set's size (TrainConfig.for_documents)
            continue
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
    for name in ("multi_label", "refit"):
        if not isinstance(getattr(config, name), bool):
            problems.append(f"{name} must be true or false, got {getattr(config, name)!r}")
    return problems


def _class_weight_problems(weights) -> list[str]:
    if weights is None or weights == "auto":
        return []
    if not isinstance(weights, dict) or not weights:
        return [f"class_weights must be null, \"auto\" or an object of label -> weight, got {weights!r}"]
    bad = [k for k, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float))
           or not math.isfinite(w) or w <= 0]
    return [f"class weights must be positive numbers: {', '.join(map(repr, bad[:5]))}"] if bad else []


def _search_space_problems(space) -> list[str]:
    if space is None:
        return []
    if not isinstance(space, dict) or not space:
        return ["search_space must be an object of option -> list of values"]
    problems = []
    for name, values in space.items():
        if name not in SEARCH_SPACE:
            problems.append(f"search_space may vary {', '.join(SEARCH_SPACE)}, not {name!r}")
        elif not isinstance(values, list) or not values:
            problems.append(f"search_space[{name!r}] must be a non-empty list")
        elif len(values) > 20:
            problems.append(f"search_space[{name!r}] may hold 20 values at most")
    return problems


def _window_problems(config: "TrainConfig") -> list[str]:
    """Pooling and per-epoch sampling: valid values, and only with windows (truncation has one input each)."""
    problems = []
    pooling, per_epoch, windows = config.window_pooling, config.windows_per_epoch, config.long_documents == "windows"
    if pooling is not None and pooling not in WINDOW_POOLINGS:
        problems.append(f"window_pooling must be one of {', '.join(WINDOW_POOLINGS)}, got {pooling!r}")
    elif pooling is not None and not windows:
        problems.append("window_pooling applies to long_documents windows only; add --long-documents windows")
    if per_epoch != "all" and (isinstance(per_epoch, bool) or not isinstance(per_epoch, int) or per_epoch < 1):
        problems.append(f"windows_per_epoch must be \"all\" or a whole number of at least 1, got {per_epoch!r}")
    elif per_epoch != "all" and not windows:
        problems.append("windows_per_epoch applies to long_documents windows only; add --long-documents windows")
    return problems


@dataclass
class TrainConfig:
    """Hyperparameters. Defaults follow the usual BERT fine-tuning recipe."""

    base_model: str
    epochs: int | None = None  # None: DEFAULT_EPOCHS, more for small sets (for_documents)
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
    gradient_accumulation: int = 1  # optimizer step every N batches (effective batch = batch_size * N)
    lr_schedule: str = "linear"  # after the warm-up: linear decay, cosine decay or constant
    early_stopping_patience: int = 0  # stop after N epochs without a better select_metric; 0: never
    class_weights: str | dict[str, float] | None = None  # None, "auto" (inverse class frequency) or {label: w}
    # "truncate": the first max_length tokens; "head_tail": the first quarter and the last three quarters of them
    # (one input per document, as truncate); "windows": overlapping max_length windows, their logits pooled
    long_documents: str = "truncate"
    window_overlap: int = 32  # tokens shared by consecutive windows
    max_windows: int = 16  # windows per document at most (the rest of a very long text is not read)
    window_pooling: str | None = None  # windows only: mean, max or confidence; None: RECOMMENDED_POOLING
    windows_per_epoch: int | str = "all"  # windows only: train on N random windows per document per epoch
    trials: int = 0  # hyperparameter search: this many trials; 0: train once with these options
    search_space: dict[str, list] | None = None  # option -> candidate values; None: SEARCH_SPACE
    multi_label: bool = False  # documents carry label sets: sigmoid head, a tuned threshold per label
    # After the epoch choice on validation, train again on all labelled documents (training + validation) for the
    # chosen number of epochs and keep that model (worker/ml/refit.py); the recorded
    # scores stay the selection run's. Unset (None): on for single-label, where it paid in test accuracy
    # (bench/README.md, Quality); off for multi-label, whose thresholds are tuned on the selection run's model and
    # did not carry over (tests/test_jobs.py's topics: macro-F1 0.78 refitted, where the selection model passes 0.85).
    refit: bool | None = None

    def __post_init__(self) -> None:
        if self.refit is None:
            self.refit = not self.multi_label

    def validate(self) -> None:
        problems = _type_problems(self)
        if problems:  # ranges only make sense once the types are right
            raise InvalidTrainingData("; ".join(problems))
        if self.epochs is not None and self.epochs < 1:
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
        if self.select_metric not in SELECT_METRICS:
            problems.append(f"select_metric must be {' or '.join(SELECT_METRICS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}")
        if not _DEVICE.match(self.device):
            problems.append("device must be auto, cpu, cuda or cuda:N")
        if not 1 <= self.gradient_accumulation <= 1024:
            problems.append("gradient_accumulation must be between 1 and 1024")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.early_stopping_patience < 0:
            problems.append("early_stopping_patience must be 0 (off) or more")
        problems.extend(_class_weight_problems(self.class_weights))
        if self.long_documents not in LONG_DOCUMENTS:
            problems.append(f"long_documents must be one of {', '.join(LONG_DOCUMENTS)}")
        if self.long_documents == "windows" and not 0 <= self.window_overlap <= self.max_length // 2:
            problems.append("window_overlap must be between 0 and half of max_length")
        if not 1 <= self.max_windows <= 256:
            problems.append("max_windows must be between 1 and 256")
        problems.extend(_window_problems(self))
        if not 0 <= self.trials <= 100:
            problems.append("trials must be between 0 and 100")
        problems.extend(_search_space_problems(self.search_space))
        if problems:
            raise InvalidTrainingData("; ".join(problems))
        if self.trials:
            self.trial_configs()

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

    def for_documents(self, documents: int) -> "TrainConfig":
        """This configuration with its epochs decided for a set of ``documents`` labelled documents: as given, or
        (unset) DEFAULT_EPOCHS, raised to reach MIN_STEPS optimizer steps on the training split, at most
        MAX_AUTO_EPOCHS."""
        if self.epochs is not None:
            return self
        steps = self.steps_per_epoch(documents)
        return replace(self, epochs=min(MAX_AUTO_EPOCHS, max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / steps))))

    def steps_per_epoch(self, documents: int) -> int:
        """Optimizer steps in one pass over the training split of ``documents`` labelled documents, counted as the
        training loop counts them (a short last accumulation group steps too); an estimate: the split's exact size,
        or windows, may add a few."""
        train = max(1, round(documents * (1 - self.val_fraction)))
        return math.ceil(math.ceil(train / self.batch_size) / self.gradient_accumulation)

    def trial_configs(self) -> list["TrainConfig"]:
        """The configurations a search tries: ``trials`` distinct draws from the space, seeded by ``seed``.

        Each is validated now, so a bad value in the space fails before the job is enqueued."""
        import itertools
        import random

        space = {name: list(dict.fromkeys(values)) for name, values in (self.search_space or SEARCH_SPACE).items()}
        grid = [dict(zip(space, values)) for values in itertools.product(*space.values())]  # 20**4 at most
        random.Random(self.seed).shuffle(grid)
        configs = []
        for values in grid[: self.trials]:
            config = replace(self, trials=0, search_space=None, **values)
            config.validate()
            configs.append(config)
        return configs

    def window_settings(self) -> dict[str, Any]:
        """What inference must repeat to match training (stored with the model version): how texts become
        model inputs (with head_tail, the head's share) and, with windows, how a document's logits are pooled from
        its windows'."""
        settings = {"long_documents": self.long_documents, "window_overlap": self.window_overlap,
                    "max_windows": self.max_windows}
        if self.long_documents == "head_tail":
            settings["head_fraction"] = HEAD_FRACTION
        if self.long_documents == "windows":
            settings["pooling"] = self.window_pooling or RECOMMENDED_POOLING
        return settings

    @property
    def sampled_windows(self) -> int | None:
        """Windows per document that train in an epoch (``windows_per_epoch``), or None: all of them."""
        if self.long_documents != "windows" or self.windows_per_epoch == "all":
            return None
        return self.windows_per_epoch
