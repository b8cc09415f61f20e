"""A stratified train/validation split that is the same for the same seed."""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from worker.ml.text import normalise


def stratified_split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, validation); every class with two or more rows keeps at least one on each side."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        idx = by_class[label]
        rng.shuffle(idx)
        n_val = round(len(idx) * val_fraction)
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) >= 2 else 0
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return sorted(train), sorted(val)


def strata(labels: Sequence) -> list[str]:
    """The key a split stratifies on: the label, or for multi-label documents the sorted label set."""
    return [label if isinstance(label, str) or label is None else "|".join(sorted(set(label))) for label in labels]


def split_without_leaks(texts: Sequence[str], labels: Sequence[str], val_fraction: float,
                        seed: int) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, removed): the stratified split, less the validation texts that (near-exactly) also
    appear in training. Scoring a model on texts it trained on would flatter it."""
    train, val = stratified_split(labels, val_fraction, seed)
    removed = leaking_validation(texts, train, val)
    gone = set(removed)
    return train, [i for i in val if i not in gone], removed


def leaking_validation(texts: Sequence[str], train_idx: Sequence[int], val_idx: Sequence[int]) -> list[int]:
    """Validation indices whose text (near-exactly) also appears in training: they would inflate the score."""
    seen = {normalise(texts[i]) for i in train_idx}
    return [i for i in val_idx if normalise(texts[i]) in seen]
