"""Predictions: the bulk upsert of a classification page and the reads of its results."""
from __future__ import annotations

import json
import math
from datetime import date
from typing import Any, Sequence

from sqlalchemy import Float, func, literal, select, text
from sqlalchemy.orm import Session

from db.models import Document, ModelVersion, Prediction
from db.names import check_name
from db.repo._common import is_postgresql


# A prediction row's columns, in one list: the PostgreSQL statement, its payload and the columns a re-run
# overwrites all follow it (a new nullable column needs its name added here and nothing else).
_PREDICTION_COLUMNS = ("document_id", "model_version_id", "label", "labels", "score", "scores", "error", "job_id",
                       "created_at")
_PREDICTION_KEY = ("document_id", "model_version_id")
_COLUMN_SET = frozenset(_PREDICTION_COLUMNS)  # a row with exactly these keys is copied, not picked key by key
_UPDATED_ON_CONFLICT = tuple(c for c in _PREDICTION_COLUMNS if c not in _PREDICTION_KEY)

# PostgreSQL: one statement per page, the rows sent as one JSON array and turned into rows of the table's own
# type server-side (json_populate_recordset: JSON null is SQL NULL, a nested object fills a JSON column).
# Measured side by side with pages of 512 (bench/README.md): 1.1-1.2x the eight unnest() arrays this
# replaces, whose per-element array adaptation in the driver cost twice the client CPU. Binary COPY into a
# temporary staging table plus one INSERT ... SELECT was measured against it three times (bench/db.py, pages of
# 512 and 2,048): 0.83-1.15x the rows/s, slower in four runs of six (the commit of a transaction that used a
# temporary table is slower), for 1-2 microseconds less client CPU a row; it is not used.
#
# Only rows whose document still exists are written: another application may delete documents while a job
# runs. FOR KEY SHARE waits for a delete in flight and then skips its row, so no foreign-key violation fails
# the page (the caller retries a page that still meets one).
_PG_UPSERT_PREDICTIONS = text(f"""
INSERT INTO predictions ({", ".join(_PREDICTION_COLUMNS)})
SELECT {", ".join(f"r.{c}" for c in _PREDICTION_COLUMNS)}
FROM json_populate_recordset(CAST(NULL AS predictions), CAST(:rows AS JSON)) AS r
JOIN documents AS d ON d.id = r.document_id
FOR KEY SHARE OF d
ON CONFLICT ({", ".join(_PREDICTION_KEY)}) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED_ON_CONFLICT)}
""")


def _json_value(value: Any) -> Any:
    """json.dumps' fallback for the payload: timestamps as ISO 8601 (an offset kept, a naive one read in the
    session's time zone, as the driver would send it)."""
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"a prediction value of type {type(value).__name__} cannot be sent: {value!r}")


def _dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_value, ensure_ascii=False, check_circular=False, allow_nan=False)


def _float_text(value: Any) -> Any:
    # JSON has no NaN or infinities; PostgreSQL's float input reads these words.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _predictions_json(rows: Sequence[dict[str, Any]]) -> str:
    # A column absent from a row is NULL (on SQLite it is left out of the INSERT); the database refuses a NULL
    # where the column is NOT NULL (document, model version, created_at).
    picked = [r.copy() if r.keys() == _COLUMN_SET else {c: r.get(c) for c in _PREDICTION_COLUMNS} for r in rows]
    stamps: dict[date, str] = {}  # a page's rows share a timestamp or two: each written out once
    for r in picked:
        at = r["created_at"]
        if isinstance(at, date):
            r["created_at"] = stamps.get(at) or stamps.setdefault(at, at.isoformat())
    try:
        return _dumps(picked)
    except ValueError:  # a NaN or an infinity: a float column takes it as a word; inside JSON it stays refused
        floats = [c for c in _PREDICTION_COLUMNS if isinstance(Prediction.__table__.c[c].type, Float)]
        return _dumps([{**r, **{c: _float_text(r[c]) for c in floats}} for r in picked])


def upsert_predictions(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Write predictions keyed by (document, model version), many rows per statement. Re-running overwrites.
    A row whose document no longer exists (deleted while the job ran) is left out. Returns the rows written.

    Runs in the caller's transaction and never commits. On PostgreSQL a (document, model version) may appear
    once in ``rows`` (twice is an error, as before); a NaN inside ``scores`` is a ValueError (JSON has none).
    """
    if not rows:
        return 0
    if is_postgresql(session):
        return session.execute(_PG_UPSERT_PREDICTIONS, {"rows": _predictions_json(rows)}).rowcount
    return _sqlite_upsert(session, rows)


# SQLite: the rows through the driver's executemany, each value converted by its column type as SQLAlchemy would;
# a row whose document is gone is skipped by the statement itself (the caller's fenced write holds the database's
# one write lock, so no delete comes in between).
_SQLITE_UPSERT = f"""
INSERT INTO predictions ({", ".join(_PREDICTION_COLUMNS)})
SELECT {", ".join("?" for _ in _PREDICTION_COLUMNS)} WHERE EXISTS (SELECT 1 FROM documents WHERE id = ?)
ON CONFLICT ({", ".join(_PREDICTION_KEY)}) DO UPDATE SET
{", ".join(f"{c} = excluded.{c}" for c in _UPDATED_ON_CONFLICT)}
"""


def _sqlite_upsert(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    connection = session.connection()
    dialect = connection.dialect
    convert = [Prediction.__table__.c[c].type.dialect_impl(dialect).bind_processor(dialect)
               for c in _PREDICTION_COLUMNS]
    params = [tuple(f(r.get(c)) if f else r.get(c) for c, f in zip(_PREDICTION_COLUMNS, convert))
              + (r["document_id"],) for r in rows]
    return connection.exec_driver_sql(_SQLITE_UPSERT, params).rowcount


def unpredicted_filter(model_version_id: int):
    """Documents with no current prediction from this model version: none yet, or one older than the text.

    Written as a per-row lookup (a scalar subquery with LIMIT 1 on the (document, model version) unique index)
    rather than NOT EXISTS: PostgreSQL would plan NOT EXISTS as an anti-join that reads every prediction of the
    version on each page, and while the table's statistics lag behind a running job that grows quadratically.
    """
    return (select(literal(1)).where(Prediction.document_id == Document.id,
                                     Prediction.model_version_id == model_version_id,
                                     Prediction.created_at >= Document.updated_at)
            .limit(1).scalar_subquery().is_(None))


def analyze_if_stale(session: Session, table: str, rows: int) -> bool:
    """Refresh PostgreSQL's statistics of ``table`` when they undercount it by half (a fresh bulk load):
    with stale statistics the planner sorts a whole collection to read one page."""
    if not is_postgresql(session) or table not in ("documents", "predictions"):
        return False
    estimate = session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table})
    if estimate is not None and estimate >= rows / 2:
        return False
    session.execute(text(f"ANALYZE {table}"))
    return True


def prediction_counts(session: Session, model_version_id: int, job_id: int | None = None) -> dict[str, int]:
    stmt = select(Prediction.error.is_(None), func.count()).where(Prediction.model_version_id == model_version_id)
    if job_id is not None:
        stmt = stmt.where(Prediction.job_id == job_id)
    counts = {"classified": 0, "failed": 0}
    for ok, n in session.execute(stmt.group_by(Prediction.error.is_(None))):
        counts["classified" if ok else "failed"] += n
    return counts


def list_predictions(
    session: Session, *, collection: str | None = None, model_version_id: int | None = None, limit: int = 20
) -> list[tuple[Document, Prediction, ModelVersion]]:
    stmt = (
        select(Document, Prediction, ModelVersion)
        .join(Prediction, Prediction.document_id == Document.id)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .order_by(Document.id, ModelVersion.id)
        .limit(limit)
    )
    if collection:
        check_name("collection", collection)
        stmt = stmt.where(Document.collection == collection)
    if model_version_id is not None:
        stmt = stmt.where(Prediction.model_version_id == model_version_id)
    return [tuple(row) for row in session.execute(stmt)]
