"""Refusals before any model is loaded: a training set that cannot train a classifier, a base model not found."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from worker.ml.errors import InvalidTrainingData, ModelNotFound
from worker.ml.hf import quiet_transformers


def validate_training_set(texts: Sequence[str], labels: Sequence[str | None]) -> None:
    """Refuse, before any model is loaded, a set that cannot train and validate a classifier."""
    if len(texts) != len(labels):
        raise InvalidTrainingData(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise InvalidTrainingData("no labelled documents to train on")
    missing = sum(1 for label in labels if label is None or str(label).strip() == "")
    if missing:
        raise InvalidTrainingData(f"{missing} of {len(labels)} documents have no label")
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts))
        raise InvalidTrainingData(f"only one class ({only!r}) in {len(texts)} documents; need at least two")
    single = sorted(label for label, n in counts.items() if n < 2)
    if single:
        raise InvalidTrainingData(
            f"class{'es' if len(single) > 1 else ''} with a single example cannot be split for validation: "
            + ", ".join(repr(s) for s in single[:10])
        )


def validate_multilabel_set(texts: Sequence[str], label_sets: Sequence[Sequence[str]]) -> None:
    """Multi-label sets: every document has at least one label, every label at least two documents."""
    if len(texts) != len(label_sets):
        raise InvalidTrainingData(f"{len(texts)} texts but {len(label_sets)} label sets")
    if not texts:
        raise InvalidTrainingData("no labelled documents to train on")
    if any(isinstance(s, str) or not s for s in label_sets):
        raise InvalidTrainingData("a multi-label training set needs a non-empty list of labels per document")
    counts = Counter(label for s in label_sets for label in set(s))
    if len(counts) < 2:
        raise InvalidTrainingData(f"only {len(counts)} distinct label in {len(texts)} documents; need at least two")
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise InvalidTrainingData("labels on a single document cannot be validated: "
                                  + ", ".join(repr(s) for s in rare[:10]))


def check_base_model(name_or_path: str) -> None:
    """Fail fast when the base model cannot be found (a missing folder, an unknown hub name, offline)."""
    from transformers import AutoConfig

    quiet_transformers()
    local = Path(name_or_path).expanduser()
    if local.exists() or name_or_path.startswith((".", "/", "~")):
        if not (local / "config.json").is_file():
            raise ModelNotFound(f"base model folder {name_or_path!r} does not exist or has no config.json")
        return
    try:
        AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        reason = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else "not found locally or on the Hugging Face hub"
        raise ModelNotFound(f"base model {name_or_path!r}: {reason}") from exc
