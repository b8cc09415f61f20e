"""Calibrated scores: temperature scaling fitted on validation logits, expected calibration error, reliability bins.

Single-label: one temperature T for softmax(logits / T), the one that minimises the validation negative
log-likelihood (Guo et al. 2017). The NLL is convex in 1/T, so a golden-section search over log T finds it
to any precision, deterministically. Multi-label: a temperature per label for its sigmoid.

Everything takes logits and labels as lists or tensors and returns plain floats and lists (JSON-able).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

BINS = 15
T_RANGE = (0.05, 20.0)
_STEPS = 80  # golden-section steps: the bracket shrinks by 0.618 ** 80 (about 1e-17)


def _golden_minimum(f: Callable[[float], float], low: float, high: float) -> float:
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(_STEPS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2


def _matrix(values) -> torch.Tensor:
    z = torch.as_tensor(values, dtype=torch.float64)
    return z if z.ndim == 2 else z.reshape(len(z), -1) if z.numel() else z.reshape(0, 0)


def _tensors(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    return _matrix(logits), torch.as_tensor(labels, dtype=torch.long).reshape(-1)


def softmax_nll(logits, labels, temperature: float = 1.0) -> float:
    z, y = _tensors(logits, labels)
    if len(y) == 0:
        return 0.0
    return torch.nn.functional.cross_entropy(z / temperature, y).item()


def fit_temperature(logits, labels, bounds: tuple[float, float] = T_RANGE) -> float:
    """The temperature in ``bounds`` with the lowest softmax NLL on (logits, labels); 1.0 for no rows."""
    z, y = _tensors(logits, labels)
    if len(y) == 0:
        return 1.0
    nll = lambda log_t: torch.nn.functional.cross_entropy(z / math.exp(log_t), y).item()  # noqa: E731
    return math.exp(_golden_minimum(nll, math.log(bounds[0]), math.log(bounds[1])))


def reliability_bins(logits, labels, temperature: float = 1.0, bins: int = BINS) -> list[dict]:
    """Equal-width bins of the top score: {"low", "high", "count", "confidence", "accuracy"} each (the means
    of top score and of correctness in the bin; 0 for an empty bin). Bin i holds scores in (low, high]."""
    z, y = _tensors(logits, labels)
    probs = torch.softmax(z / temperature, dim=-1)
    top, predicted = probs.max(dim=-1) if len(y) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return _bins(top, (predicted == y).double(), bins)


def _bins(score: torch.Tensor, outcome: torch.Tensor, bins: int) -> list[dict]:
    index = (torch.ceil(score * bins).long() - 1).clamp(0, bins - 1)  # (i/bins, (i+1)/bins]; 0 joins bin 0
    out = []
    for i in range(bins):
        mask = index == i
        count = int(mask.sum())
        out.append({"low": i / bins, "high": (i + 1) / bins, "count": count,
                    "confidence": score[mask].mean().item() if count else 0.0,
                    "accuracy": outcome[mask].mean().item() if count else 0.0})
    return out


def ece_from_bins(bins: Sequence[dict]) -> float:
    """Expected calibration error: the count-weighted mean gap between confidence and accuracy."""
    total = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins) / total if total else 0.0


def expected_calibration_error(logits, labels, temperature: float = 1.0, bins: int = BINS) -> float:
    return ece_from_bins(reliability_bins(logits, labels, temperature, bins))


def calibrate(logits, labels, bins: int = BINS) -> dict:
    """Fit a temperature and report what it changes: what the trainer stores and the report draws.

    Measured on the same texts the temperature was fitted on, so "after" is a little optimistic."""
    t = fit_temperature(logits, labels)
    before, after = reliability_bins(logits, labels, 1.0, bins), reliability_bins(logits, labels, t, bins)
    return {"temperature": t, "ece_before": ece_from_bins(before), "ece_after": ece_from_bins(after),
            "nll_before": softmax_nll(logits, labels), "nll_after": softmax_nll(logits, labels, t),
            "bins_before": before, "bins_after": after}


def _sigmoid_parts(logits, y) -> tuple[torch.Tensor, torch.Tensor]:
    z = _matrix(logits)
    return z, _matrix(y).reshape(z.shape)


def fit_label_temperatures(logits, y, bounds: tuple[float, float] = T_RANGE, shared: bool = False) -> list[float]:
    """Multi-label: per label, the temperature with the lowest sigmoid NLL on that label's column (``shared``:
    one temperature for all labels, repeated)."""
    z, t = _sigmoid_parts(logits, y)
    if len(z) == 0:
        return [1.0] * z.shape[1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    span = math.log(bounds[0]), math.log(bounds[1])
    if shared:
        return [math.exp(_golden_minimum(lambda u: bce(z / math.exp(u), t).item(), *span))] * z.shape[1]
    return [math.exp(_golden_minimum(lambda u, j=j: bce(z[:, j] / math.exp(u), t[:, j]).item(), *span))
            for j in range(z.shape[1])]


def multilabel_ece(logits, y, temperatures: Sequence[float] | None = None, bins: int = BINS) -> float:
    """Multi-label: ECE over every (text, label) probability against whether the label is on the text."""
    z, t = _sigmoid_parts(logits, y)
    scale = torch.as_tensor(list(temperatures), dtype=torch.float64) if temperatures is not None else 1.0
    return ece_from_bins(_bins(torch.sigmoid(z / scale).reshape(-1), t.reshape(-1), bins))


def calibrate_multilabel(logits, y, per_label: bool = False, bins: int = BINS) -> dict:
    """Multi-label: fit temperatures (one shared, or one per label) and report the calibration error."""
    temperatures = fit_label_temperatures(logits, y, shared=not per_label)
    return {"temperatures": temperatures, "per_label": per_label, "ece_before": multilabel_ece(logits, y, None, bins),
            "ece_after": multilabel_ece(logits, y, temperatures, bins)}
