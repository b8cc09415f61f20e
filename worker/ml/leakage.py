"""Leakage across collections: which texts of one set (a test collection, an evaluation) also appear in another
(a training collection), verbatim or near-exactly (the key of worker/ml/text.normalise: case, accents,
punctuation and spacing ignored, as the in-collection duplicate check uses)."""
from __future__ import annotations

from typing import Sequence

from worker.ml.text import normalise


def seen_in(texts: Sequence[str], reference: Sequence[str]) -> list[str | None]:
    """Per text: "exact" (the same text is in ``reference``), "near-exact" (the same normalised text), or None."""
    exact, near = set(reference), {normalise(t) for t in reference}
    return ["exact" if t in exact else "near-exact" if normalise(t) in near else None for t in texts]


def overlap_report(texts: Sequence[str], reference: Sequence[str], examples: int = 5) -> dict:
    """{"texts", "exact", "near_exact", "share", "examples": [{"text", "match"}]}: how many of ``texts`` are in
    ``reference`` (see ``seen_in``), with the first few as examples."""
    kinds = seen_in(texts, reference)
    exact, near = kinds.count("exact"), kinds.count("near-exact")
    shown = [{"text": t[:200], "match": k} for t, k in zip(texts, kinds) if k][:examples]
    return {"texts": len(texts), "exact": exact, "near_exact": near,
            "share": (exact + near) / len(texts) if texts else 0.0, "examples": shown}


def overlap_warning(report: dict, what: str, reference: str) -> str | None:
    """One line when any text of ``what`` is also in ``reference`` (None when none is)."""
    found = report["exact"] + report["near_exact"]
    if not found:
        return None
    return (f"{found} of {report['texts']} texts of {what} are also in {reference} ({report['exact']} exact, "
            f"{report['near_exact']} near-exact): scores on them measure memory, not generalisation")
