"""Storing an import file's rows: an upsert per batch of rows, a batch the database refuses retried row by row."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from db import repo
from db.names import check_name
from worker.importer.parse import parse_file
from worker.importer.rows import BadRow

BATCH_ROWS = 1000


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)


def import_file(sessions: sessionmaker[Session], path: Path, collection: str, **options) -> ImportReport:
    """Upsert the file's good rows into ``collection`` (a transaction per batch); report the bad ones.

    A batch the database refuses is written again row by row, so a row it cannot store is a bad row with its
    line number and every other row, before and after, loads.
    """
    check_name("collection", collection)
    report = ImportReport()
    batch: list[tuple[int, dict]] = []

    def write(rows: list[dict]) -> None:
        with sessions.begin() as s:
            counts = repo.upsert_documents(s, collection, rows)
        report.inserted += counts.inserted
        report.updated += counts.updated
        report.unchanged += counts.unchanged

    def flush() -> None:
        if not batch:
            return
        try:
            write([row for _, row in batch])
        except (DataError, UnicodeError):
            for line, row in batch:
                try:
                    write([row])
                except (DataError, UnicodeError) as exc:
                    reason = str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__]
                    report.bad.append(BadRow(line, f"the database cannot store it: {reason[0]}"))
        batch.clear()

    for item in parse_file(path, **options):
        if isinstance(item, BadRow):
            report.bad.append(item)
            continue
        batch.append((item.pop("_line", 0), item))
        if len(batch) >= BATCH_ROWS:
            flush()
    flush()
    report.bad.sort(key=lambda b: b.line)
    if report.inserted:
        with sessions.begin() as s:
            repo.analyze_if_stale(s, "documents", repo.count_documents(s, collection))
    return report
