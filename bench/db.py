"""Database throughput and memory: prediction upserts, document streaming, peak memory at two corpus sizes.

    python bench/db.py                                   # PostgreSQL at 127.0.0.1, 100k and 1M documents
    python bench/db.py --sizes 20000,200000 --db postgresql://user@host/db

Each size runs in its own process over a fresh database: insert the documents, then stream them in keyset
pages of 512 and upsert one prediction per document per page, committing per page, as a bulk job does
(without the model). Reported: documents streamed per second, predictions upserted per second while
streaming, and the process's peak memory. Then, side by side on up to 100k documents (the three ways take
turns page by page, each under its own model version, so they share the machine's noise): bertjobs' upsert
against the unnest() arrays statement it replaced and against the ORM unit of work.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid

from common import emit_json, print_table
from sqlalchemy import create_engine, text  # noqa: I001
from sqlalchemy.engine import make_url

from db import repo
from db.migrate import upgrade
from db.models import Prediction, utcnow
from db.session import session_factory_for
from worker.jobs import walk_pages

PAGE = 512


def _fresh_database(admin_url: str) -> tuple[str, callable]:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bertjobs_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return url, drop


def _register(sessions) -> int:
    with sessions.begin() as s:
        return repo.register_model_version(s, name=f"bench-{uuid.uuid4().hex[:6]}", base_model="none", status="ready",
                                           artifact_path="/none", artifact_sha256="0" * 64, labels=["a", "b"],
                                           hyperparameters={}, metrics={}, lineage={}).id


def _prediction(doc_id: int, mv: int, now) -> dict:
    return {"document_id": doc_id, "model_version_id": mv, "label": "a", "score": 0.9,
            "scores": {"a": 0.9, "b": 0.1}, "error": None, "job_id": None, "created_at": now}


# bertjobs' statement before 2026-11-27, kept for the comparison: the rows as eight arrays, unnested server-side.
_UNNEST_UPSERT = text("""
INSERT INTO predictions (document_id, model_version_id, label, score, scores, error, job_id, created_at)
SELECT d, m, l, s, ss::jsonb, e, j, c
FROM unnest(CAST(:d AS BIGINT[]), CAST(:m AS BIGINT[]), CAST(:l AS TEXT[]), CAST(:s AS FLOAT8[]),
            CAST(:ss AS TEXT[]), CAST(:e AS TEXT[]), CAST(:j AS BIGINT[]), CAST(:c AS TIMESTAMPTZ[]))
     AS t(d, m, l, s, ss, e, j, c)
ON CONFLICT (document_id, model_version_id) DO UPDATE SET label = EXCLUDED.label, score = EXCLUDED.score,
scores = EXCLUDED.scores, error = EXCLUDED.error, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at
""")


def _unnest_upsert(s, rows: list[dict]) -> None:
    s.execute(_UNNEST_UPSERT, {
        "d": [r["document_id"] for r in rows], "m": [r["model_version_id"] for r in rows],
        "l": [r["label"] for r in rows], "s": [r["score"] for r in rows],
        "ss": [None if r["scores"] is None else json.dumps(r["scores"]) for r in rows],
        "e": [r["error"] for r in rows], "j": [r["job_id"] for r in rows], "c": [r["created_at"] for r in rows]})


WAYS = {  # name -> how a page of prediction rows is written in an open transaction
    "bertjobs": repo.upsert_predictions,
    "unnest": _unnest_upsert,
    "orm": lambda s, rows: s.add_all([Prediction(**r) for r in rows]),
}


def side_by_side(sessions, rows: int) -> dict[str, float]:
    """Rows per second of each way over the same documents, taking turns page by page."""
    versions = {way: _register(sessions) for way in WAYS}
    with sessions.begin() as s:
        ids = [i for i, _ in repo.read_documents(s, "bench", None, rows)]
    seconds = dict.fromkeys(WAYS, 0.0)
    for lo in range(0, len(ids), PAGE):
        for way, write in WAYS.items():
            t0 = time.perf_counter()
            now = utcnow()
            with sessions.begin() as s:
                write(s, [_prediction(doc_id, versions[way], now) for doc_id in ids[lo:lo + PAGE]])
            seconds[way] += time.perf_counter() - t0
    return {way: len(ids) / seconds[way] for way in WAYS}


def run_size(url: str, n: int) -> dict:
    """One size, in this process: load, stream + upsert (bertjobs), then the three ways side by side."""
    upgrade(url)
    sessions = session_factory_for(url)
    start = time.perf_counter()
    for lo in range(0, n, 10_000):
        with sessions.begin() as s:
            repo.upsert_documents(s, "bench", [{"external_id": str(i), "text": f"document number {i} " * 8}
                                               for i in range(lo, min(n, lo + 10_000))])
    load_seconds = time.perf_counter() - start

    mv = _register(sessions)
    streamed, read_seconds, write_seconds = 0, 0.0, 0.0
    pages = walk_pages(sessions, "bench", None, PAGE, unpredicted_by=mv)  # what a bulk job reads with
    while True:
        t0 = time.perf_counter()
        page, _, _ = next(pages, (None, None, None))
        t1 = time.perf_counter()
        if page is None:
            break
        now = utcnow()
        with sessions.begin() as s:
            repo.upsert_predictions(s, [_prediction(doc_id, mv, now) for doc_id, _ in page])
        write_seconds += time.perf_counter() - t1
        read_seconds += t1 - t0
        streamed += len(page)

    compared = min(n, 100_000)
    per_second = side_by_side(sessions, compared)
    return {"documents": n, "streamed": streamed, "load_docs_per_second": n / load_seconds,
            "stream_docs_per_second": streamed / read_seconds, "upserts_per_second": streamed / write_seconds,
            "side_by_side_rows": compared, "side_upserts_per_second": per_second["bertjobs"],
            "unnest_upserts_per_second": per_second["unnest"], "orm_inserts_per_second": per_second["orm"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="an admin URL: a fresh database is created beside it per size")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: URL,N for the child process
    args = parser.parse_args()
    if args.one:
        url, n = args.one.rsplit(",", 1)
        print(json.dumps(run_size(url, int(n))))
        return
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        url, drop = _fresh_database(args.db)
        try:
            out = subprocess.run([sys.executable, __file__, "--one", f"{url},{n}"], check=True, capture_output=True,
                                 text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            drop()
    rows = [[f"{r['documents']:,}", f"{r['load_docs_per_second']:,.0f}", f"{r['stream_docs_per_second']:,.0f}",
             f"{r['upserts_per_second']:,.0f}", f"{r['side_upserts_per_second']:,.0f}",
             f"{r['unnest_upserts_per_second']:,.0f}", f"{r['orm_inserts_per_second']:,.0f}",
             f"{r['side_upserts_per_second'] / r['unnest_upserts_per_second']:.2f}x",
             f"{r['side_upserts_per_second'] / r['orm_inserts_per_second']:.2f}x", f"{r['peak_rss_mib']:.0f}"]
            for r in results]
    print_table("database (PostgreSQL): pages of 512, a transaction per page; side by side on up to 100k rows",
                ["documents", "import docs/s", "stream docs/s", "upserts/s streaming", "side: bertjobs/s",
                 "unnest/s", "ORM/s", "vs unnest", "vs ORM", "peak RSS MiB"], rows)
    if len(results) > 1:
        print(f"peak memory at {results[-1]['documents']:,} vs {results[0]['documents']:,} documents: "
              f"{results[-1]['peak_rss_mib'] / results[0]['peak_rss_mib']:.2f}x")
    emit_json("db", {"results": results})


if __name__ == "__main__":
    main()
