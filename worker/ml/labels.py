"""Label maps: sorted string labels, ids in that order (the rule transformers' examples follow)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class LabelMap:
    labels: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "LabelMap":
        return cls(tuple(sorted({str(label) for label in labels})))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def encode(self, labels: Iterable[str]) -> list[int]:
        index = self.label2id
        return [index[str(label)] for label in labels]

    def __len__(self) -> int:
        return len(self.labels)
