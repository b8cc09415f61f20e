"""The one row of settings the SQL views read (view_settings): ``low_confidence_predictions`` cuts at its
``low_confidence_threshold``. ``bertjobs db upgrade`` writes it from the environment."""
from __future__ import annotations

from sqlalchemy.orm import Session

from db.models import ViewSettings
from db.repo._common import clock, insert


def write_view_settings(session: Session, *, low_confidence_threshold: float) -> None:
    """Set the row (inserted if someone deleted it)."""
    stmt = insert(session, ViewSettings).values(id=1, low_confidence_threshold=low_confidence_threshold,
                                                updated_at=clock(session))
    session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={
        "low_confidence_threshold": stmt.excluded.low_confidence_threshold, "updated_at": stmt.excluded.updated_at}))


def read_view_settings(session: Session) -> ViewSettings | None:
    return session.get(ViewSettings, 1, populate_existing=True)
