"""Keyset paging over a collection's documents, each page read in its own short transaction."""
from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db import repo


def walk_pages(sessions: sessionmaker[Session], collection: str, cursor: int | None, limit: int, *,
               unpredicted_by: int | None = None, up_to_id: int | None = None, where: dict | None = None):
    """Yield (page, scanned_to, read_at): keyset pages of (id, text) in id order, each read in its own short transaction.

    Each page is read inside a bounded id window, so no plan (however stale the planner's statistics) reads more
    than the window: the window doubles while pages come back sparse and halves when one fills early. The
    caller stores ``scanned_to`` as its cursor: every id up to it has been looked at. ``read_at`` is taken before
    the read, so a prediction stamped with it is never newer than the text it was made from.
    """
    with sessions.begin() as s:
        last = repo.max_document_id(s, collection)
    if up_to_id is not None:
        last = min(last, up_to_id) if last is not None else None
    if last is None:
        return
    cursor = cursor if cursor is not None else 0
    span = limit * 4
    while cursor < last:
        window_end = min(cursor + span, last)
        with sessions.begin() as s:
            read_at = repo.database_now(s)  # before the read, by the clock that stamps documents.updated_at
            page = repo.read_documents(s, collection, cursor, limit, unpredicted_by=unpredicted_by,
                                       up_to_id=window_end, where=where)
        if len(page) == limit:
            scanned_to = page[-1][0]
            if scanned_to - cursor < span // 4:
                span = max(limit, span // 2)
        else:
            scanned_to = window_end
            if len(page) < limit // 2:
                span *= 2
        yield page, scanned_to, read_at
        cursor = scanned_to

