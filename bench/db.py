"""Database throughput and memory: prediction upserts, document streaming, peak memory at two corpus sizes.

    python bench/db.py                                   # PostgreSQL at 127.0.0.1, 100k and 1M documents
    python bench/db.py --sizes 20000,200000 --db postgresql://user@host/db

Each size runs in its own process over a fresh database: insert the documents, then stream them in keyset
pages of 512 and upsert one prediction per document per page, committing per page, as a bulk job does
(without the model). Reported: documents streamed per second, predictions upserted per second while
streaming, and the process's peak memory. Then, side by side on up to 100k documents (the ways take turns page
by page, each under its own model version, so they share the machine's noise), rows/s and client CPU per row:
bertjobs' upsert against binary COPY into a temporary staging table (measured, not kept), the unnest() arrays
statement it replaced and the ORM unit of work; with --db sqlite, against its SQLite upsert before executemany.

    python bench/db.py --sizes 30000 --pages 512,2048     # pages of 512 and of 2,048 rows
    python bench/db.py --sizes 30000 --db sqlite
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid

from common import emit_json, print_table
from sqlalchemy import JSON, DateTime, Float, String, Text, create_engine, select, text  # noqa: I001
from sqlalchemy.engine import make_url

from db import repo
from db.migrate import upgrade
from db.models import Document, Prediction, utcnow
from db.repo._common import chunks, insert
from db.repo import predictions
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


def _sqlite_file() -> tuple[str, callable]:
    folder = tempfile.TemporaryDirectory()
    return f"sqlite:///{folder.name}/bench.db", folder.cleanup


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


# Measured and not kept (bench/README.md): binary COPY into a temporary staging table of the session, then one
# INSERT ... SELECT with the same deleted-document rule (FOR KEY SHARE) and conflict handling as bertjobs' statement.
_COLUMNS = [Prediction.__table__.c[c] for c in predictions._PREDICTION_COLUMNS]
_JSON_AT = [i for i, c in enumerate(_COLUMNS) if isinstance(c.type, JSON)]
_COPY_TYPES = ["text" if isinstance(c.type, (JSON, String, Text)) else "timestamptz" if isinstance(c.type, DateTime)
               else "float8" if isinstance(c.type, Float) else "int8" for c in _COLUMNS]
_STAGE = "bertjobs_prediction_stage"
_CREATE_STAGE = text(f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS
SELECT {", ".join(f"CAST({c.name} AS TEXT) AS {c.name}" if i in _JSON_AT else c.name for i, c in enumerate(_COLUMNS))}
FROM predictions WITH NO DATA""")
_COPY = f"COPY pg_temp.{_STAGE} ({', '.join(c.name for c in _COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_UPSERT_STAGED = text(f"""WITH r AS (DELETE FROM pg_temp.{_STAGE} RETURNING *)
INSERT INTO predictions ({", ".join(c.name for c in _COLUMNS)})
SELECT {", ".join(f"CAST(r.{c.name} AS JSONB)" if i in _JSON_AT else f"r.{c.name}" for i, c in enumerate(_COLUMNS))}
FROM r JOIN documents AS d ON d.id = r.document_id FOR KEY SHARE OF d
ON CONFLICT (document_id, model_version_id) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in predictions._UPDATED_ON_CONFLICT)}""")


def _copy_upsert(s, rows: list[dict]) -> int:
    values = [[r.get(c.name) for c in _COLUMNS] for r in rows]
    for row in values:  # JSON dumped before anything is sent (a NaN refused), as text cast back to JSONB
        for i in _JSON_AT:
            row[i] = None if row[i] is None else json.dumps(row[i], ensure_ascii=False, allow_nan=False)
    connection = s.connection()
    connection.execute(_CREATE_STAGE)  # a no-op once the session has it (a rolled-back transaction's is gone)
    with connection.connection.dbapi_connection.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(_COPY_TYPES)
        for row in values:
            copy.write_row(row)
    return connection.execute(_UPSERT_STAGED).rowcount


def _sqlite_before(s, rows: list[dict]) -> None:
    """bertjobs' SQLite upsert before 2026-12-06: present documents looked up, then the ORM's multi-row INSERT."""
    present = set()
    for chunk in chunks(sorted({r["document_id"] for r in rows})):
        present.update(s.scalars(select(Document.id).where(Document.id.in_(chunk))))
    for chunk in chunks([r for r in rows if r["document_id"] in present]):
        stmt = insert(s, Prediction)
        s.execute(stmt.on_conflict_do_update(index_elements=["document_id", "model_version_id"], set_={
            c: getattr(stmt.excluded, c) for c in predictions._UPDATED_ON_CONFLICT}), list(chunk))


WAYS = {  # name -> how a page of prediction rows is written in an open transaction
    "bertjobs": repo.upsert_predictions,
    "copy": _copy_upsert,
    "unnest": _unnest_upsert,
    "orm": lambda s, rows: s.add_all([Prediction(**r) for r in rows]),
}
SQLITE_WAYS = {"bertjobs": repo.upsert_predictions, "before": _sqlite_before}


def side_by_side(sessions, rows: int, ways: dict = WAYS) -> tuple[dict[str, float], dict[str, float]]:
    """Rows per second and client CPU microseconds per row of each way over the same documents, taking turns
    page by page."""
    versions = {way: _register(sessions) for way in ways}
    with sessions.begin() as s:
        ids = [i for i, _ in repo.read_documents(s, "bench", None, rows)]
    seconds, cpu = dict.fromkeys(ways, 0.0), dict.fromkeys(ways, 0.0)
    for lo in range(0, len(ids), PAGE):
        for way, write in ways.items():
            t0, c0 = time.perf_counter(), time.process_time()
            now = utcnow()
            with sessions.begin() as s:
                write(s, [_prediction(doc_id, versions[way], now) for doc_id in ids[lo:lo + PAGE]])
            seconds[way] += time.perf_counter() - t0
            cpu[way] += time.process_time() - c0
    return {way: len(ids) / seconds[way] for way in ways}, {way: cpu[way] / len(ids) * 1e6 for way in ways}


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
    per_second, cpu_us = side_by_side(sessions, compared, WAYS if url.startswith("postgresql") else SQLITE_WAYS)
    return {"documents": n, "page": PAGE, "streamed": streamed, "load_docs_per_second": n / load_seconds,
            "stream_docs_per_second": streamed / read_seconds, "upserts_per_second": streamed / write_seconds,
            "side_by_side_rows": compared, "side_rows_per_second": per_second, "side_client_cpu_us_per_row": cpu_us,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="an admin URL: a fresh database is created beside it per size; or sqlite (a temporary file)")
    parser.add_argument("--pages", default="512", help="comma-separated page sizes (rows per transaction)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: URL,N,PAGE for the child process
    args = parser.parse_args()
    if args.one:
        global PAGE
        url, n, PAGE = args.one.rsplit(",", 2)
        PAGE = int(PAGE)
        print(json.dumps(run_size(url, int(n))))
        return
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        for page in (int(x) for x in args.pages.split(",")):
            url, drop = _fresh_database(args.db) if args.db != "sqlite" else _sqlite_file()
            try:
                out = subprocess.run([sys.executable, __file__, "--one", f"{url},{n},{page}"], check=True,
                                     capture_output=True, text=True).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
            finally:
                drop()
    ways = WAYS if args.db != "sqlite" else SQLITE_WAYS
    rows = [[f"{r['documents']:,}", r["page"], f"{r['load_docs_per_second']:,.0f}",
             f"{r['stream_docs_per_second']:,.0f}", f"{r['upserts_per_second']:,.0f}"]
            + [f"{r['side_rows_per_second'][w]:,.0f} ({r['side_client_cpu_us_per_row'][w]:.1f})" for w in ways]
            + [f"{r['side_rows_per_second']['bertjobs'] / r['side_rows_per_second'][w]:.2f}x" for w in ways
               if w != "bertjobs"] + [f"{r['peak_rss_mib']:.0f}"] for r in results]
    print_table(f"database ({args.db}): a transaction per page; side by side on up to 100k rows, rows/s (client "
                "CPU us/row)", ["documents", "page", "import docs/s", "stream docs/s", "upserts/s streaming"]
                + [f"side: {w}" for w in ways] + [f"vs {w}" for w in ways if w != "bertjobs"] + ["peak RSS MiB"],
                rows)
    if len(results) > 1:
        print(f"peak memory at {results[-1]['documents']:,} vs {results[0]['documents']:,} documents: "
              f"{results[-1]['peak_rss_mib'] / results[0]['peak_rss_mib']:.2f}x")
    emit_json("db", {"results": results})


if __name__ == "__main__":
    main()
