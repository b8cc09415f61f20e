"""Label drift between classification runs: the population-stability index (PSI) of label shares.

Each run of a model over a collection is compared with the mean label shares of up to ``window`` runs before it
(of the same model name: a new version is compared too, and marked, since its shares may move by design):

    PSI = sum over labels of (a - e) * ln(a / e)

``a`` the run's share of a label, ``e`` the baseline's; a label on one side only counts with a share of EPSILON on
the other (so a label that appears or vanishes weighs, without a division by zero). The usual reading: below 0.1
no change, 0.1 to 0.25 a moderate shift, above 0.25 a large one; the shift threshold is a setting
(BERTJOBS_DRIFT_PSI_THRESHOLD, 0.2).

Pure: no database, no torch. A label is a string, or None where a multi-label model gave none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

EPSILON = 1e-4

Label = Optional[str]


def shares(counts: Mapping[Label, int]) -> dict[Label, float]:
    """Counts to shares of their total ({} when there is nothing)."""
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()} if total else {}


def mean_shares(runs: Sequence[Mapping[Label, float]]) -> dict[Label, float]:
    """The label-by-label mean of several runs' shares (a label a run lacks counts 0 there)."""
    labels = {label for run in runs for label in run}
    return {label: sum(run.get(label, 0.0) for run in runs) / len(runs) for label in labels} if runs else {}


def psi(actual: Mapping[Label, float], expected: Mapping[Label, float], epsilon: float = EPSILON) -> float:
    """The population-stability index of ``actual`` shares against ``expected`` ones (0: the same)."""
    total = 0.0
    for label in set(actual) | set(expected):
        a, e = max(actual.get(label, 0.0), epsilon), max(expected.get(label, 0.0), epsilon)
        total += (a - e) * math.log(a / e)
    return total


@dataclass(frozen=True)
class Run:
    """A run as drift sees it: its job, model version, scope (which documents it classified) and label counts."""

    job_id: int
    version: int
    scope: str
    counts: Mapping[Label, int]


@dataclass(frozen=True)
class Drift:
    """A run against the runs before it. ``psi`` is None with a ``note`` saying why (the first run...)."""

    psi: float | None
    shifted: bool
    baseline: tuple[int, ...]  # the job ids whose mean shares were the baseline
    version_changed: bool  # another model version than the run before
    scope_changed: bool  # other documents than the run before (all of them / only new ones / a filter)
    note: str | None


def compare(runs: Sequence[Run], *, window: int, threshold: float) -> list[Drift]:
    """One Drift per run, in the given order (oldest first): each run's shares against the mean shares of up to
    ``window`` runs before it that classified something."""
    out: list[Drift] = []
    for i, run in enumerate(runs):
        before = [r for r in runs[:i] if sum(r.counts.values())][-window:] if window > 0 else []
        previous = runs[i - 1] if i else None
        marks = {"version_changed": previous is not None and previous.version != run.version,
                 "scope_changed": previous is not None and previous.scope != run.scope}
        baseline = tuple(r.job_id for r in before)
        if not sum(run.counts.values()):
            out.append(Drift(None, False, baseline, **marks, note="no document classified: nothing to compare"))
        elif not before:
            note = "first run: nothing to compare" if i == 0 else "no earlier run classified anything"
            out.append(Drift(None, False, baseline, **marks, note=note))
        else:
            value = psi(shares(run.counts), mean_shares([shares(r.counts) for r in before]))
            out.append(Drift(value, value >= threshold, baseline, **marks, note=None))
    return out
