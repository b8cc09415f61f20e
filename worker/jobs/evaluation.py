"""Evaluation of a model version on a labelled collection: one path for `bertjobs evaluate` (a job on the
classify queue), `bertjobs models compare` and the gated promote.

The collection is classified exactly as a bulk job classifies it (the same cached classifier, precision, long-
document windows and, for a multi-label model, the thresholds it was registered with); the metrics are
worker/ml/metrics.py's. The majority-class baseline is what always answering the collection's most common label
(multi-label: every label on at least half the documents) would score on the same documents.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.orm import Session, sessionmaker

from db import repo
from db.models import JobKind, JobStatus
from worker.config import Settings, get_settings
from worker.errors import InvalidJob
from worker.jobs.runtime import JobContext, Outcome, Publish, ReportProgress, run_attempt
from worker.jobs.training import content_hash
from worker.jobs.params import EvaluateParams
from worker.jobs.shards import parent_outcome
from worker.jobs.target import Target, load_for, resolve

# Called with (done, total) after each page; may raise to stop (a job's cancel or lost lease).
OnPage = Callable[[int, int], None]


@dataclass
class Result:
    target: Target
    collection: str
    filter: dict[str, Any] | None
    content_sha256: str
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    ids: list[int] = field(repr=False)
    texts: list[str] = field(repr=False)
    gold: list[Any] = field(repr=False)
    predicted: list[Any] = field(repr=False)  # a label, a sorted label list (multi-label) or None (failed)
    unlabelled: int = 0
    engine: str = "torch"  # how the predictions were made (worker/ml/engine.py)
    precision: str = "fp32"

    @property
    def failed(self) -> int:
        return sum(p is None for p in self.predicted)

    def record(self) -> dict[str, Any]:
        """Columns of an `evaluations` row (db.repo.add_evaluation)."""
        details = {k: v for k, v in self.metrics.items() if k not in ("accuracy", "macro_f1")}
        return {"model_version_id": self.target.id, "collection": self.collection, "filter": self.filter,
                "content_sha256": self.content_sha256, "documents": len(self.ids),
                "accuracy": self.metrics["accuracy"], "macro_f1": self.metrics["macro_f1"],
                "baseline_accuracy": self.baseline["accuracy"], "baseline_macro_f1": self.baseline["macro_f1"],
                "metrics": {**details, "baseline": self.baseline, "failed": self.failed,
                            "unlabelled": self.unlabelled, "engine": self.engine, "precision": self.precision}}


def evaluate(sessions: sessionmaker[Session], settings: Settings, target: Target, collection: str,
             where: dict[str, Any] | None = None, on_page: OnPage | None = None) -> Result:
    """Classify the labelled documents of ``collection`` with ``target`` and score them (nothing is stored)."""
    classifier = load_for(target, settings)
    multi = classifier.thresholds is not None
    with sessions.begin() as s:
        data = repo.load_labelled(s, collection, where, multi_label=multi)
    kind = "label sets" if multi else "labels"
    if not data.ids:
        extra = f" ({data.unlabelled} without {kind})" if data.unlabelled else ""
        raise InvalidJob(f"collection {collection!r} has no documents with {kind} to evaluate {target.ref} on{extra}")
    seen = {label for labels in data.labels for label in labels} if multi else set(data.labels)
    if len(seen) < 2:
        raise InvalidJob(f"collection {collection!r} has only one label ({', '.join(map(repr, sorted(seen)))}) among "
                         "its labelled documents; evaluation needs at least two")
    predictions = []
    page = max(1, settings.classify_chunk_size)
    for start in range(0, len(data.texts), page):
        predictions += classifier.predict_or_fail(data.texts[start:start + page], settings.classify_batch_size,
                                                  settings.max_text_chars)
        if on_page is not None:
            on_page(len(predictions), len(data.texts))
    if multi:
        predicted = [None if p.error else sorted(p.labels or []) for p in predictions]
    else:
        predicted = [None if p.error else p.label for p in predictions]
    scored = [i for i, p in enumerate(predictions) if p.error is None]
    if not scored:
        raise InvalidJob(f"{target.ref} could not classify any document of {collection!r}: {predictions[0].error}")
    metrics, baseline = _scores(classifier, target, data.labels, predictions, predicted, scored)
    metrics["leakage"] = _leakage(sessions, target, classifier, data, predictions, predicted, scored)
    return Result(target, collection, where, content_hash(data.ids, data.texts, data.labels), metrics, baseline,
                  data.ids, data.texts, data.labels, predicted, data.unlabelled, classifier.engine, classifier.precision)


def _scores(classifier, target: Target, gold, predictions, predicted, scored) -> tuple[dict, dict]:
    if classifier.thresholds is not None:
        return _multi_label(classifier, gold, predictions, scored)
    return _single_label(target.labels, gold, predicted, scored)


def _leakage(sessions, target: Target, classifier, data, predictions, predicted, scored) -> dict | None:
    """How many evaluated texts were in the version's own training data (its lineage's collection and filter;
    verbatim or near-exactly, worker/ml/leakage.py), and the scores without them; None when the lineage has no
    collection or it is gone."""
    from worker.ml.leakage import overlap_warning, seen_in

    if not target.training_collection:
        return None
    with sessions.begin() as s:
        if not repo.collection_exists(s, target.training_collection):
            return None
        training = repo.load_labelled(s, target.training_collection, target.training_filter,
                                      multi_label=classifier.thresholds is not None)
    kinds = seen_in(data.texts, training.texts)
    counts = {"texts": len(data.texts), "exact": kinds.count("exact"), "near_exact": kinds.count("near-exact")}
    out = {"training_collection": target.training_collection, "training_filter": target.training_filter,
           "in_training": counts["exact"] + counts["near_exact"], **counts,
           "warning": overlap_warning(counts, "the evaluated collection", f"{target.ref}'s training data"),
           "without": None}
    unseen = [i for i in scored if kinds[i] is None]
    if out["in_training"] and unseen:
        metrics, _ = _scores(classifier, target, data.labels, predictions, predicted, unseen)
        out["without"] = {"documents": len(unseen), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    return out


def _single_label(model_labels, gold, predicted, scored) -> tuple[dict, dict]:
    from worker.ml.metrics import classification_metrics

    labels = sorted(set(gold) | set(model_labels))
    index = {label: i for i, label in enumerate(labels)}
    truth = [index[gold[i]] for i in scored]
    metrics = classification_metrics(truth, [index[predicted[i]] for i in scored], labels)
    majority = sorted(Counter(gold[i] for i in scored).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    base = classification_metrics(truth, [index[majority]] * len(truth), labels)
    return metrics, {"label": majority, "accuracy": base["accuracy"], "macro_f1": base["macro_f1"]}


def _multi_label(classifier, gold, predictions, scored) -> tuple[dict, dict]:
    from worker.ml.metrics import multilabel_metrics

    labels = classifier.labels
    y = [[int(label in gold[i]) for label in labels] for i in scored]
    probs = [[predictions[i].scores[label] for label in labels] for i in scored]
    metrics = multilabel_metrics(y, probs, labels, classifier.thresholds)
    share = [sum(row[j] for row in y) / len(y) for j in range(len(labels))]
    base = multilabel_metrics(y, [share] * len(y), labels, [0.5] * len(labels))
    return metrics, {"labels": [label for label, p in zip(labels, share) if p >= 0.5],
                     "accuracy": base["accuracy"], "macro_f1": base["macro_f1"]}


def as_dict(row, model: str) -> dict[str, Any]:
    """An `evaluations` row as one JSON document with stable keys."""
    metrics = dict(row.metrics or {})
    return {
        "id": row.id, "model": model, "model_version_id": row.model_version_id, "collection": row.collection,
        "filter": row.filter, "content_sha256": row.content_sha256, "documents": row.documents,
        "accuracy": row.accuracy, "macro_f1": row.macro_f1,
        "baseline": metrics.get("baseline", {"accuracy": row.baseline_accuracy, "macro_f1": row.baseline_macro_f1}),
        "multi_label": bool(metrics.get("multi_label", False)), "labels": metrics.get("labels"),
        "per_class": metrics.get("per_class"), "confusion_matrix": metrics.get("confusion_matrix"),
        "thresholds": metrics.get("thresholds"), "micro_f1": metrics.get("micro_f1"),
        "failed": metrics.get("failed", 0), "unlabelled": metrics.get("unlabelled", 0),
        "engine": metrics.get("engine", "torch"), "precision": metrics.get("precision"),
        "leakage": metrics.get("leakage"), "job_id": row.job_id, "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def store(sessions: sessionmaker[Session], result: Result, job_id: int | None = None) -> int:
    with sessions.begin() as s:
        return repo.add_evaluation(s, **result.record(), job_id=job_id).id


def disagreements(a: Result, b: Result) -> list[dict[str, Any]]:
    """Documents two evaluations on the same data classified differently, in id order."""
    if a.ids != b.ids:
        raise InvalidJob("the two evaluations read different documents; compare them on the same collection")
    return [{"document_id": doc_id, "text": text, "gold": gold, "a": pa, "b": pb}
            for doc_id, text, gold, pa, pb in zip(a.ids, a.texts, a.gold, a.predicted, b.predicted) if pa != pb]


# ---------------------------------------------------------------- the job


def run_evaluation(job_id: int, *, settings: Settings | None = None, owner: str | None = None,
                   publish: Publish | None = None, report: ReportProgress | None = None) -> Outcome:
    return run_attempt(job_id, JobKind.evaluate, _evaluate, settings or get_settings(), owner, publish, report)


def _evaluate(ctx: JobContext) -> None:
    params = EvaluateParams.from_dict(ctx.params)
    with ctx.sessions.begin() as s:
        target = resolve(s, params.model)
    ctx.log.extra["model"] = target.ref

    def on_page(done: int, total: int) -> None:
        ctx.check()
        ctx.progress(done, total, every=2.0)

    result = evaluate(ctx.sessions, ctx.settings, target, params.collection, params.filter, on_page)
    ctx.check()
    with ctx.sessions.begin() as s:
        ctx.fenced(s)
        evaluation = repo.add_evaluation(s, **result.record(), job_id=ctx.job_id)
        repo.set_progress(s, ctx.job_id, ctx.attempt, done=len(result.ids), total=len(result.ids))
        repo.finish_job(s, ctx.job_id, ctx.attempt, JobStatus.succeeded, result={
            "evaluation_id": evaluation.id, "model": target.ref, "model_version_id": target.id,
            "collection": params.collection, "documents": len(result.ids), "failed": result.failed,
            "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"],
            "baseline_accuracy": result.baseline["accuracy"], "baseline_macro_f1": result.baseline["macro_f1"],
            "engine": result.engine, "precision": result.precision,
        }, aggregate=parent_outcome)
    ctx.log.info("evaluated on %s: accuracy %.4f, macro-F1 %.4f", params.collection, result.metrics["accuracy"],
                 result.metrics["macro_f1"])
    if (result.metrics.get("leakage") or {}).get("warning"):
        ctx.log.warning("leakage: %s", result.metrics["leakage"]["warning"])
