"""Long documents read as windows: pooling window logits into document logits, sampling training windows.
(Head+tail truncation, one model input per document, is worker/ml/head_tail.py.)

- ``pool_logits``: a document's logits from its windows' logits: ``mean`` (what ``average_by_owner`` does),
  ``max`` (per label, the largest window logit: one decisive passage is enough) or ``confidence`` (a mean
  weighted by each window's confidence: its top softmax probability, or for multi-label models how far its
  sigmoids are from 0.5 on average; undecided windows count less). Training's validation and every predictor
  pool the way the model version records (``TrainConfig.window_pooling``).
- ``sample_windows``: which windows train in an epoch when only ``k`` per document do
  (``TrainConfig.windows_per_epoch``), so an epoch of windows costs about ``k`` epochs of truncation while every
  part of a document is seen over the epochs.

A learned attention over windows is not here: it needs a document's windows in one batch, a new head whose
weights live outside the Hugging Face model, and a training loop over documents instead of inputs.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from worker.ml.batching import average_by_owner
from worker.ml.config import WINDOW_POOLINGS as POOLING


def reading(windows: dict | None) -> tuple[dict, str]:
    """A model version's recorded long-document settings (``TrainConfig.window_settings``) split into what ``encode``
    takes and the pooling; versions trained before pooling was recorded averaged their windows, and versions that
    record nothing truncated."""
    settings = dict(windows or {"long_documents": "truncate"})
    return settings, settings.pop("pooling", None) or "mean"


def pool_logits(logits: torch.Tensor, owners: Sequence[int], n: int, how: str = "mean",
                multi_label: bool = False) -> torch.Tensor:
    """(n, labels) document logits from (windows, labels) window logits; ``owners[i]`` is window i's
    document, every document has at least one window."""
    if how not in POOLING:
        raise ValueError(f"pooling must be one of {', '.join(POOLING)}")
    if how == "mean" or len(owners) == n:
        return average_by_owner(logits, owners, n)
    index = torch.as_tensor(owners, device=logits.device)
    if how == "max":
        out = torch.full((n, logits.shape[-1]), float("-inf"), dtype=logits.dtype, device=logits.device)
        return out.scatter_reduce_(0, index.unsqueeze(-1).expand_as(logits), logits, reduce="amax")
    if multi_label:
        weight = (2 * torch.sigmoid(logits.float()) - 1).abs().mean(dim=-1).clamp(min=1e-6).to(logits.dtype)
    else:
        weight = torch.softmax(logits.float(), dim=-1).max(dim=-1).values.to(logits.dtype)
    sums = torch.zeros((n, logits.shape[-1]), dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, index, logits * weight.unsqueeze(-1))
    total = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_add_(0, index, weight)
    return sums / total.unsqueeze(-1)


def sample_windows(owners: Sequence[int], k: int, rng: random.Random) -> list[int]:
    """Indices of the windows that train this epoch: ``k`` per document drawn without replacement (all of
    a document's windows when it has ``k`` or fewer), in window order."""
    if k < 1:
        raise ValueError("k must be at least 1")
    by_owner: dict[int, list[int]] = {}
    for i, owner in enumerate(owners):
        by_owner.setdefault(owner, []).append(i)
    chosen = []
    for owner in sorted(by_owner):
        windows = by_owner[owner]
        chosen.extend(windows if len(windows) <= k else rng.sample(windows, k))
    return sorted(chosen)
