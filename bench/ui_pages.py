"""How long each page of the web view (`bertjobs ui`) takes on PostgreSQL with a million predictions.

    python bench/ui_pages.py                              # 1M documents, 1M + 200k predictions, 5,000 jobs
    python bench/ui_pages.py --docs 100000 --db postgresql://user@host/db

A fresh database is filled with SQL (generate_series, about a minute at 1M): one collection of --docs
documents (a fifth labelled), version 2 of a model (production) predicting every document (1% failure rows)
over 30 nightly runs, version 1 predicting the first fifth (30% of them differently), two evaluations, and
5,000 other jobs. Each page and its /api twin is then requested --repeats times in process (Starlette's test
client: routing, queries, template; no network) and the median is printed, with the database's own time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db import repo  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.session import session_factory_for  # noqa: E402

RUNS = 30
FILL = [
    # documents: a fifth labelled, texts of a realistic length
    """INSERT INTO documents (collection, external_id, text, label, created_at, updated_at)
       SELECT 'inbox', 'doc-' || g, 'review ' || g || ': ' || repeat('a fairly ordinary film, ', 1 + g % 8),
              CASE WHEN g % 5 = 0 THEN (CASE WHEN g % 2 = 0 THEN 'pos' ELSE 'neg' END) END,
              now() - interval '40 days', now() - interval '40 days'
       FROM generate_series(1, :docs) g""",
    # 5,000 jobs of every kind and state, and 30 nightly runs
    """INSERT INTO jobs (kind, status, params, attempt, progress_done, progress_total, error, created_at,
                         started_at, finished_at, updated_at)
       SELECT (ARRAY['train', 'classify', 'evaluate'])[1 + g % 3],
              (ARRAY['succeeded', 'succeeded', 'succeeded', 'failed', 'cancelled', 'dead', 'queued'])[1 + g % 7],
              jsonb_build_object('collection', 'c' || (g % 20), 'model', 'm' || (g % 7) || ':' || '1'), 1, g, 5000,
              CASE WHEN g % 7 = 3 THEN 'something went wrong in job ' || g END,
              now() - (5000 - g) * interval '5 minutes', now() - (5000 - g) * interval '5 minutes',
              now() - (5000 - g) * interval '5 minutes' + interval '1 minute', now()
       FROM generate_series(1, 5000) g""",
    """INSERT INTO jobs (kind, status, params, dedupe_key, attempt, progress_done, progress_total, created_at,
                         started_at, finished_at, updated_at)
       SELECT 'classify', 'succeeded', '{"collection": "inbox", "model": "senti:2"}', 'nightly:inbox:' ||
              to_char(current_date - (31 - g), 'YYYY-MM-DD'), 1, :docs / 30, :docs / 30,
              now() - (31 - g) * interval '1 day', now() - (31 - g) * interval '1 day',
              now() - (31 - g) * interval '1 day' + interval '1 hour', now()
       FROM generate_series(1, 30) g""",
    # version 2: every document, run by run; 1% failure rows
    """INSERT INTO predictions (document_id, model_version_id, label, score, scores, error, job_id, created_at)
       SELECT d.id, :mv2, CASE WHEN d.id % 100 <> 0 THEN (CASE WHEN d.id % 3 = 0 THEN 'neg' ELSE 'pos' END) END,
              CASE WHEN d.id % 100 <> 0 THEN 0.5 + (d.id % 50) / 100.0 END,
              CASE WHEN d.id % 100 <> 0 THEN '{"neg": 0.3, "pos": 0.7}'::jsonb END,
              CASE WHEN d.id % 100 = 0 THEN 'text is empty' END,
              (SELECT min(id) FROM jobs WHERE dedupe_key LIKE 'nightly:%') + (d.id * 30 - 1) / (:docs + 1),
              now() - interval '1 day'
       FROM documents d WHERE d.collection = 'inbox'""",
    # version 1: the first fifth, 30% of them labelled otherwise
    """INSERT INTO predictions (document_id, model_version_id, label, score, scores, error, job_id, created_at)
       SELECT d.id, :mv1, CASE WHEN (d.id % 3 = 0) = (d.id % 10 < 7) THEN 'neg' ELSE 'pos' END, 0.8,
              '{"neg": 0.2, "pos": 0.8}'::jsonb, NULL, NULL, now() - interval '2 days'
       FROM documents d WHERE d.collection = 'inbox' AND d.id <= :docs / 5""",
]

PAGES = ["/jobs", "/jobs?status=failed", "/jobs?collection=inbox", "/jobs?model=senti", "/jobs?before={mid_job}",
         "/jobs/{nightly}", "/models", "/models/senti/2", "/compare?a=senti:1&b=senti:2&collection=inbox",
         "/compare?a=senti:1&b=senti:2&collection=inbox&after={mid_doc}", "/collections", "/collections/inbox",
         "/collections/inbox?after={mid_doc}"]


def fresh_database(admin_url: str):
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bertjobs_bench_ui_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def fill(url: str, docs: int) -> dict:
    sessions = session_factory_for(url)
    with sessions.begin() as s:
        versions = []
        for accuracy in (0.81, 0.86):
            mv = repo.register_model_version(
                s, name="senti", base_model="bert-base-uncased", status="ready", artifact_path="/models/senti",
                artifact_sha256="0" * 64, labels=["neg", "pos"], hyperparameters={"epochs": 3},
                metrics={"accuracy": accuracy, "macro_f1": accuracy, "labels": ["neg", "pos"],
                         "confusion_matrix": [[40, 10], [9, 41]], "per_class": {}, "history": []},
                lineage={"collection": "inbox"})
            repo.add_evaluation(s, model_version_id=mv.id, collection="inbox", content_sha256="0" * 64, documents=1000,
                                accuracy=accuracy, macro_f1=accuracy, baseline_accuracy=0.5, baseline_macro_f1=0.33,
                                metrics={})
            versions.append(mv)
        repo.set_alias(s, versions[1], "production")
        mv1, mv2 = versions[0].id, versions[1].id
    started = time.perf_counter()
    with sessions.begin() as s:
        for sql in FILL:
            s.execute(text(sql), {"docs": docs, "mv1": mv1, "mv2": mv2})
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    with sessions.begin() as s:
        counts = {"documents": s.scalar(text("SELECT count(*) FROM documents")),
                  "predictions": s.scalar(text("SELECT count(*) FROM predictions")),
                  "jobs": s.scalar(text("SELECT count(*) FROM jobs")),
                  "nightly": s.scalar(text("SELECT min(id) FROM jobs WHERE dedupe_key LIKE 'nightly:%'")),
                  "mid_job": 2500, "mid_doc": docs // 2}
    print(f"filled in {time.perf_counter() - started:.0f} s: {counts['documents']:,} documents, "
          f"{counts['predictions']:,} predictions, {counts['jobs']:,} jobs")
    return counts


def measure(url: str, ids: dict, repeats: int) -> list[list]:
    import os

    from starlette.testclient import TestClient

    from worker.config import get_settings
    from worker.web.app import create_app

    os.environ["BERTJOBS_DATABASE_URL"] = url
    get_settings.cache_clear()
    rows = []
    with TestClient(create_app()) as client:
        for template in PAGES:
            path = template.format(**ids)
            timings = {}
            for prefix in ("", "/api"):
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    response = client.get(prefix + path)
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200, (path, response.text[:200])
                timings[prefix] = statistics.median(times) * 1000
            rows.append([path, f"{timings['']:.0f}", f"{timings['/api']:.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="an admin URL: a fresh database is created beside it and dropped afterwards")
    args = parser.parse_args()
    url, drop = fresh_database(args.db)
    try:
        upgrade(url)
        ids = fill(url, args.docs)
        rows = measure(url, ids, args.repeats)
    finally:
        if args.keep:
            print(f"kept: {url}")
        else:
            drop()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'page':{width}}  html ms  api ms   (median of {args.repeats})")
    for path, html, api in rows:
        print(f"{path:{width}}  {html:>7}  {api:>6}")


if __name__ == "__main__":
    main()
