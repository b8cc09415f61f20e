"""What counting a finished run costs on PostgreSQL with a million predictions, and what its index costs writes.

    python bench/run_counts.py                              # 1M documents and predictions over 30 nightly runs
    python bench/run_counts.py --docs 200000 --db postgresql://user@host/db

The database is bench/ui_pages.py's (filled with SQL). A classification job counts what it wrote in the
transaction that finishes it. Side by side, in alternating blocks (the index dropped, then created again):

- before: the count bertjobs made before migration 0008, classified and failed rows of (model version, job), with
  no index on predictions.job_id (it reads the version's rows through the (model version, label) index);
- after: the run's tally (label, count, mean score by success) over the job's rows, through ix_predictions_job_id;
- the price: re-upserting --upsert predictions in pages of 512 (a re-run: new job id, label, score), without and
  with the index.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's db before bench/db.py

from sqlalchemy import create_engine, text  # noqa: E402

from db import repo  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import utcnow  # noqa: E402
from db.session import session_factory_for  # noqa: E402
from ui_pages import fill, fresh_database  # noqa: E402

INDEX = "ix_predictions_job_id"


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - started))
    return out


def _upsert(sessions, mv: int, job: int, docs: int, page: int = 512) -> None:
    now = utcnow()
    for lo in range(1, docs + 1, page):
        rows = [{"document_id": d, "model_version_id": mv, "label": "pos" if (d + job) % 2 else "neg",
                 "score": 0.5 + (d % 40) / 100, "scores": {"neg": 0.4, "pos": 0.6}, "error": None, "job_id": job,
                 "created_at": now} for d in range(lo, min(lo + page, docs + 1))]
        with sessions.begin() as s:
            repo.upsert_predictions(s, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="an admin URL")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--upsert", type=int, default=20_000, help="predictions re-upserted per block")
    args = p.parse_args()
    url, drop = fresh_database(args.db)
    try:
        upgrade(url)
        ids = fill(url, args.docs)
        _measure(url, ids["nightly"], ids["predictions"], args)
    finally:
        drop()


def _measure(url: str, first_nightly: int, total: int, args) -> None:
    """Count the 15th nightly run; the upserts rewrite rows of the first one under the 2nd, 3rd... run's id."""
    job = first_nightly + 14
    sessions = session_factory_for(url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with sessions.begin() as s:
        mv = s.scalar(text("SELECT model_version_id FROM predictions WHERE job_id = :j LIMIT 1"), {"j": job})
    before, after, plain, indexed = [], [], [], []
    for r in range(args.rounds):
        with admin.connect() as conn:
            conn.execute(text(f"DROP INDEX {INDEX}"))
            conn.execute(text("ANALYZE predictions"))
        with sessions.begin() as s:
            before += _timed(lambda: repo.prediction_counts(s, mv, job_id=job), args.repeats)
        plain.append(1000 * _seconds(lambda: _upsert(sessions, mv, first_nightly + 1 + 2 * r, args.upsert)))
        with admin.connect() as conn:
            conn.execute(text(f"CREATE INDEX {INDEX} ON predictions (job_id)"))
            conn.execute(text("ANALYZE predictions"))
        with sessions.begin() as s:
            tally = repo.tally_predictions(s, job)
            after += _timed(lambda: repo.tally_predictions(s, job), args.repeats)
        indexed.append(1000 * _seconds(lambda: _upsert(sessions, mv, first_nightly + 2 + 2 * r, args.upsert)))
    print(f"job {job}: {tally.classified:,} classified, {tally.failed:,} failed, of {total:,} predictions")
    print(f"count at the end of a run   before {statistics.median(before):8.1f} ms   after {statistics.median(after):8.1f} ms"
          f"   ({statistics.median(before) / statistics.median(after):.1f}x)")
    print(f"upsert {args.upsert:,} predictions  no job index {statistics.median(plain):8.0f} ms   with it "
          f"{statistics.median(indexed):8.0f} ms   ({statistics.median(indexed) / statistics.median(plain):.2f}x)")
    print("JSON", {"docs": args.docs, "predictions": total, "run_predictions": tally.classified + tally.failed, "count_before_ms": before,
                   "count_after_ms": after, "upsert_without_index_ms": plain, "upsert_with_index_ms": indexed})


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
