"""Epoch selection that does not chase noise.

The best epoch by the selection metric wins unless another epoch cannot be told apart from it on this
validation split: the paired bootstrap interval of (best - other) reaches zero. Such a near-tie goes to the
later epoch (``prefer="later"``: more training, and in the usual recipe a lower learning rate at the end) or to
the lower validation loss (``prefer="lower_loss"``).

Each history entry needs ``epoch``, the metric (``macro_f1`` or ``accuracy``), ``val_loss`` for
``prefer="lower_loss"``, and ``predictions``: the epoch's predicted class ids on the validation texts, in
validation order (0/1 rows for multi-label). Without predictions in every entry the tie test falls back to
the best epoch's binomial half-width on ``val_size`` texts (unpaired, so it calls more ties).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from worker.ml.intervals import CONFIDENCE, RESAMPLES, bootstrap_scores, interval_bounds, wilson_interval

PREFER = ("later", "lower_loss")
MIN_TEXTS = 50  # below this, no validation split tells epochs apart
TOO_WIDE = 0.025  # a half-width above this: epochs a few points apart look the same


def _bootstrap_ties(history, best: int, y_true, n_labels: int, metric: str, resamples: int, confidence: float,
                    seed: int) -> tuple[list[bool], float]:
    """Per epoch, whether it ties with ``best`` (paired), and the best epoch's half-width."""
    scores = bootstrap_scores(y_true, [h["predictions"] for h in history], n_labels, resamples, seed)[metric]
    ties = []
    for column in range(len(history)):
        low, _ = interval_bounds(scores[:, best] - scores[:, column], confidence)
        ties.append(column == best or low <= 0.0)
    low, high = interval_bounds(scores[:, best], confidence)
    return ties, (high - low) / 2


def _binomial_ties(history, best: int, val_size: int, metric: str, confidence: float) -> tuple[list[bool], float]:
    score = history[best][metric]
    low, high = wilson_interval(round(score * val_size), val_size, confidence)
    half = (high - low) / 2
    return [score - h[metric] <= half for h in history], half


def _pick(history, best: int, ties: list[bool], prefer: str) -> tuple[int, str]:
    if prefer == "later":
        later = [i for i in range(best + 1, len(history)) if ties[i]]
        return (later[-1], "tie->later") if later else (best, "best")
    tied = [i for i in range(len(history)) if ties[i]]
    lowest = min(tied, key=lambda i: (history[i]["val_loss"], -i))  # equal losses: the later epoch
    return (lowest, "tie->lower loss") if lowest != best else (best, "best")


def choose_epoch(history: Sequence[dict], y_true=None, n_labels: int | None = None, metric: str = "macro_f1",
                 prefer: str = "later", val_size: int | None = None, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """{"epoch", "rule", "best_epoch", "tied_epochs", "half_width", "warning"} (see the module doc)."""
    if not history:
        raise ValueError("no epochs to choose from")
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {', '.join(PREFER)}")
    best = int(np.argmax([h[metric] for h in history]))  # the first of equal scores, as the trainer keeps
    if y_true is not None and len(y_true) and all("predictions" in h for h in history):
        n = len(y_true)
        ties, half = _bootstrap_ties(history, best, y_true, n_labels, metric, resamples, confidence, seed)
    elif val_size is not None or y_true is not None:
        n = val_size if val_size is not None else len(y_true)
        ties, half = _binomial_ties(history, best, n, metric, confidence)
    else:
        raise ValueError("need the validation labels and per-epoch predictions, or val_size")
    chosen, rule = _pick(history, best, ties, prefer)
    warning = None
    if len(history) > 1 and (n < MIN_TEXTS or half > TOO_WIDE):
        warning = (f"validation split of {n} texts is too small to tell epochs apart: {metric} differences "
                   f"within ±{half:.3f} are noise")
    return {"epoch": history[chosen]["epoch"], "rule": rule, "best_epoch": history[best]["epoch"],
            "tied_epochs": [h["epoch"] for h, tie in zip(history, ties) if tie], "metric": metric,
            "half_width": half, "warning": warning}
