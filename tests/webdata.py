"""A database the web view can show, written with the repository functions (no training): two versions of a
model with metrics and evaluations, alias moves, jobs in every state, bulk predictions that disagree, a failure
row, a nightly run, and documents whose text is markup."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from db import repo
from db.models import Document, Job, utcnow
from db.session import session_factory_for
from helpers import load_documents, sentiment_rows

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
EVIL_LABEL = "<b>bold</b>"


def metrics(accuracy: float, labels=("neg", "pos"), matrix=((8, 2), (1, 9))) -> dict:
    per_class = {label: {"precision": accuracy, "recall": accuracy, "f1": accuracy, "support": sum(row)}
                 for label, row in zip(labels, matrix)}
    history = [{"epoch": e, "train_loss": 0.7 / e, "val_loss": 0.6 / e, "accuracy": accuracy - 0.1 / e,
                "macro_f1": accuracy - 0.1 / e, "seconds": 1.0} for e in (1, 2, 3)]
    return {"accuracy": accuracy, "macro_f1": accuracy, "best_epoch": 3, "labels": list(labels),
            "per_class": per_class, "confusion_matrix": [list(row) for row in matrix], "history": history,
            "train_seconds": 3.0, "train_examples_per_second": 40.0}


def _version(s, name: str, accuracy: float, job_id: int, labels=("neg", "pos")):
    lineage = {"collection": "reviews", "row_count": 40, "train_size": 32, "val_size": 8,
               "data_check": {"documents": 40, "class_counts": {"neg": 20, "pos": 20}, "warnings":
                              ["3 exact and 0 near-exact duplicate texts"], "exact_duplicates": 3}}
    return repo.register_model_version(
        s, name=name, base_model="tiny", status="ready", artifact_path=f"/models/{name}", artifact_sha256="ab" * 32,
        labels=list(labels), hyperparameters={"epochs": 3, "learning_rate": 5e-5}, metrics=metrics(accuracy, labels),
        lineage=lineage, training_job_id=job_id)


def add_job(s, kind: str, params: dict, dedupe_key: str | None = None, **state) -> int:
    job, _ = repo.create_job(s, kind, params, max_attempts=3, dedupe_key=dedupe_key)
    if state:
        s.execute(update(Job).where(Job.id == job.id).values(**state))
    return job.id


def seed(url: str) -> dict:
    """Fill the database at ``url``; returns the ids the tests look for."""
    load_documents(url, "reviews", sentiment_rows(40))
    inbox = sentiment_rows(12, prefix="in")
    inbox[0]["text"], inbox[1]["external_id"] = EVIL, "x<i>y</i>"
    load_documents(url, "inbox", inbox)
    now = utcnow()
    done = {"status": "succeeded", "attempt": 1, "started_at": now - timedelta(minutes=5),
            "finished_at": now - timedelta(minutes=4)}
    with session_factory_for(url).begin() as s:
        t1 = add_job(s, "train", {"collection": "reviews", "base_model": "tiny", "model_name": "senti"}, **done)
        t2 = add_job(s, "train", {"collection": "reviews", "base_model": "tiny", "model_name": "senti"}, **done)
        mv1, mv2 = _version(s, "senti", 0.8, t1), _version(s, "senti", 0.9, t2)
        repo.set_alias(s, mv1, "production", actor="ann@host")
        repo.set_alias(s, mv2, "production", actor="bob@host")
        nightly = add_job(s, "classify", {"collection": "inbox", "model": "senti:2"}, dedupe_key="nightly:inbox:2026-12-01",
                       **done, progress_done=12, progress_total=12)
        running = add_job(s, "classify", {"collection": "inbox", "model": "senti:1"}, status="running", attempt=2,
                       started_at=now - timedelta(seconds=10), progress_done=6, progress_total=12,
                       lease_owner="w1@host", lease_expires_at=now + timedelta(minutes=5),
                       result={"progress": {"unit": "documents", "inflight": 3}})
        failed = add_job(s, "classify", {"collection": "inbox", "model": "senti:2"}, status="failed", attempt=3,
                      started_at=now - timedelta(minutes=2), finished_at=now - timedelta(minutes=1),
                      error=f"model exploded {EVIL}\nTraceback (most recent call last): ...")
        queued = add_job(s, "train", {"collection": "reviews", "base_model": "tiny", "model_name": "other"})
        docs = list(s.scalars(select(Document).where(Document.collection == "inbox").order_by(Document.id)))
        rows = []
        for i, doc in enumerate(docs):
            gold = doc.label
            flipped = "neg" if gold == "pos" else "pos"
            rows.append(_prediction(doc.id, mv2.id, nightly, gold if i else None, error=None if i else "empty text"))
            rows.append(_prediction(doc.id, mv1.id, running, flipped if i % 3 == 0 else gold))
        repo.upsert_predictions(s, [r for r in rows if r["label"] or r["error"]])
        for mv, accuracy in ((mv1, 0.75), (mv2, 0.85)):
            repo.add_evaluation(s, model_version_id=mv.id, collection="reviews", content_sha256="cd" * 32, documents=40,
                                accuracy=accuracy, macro_f1=accuracy, baseline_accuracy=0.5, baseline_macro_f1=0.33,
                                metrics={"per_class": metrics(accuracy)["per_class"], "labels": ["neg", "pos"],
                                         "confusion_matrix": [[8, 2], [1, 9]], "baseline": {"label": "neg",
                                         "accuracy": 0.5, "macro_f1": 0.33}})
        return {"t1": t1, "t2": t2, "nightly": nightly, "running": running, "failed": failed, "queued": queued,
                "mv1": mv1.id, "mv2": mv2.id, "inbox_docs": [d.id for d in docs]}


def _prediction(doc_id: int, mv_id: int, job_id: int, label: str | None, error: str | None = None) -> dict:
    score = None if label is None else 0.9
    return {"document_id": doc_id, "model_version_id": mv_id, "label": label, "score": score,
            "scores": None if label is None else {label: 0.9}, "error": error, "job_id": job_id,
            "created_at": utcnow()}
