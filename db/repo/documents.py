"""Documents: the upsert of an import, the user's document filter, keyset pages and labelled sets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from db.errors import InvalidFilter
from db.models import Document, utcnow
from db.names import check_name
from db.repo._common import chunks, insert, is_postgresql
from db.repo.predictions import unpredicted_filter


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


# PostgreSQL: one statement per chunk. Identical rows are not touched (the WHERE on DO UPDATE); RETURNING
# gives the rows written, and xmax = 0 tells an insert from an update. Label sets travel as JSON text (NULL
# for none) and become jsonb server-side.
_PG_UPSERT_DOCUMENTS = text("""
INSERT INTO documents (collection, external_id, text, label, labels, created_at, updated_at)
SELECT :collection, e, t, l, CAST(ls AS JSONB), clock_timestamp(), clock_timestamp()
FROM unnest(CAST(:e AS TEXT[]), CAST(:t AS TEXT[]), CAST(:l AS TEXT[]), CAST(:ls AS TEXT[])) AS u(e, t, l, ls)
ON CONFLICT (collection, external_id) DO UPDATE
SET text = EXCLUDED.text, label = EXCLUDED.label, labels = EXCLUDED.labels, updated_at = EXCLUDED.updated_at
WHERE documents.text IS DISTINCT FROM EXCLUDED.text OR documents.label IS DISTINCT FROM EXCLUDED.label
   OR documents.labels IS DISTINCT FROM EXCLUDED.labels
RETURNING (xmax = 0) AS inserted
""")


def _label_set(row: dict[str, Any]) -> list[str] | None:
    # An empty label set is no label set: stored as NULL.
    return list(row.get("labels") or ()) or None


def upsert_documents(session: Session, collection: str, rows: Sequence[dict[str, Any]]) -> UpsertCounts:
    """Insert or update documents keyed by (collection, external_id); identical rows are left alone.

    A row has ``external_id``, ``text`` and optionally ``label`` (single-label) or ``labels`` (the label set of a
    multi-label document, normalised by the caller; empty or missing is NULL). A change of text, label or labels
    is an update. Within ``rows`` the last row of an id wins.
    """
    rows = list({r["external_id"]: r for r in rows}.values())
    if is_postgresql(session):
        return _upsert_postgresql(session, collection, rows)
    counts = [_upsert_chunk(session, collection, chunk) for chunk in chunks(rows)]
    return UpsertCounts(*(sum(c[i] for c in counts) for i in range(3)))


def _upsert_postgresql(session: Session, collection: str, rows: list[dict[str, Any]]) -> UpsertCounts:
    inserted = updated = 0
    for chunk in chunks(rows, 5000):
        written = session.execute(_PG_UPSERT_DOCUMENTS, {
            "collection": collection, "e": [r["external_id"] for r in chunk],
            "t": [r["text"] for r in chunk], "l": [r.get("label") for r in chunk],
            "ls": [None if (ls := _label_set(r)) is None else json.dumps(ls, ensure_ascii=False)
                   for r in chunk]}).scalars().all()
        inserted += sum(1 for w in written if w)
        updated += sum(1 for w in written if not w)
    return UpsertCounts(inserted, updated, len(rows) - inserted - updated)


def _upsert_chunk(session: Session, collection: str, chunk: Sequence[dict[str, Any]]) -> tuple[int, int, int]:
    """SQLite: compare with the stored rows, insert the new ones, update the changed ones."""
    existing = {
        ext: (body, label, labels or None)
        for ext, body, label, labels in session.execute(
            select(Document.external_id, Document.text, Document.label, Document.labels).where(
                Document.collection == collection, Document.external_id.in_([r["external_id"] for r in chunk])
            )
        )
    }
    new_rows = [r for r in chunk if r["external_id"] not in existing]
    changed = [r for r in chunk if r["external_id"] in existing
               and existing[r["external_id"]] != (r["text"], r.get("label"), _label_set(r))]
    now = utcnow()
    if new_rows:
        stmt = insert(session, Document).on_conflict_do_nothing(index_elements=["collection", "external_id"])
        session.execute(stmt, [
            {"collection": collection, "external_id": r["external_id"], "text": r["text"],
             "label": r.get("label"), "labels": _label_set(r), "created_at": now, "updated_at": now}
            for r in new_rows
        ])
    for r in changed:
        session.execute(
            update(Document)
            .where(Document.collection == collection, Document.external_id == r["external_id"])
            .values(text=r["text"], label=r.get("label"), labels=_label_set(r), updated_at=now)
        )
    return len(new_rows), len(changed), len(chunk) - len(new_rows) - len(changed)


FILTER_KEYS = ("labels", "external_id_prefix", "created_after", "updated_after")


def document_filter(where: dict[str, Any] | None) -> list:
    """A user's document filter as SQL conditions. Values are bound parameters, never SQL text.

    Keys: ``labels`` (list of gold labels), ``external_id_prefix`` (LIKE-escaped), ``created_after`` and
    ``updated_after`` (ISO 8601 timestamps).

    ``labels`` filters single labels: documents whose ``label`` is one of them. It does not look at a multi-label
    document's ``labels`` set (its ``label`` is NULL, so it never matches).
    """
    if not where:
        return []
    unknown = sorted(set(where) - set(FILTER_KEYS))
    if unknown:
        raise InvalidFilter(f"unknown filter key(s) {', '.join(unknown)}; use {', '.join(FILTER_KEYS)}")
    conditions = []
    if "labels" in where:
        labels = where["labels"]
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise InvalidFilter("filter labels must be a non-empty list of strings")
        conditions.append(Document.label.in_(labels))
    if "external_id_prefix" in where:
        prefix = where["external_id_prefix"]
        if not isinstance(prefix, str) or not prefix:
            raise InvalidFilter("filter external_id_prefix must be a non-empty string")
        conditions.append(Document.external_id.startswith(prefix, autoescape=True))
    for key, column in (("created_after", Document.created_at), ("updated_after", Document.updated_at)):
        if key in where:
            try:
                moment = datetime.fromisoformat(str(where[key]))
            except ValueError as exc:
                raise InvalidFilter(f"filter {key} must be an ISO 8601 timestamp, got {where[key]!r}") from exc
            moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
            conditions.append(column > moment)
    return conditions


def _documents_in(collection: str, after_id: int | None, unpredicted_by: int | None, up_to_id: int | None = None,
                  where: dict[str, Any] | None = None):
    conditions = [Document.collection == collection, *document_filter(where)]
    if after_id is not None:
        conditions.append(Document.id > after_id)
    if up_to_id is not None:
        conditions.append(Document.id <= up_to_id)
    if unpredicted_by is not None:
        conditions.append(unpredicted_filter(unpredicted_by))
    return conditions


def count_documents(session: Session, collection: str, after_id: int | None = None,
                    unpredicted_by: int | None = None, up_to_id: int | None = None,
                    where: dict[str, Any] | None = None) -> int:
    """Documents of a collection, optionally in (after_id, up_to_id] and without a prediction from a version."""
    stmt = select(func.count()).select_from(Document).where(
        *_documents_in(collection, after_id, unpredicted_by, up_to_id, where))
    return session.scalar(stmt) or 0


def read_documents(session: Session, collection: str, after_id: int | None, limit: int,
                   unpredicted_by: int | None = None, up_to_id: int | None = None,
                   where: dict[str, Any] | None = None) -> list[tuple[int, str]]:
    """One keyset page of (id, text) in id order, strictly after ``after_id`` (and up to ``up_to_id``)."""
    conditions = _documents_in(collection, after_id, unpredicted_by, up_to_id, where)
    stmt = select(Document.id, Document.text).where(*conditions).order_by(Document.id).limit(limit)
    return [(i, t) for i, t in session.execute(stmt)]


def max_document_id(session: Session, collection: str) -> int | None:
    return session.scalar(select(func.max(Document.id)).where(Document.collection == collection))


def id_ranges(session: Session, collection: str, per_range: int,
              where: dict[str, Any] | None = None) -> list[tuple[int, int]]:
    """Split a collection into consecutive id ranges of about ``per_range`` documents each (one pass)."""
    numbered = (select(Document.id, func.row_number().over(order_by=Document.id).label("rn"))
                .where(*_documents_in(collection, None, None, None, where)).subquery())
    starts = list(session.scalars(select(numbered.c.id).where((numbered.c.rn - 1) % per_range == 0)
                                  .order_by(numbered.c.id)))
    if not starts:
        return []
    last = session.scalar(select(func.max(Document.id)).where(*_documents_in(collection, None, None, None, where)))
    ends = [nxt - 1 for nxt in starts[1:]] + [last]
    return list(zip(starts, ends))


@dataclass(frozen=True)
class LabelledSet:
    ids: list[int]
    texts: list[str]
    labels: list[str] | list[list[str]]  # one label per document, or one label set (multi_label=True)
    unlabelled: int


def load_labelled(session: Session, collection: str, where: dict[str, Any] | None = None, *,
                  multi_label: bool = False) -> LabelledSet:
    """The collection's labelled documents in id order, and how many of the selected ones have no label.

    With ``multi_label`` a document is labelled by a non-empty ``labels`` set and each element of ``labels`` is
    that list of strings; a document with only a single ``label`` counts as unlabelled then, and the other way
    round without it.
    """
    check_name("collection", collection)
    ids, texts, labels = [], [], []
    selected = _documents_in(collection, None, None, None, where)
    column = Document.labels if multi_label else Document.label
    for doc_id, body, label in session.execute(
        select(Document.id, Document.text, column).where(*selected, column.is_not(None)).order_by(Document.id)
    ):
        if multi_label:
            if not label:  # an empty set, or a JSON null written by hand: no labels
                continue
            label = [str(x) for x in label]
        ids.append(doc_id)
        texts.append(body)
        labels.append(label)
    total = session.scalar(select(func.count()).select_from(Document).where(*selected)) or 0
    return LabelledSet(ids, texts, labels, total - len(ids))


def collection_exists(session: Session, collection: str) -> bool:
    """Whether any document belongs to the collection (a collection exists by having documents).

    A name that breaks the name rule raises InvalidName: it is a wrong name, not an unknown one."""
    check_name("collection", collection)
    return session.scalar(select(Document.id).where(Document.collection == collection).limit(1)) is not None


def count_labelled(session: Session, collection: str, where: dict[str, Any] | None = None, *,
                   multi_label: bool = False) -> tuple[int, int]:
    """(selected, labelled): the documents the filter selects, and how many of them carry a label (or label set).

    Counts what ``load_labelled`` would load, without reading texts; a multi-label JSON null or empty set is
    unlabelled there and is counted as such here too.
    """
    selected = _documents_in(collection, None, None, None, where)
    total = session.scalar(select(func.count()).select_from(Document).where(*selected)) or 0
    if multi_label:
        labelled = sum(1 for (labels,) in session.execute(
            select(Document.labels).where(*selected, Document.labels.is_not(None))) if labels)
    else:
        labelled = session.scalar(select(func.count()).select_from(Document)
                                  .where(*selected, Document.label.is_not(None))) or 0
    return total, labelled

