"""multi-label collections: documents.labels, predictions.labels

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 05:10:00

- documents.labels: the label set of a multi-label document (its `label` stays NULL);
- predictions.labels: every label a multi-label model predicted above its threshold;
- latest_predictions and production_predictions show both (`gold_labels`, `labels`); low_confidence_predictions,
  a `SELECT *` over production_predictions, is recreated with it.

Both columns are nullable with no constraint, so a plain ADD COLUMN / DROP COLUMN on both databases: SQLite's
batch mode would rebuild `documents`, and with foreign keys on, dropping the old table would delete every
prediction (ON DELETE CASCADE). The views naming these columns are dropped first and recreated afterwards, on
the way up and on the way down (SQLite refuses to drop a column a view still reads).
"""
import importlib
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

VIEWS = {
    # Each document with its latest prediction per model name (the highest version that classified it).
    "latest_predictions": """
CREATE VIEW latest_predictions AS
SELECT d.id AS document_id, d.collection, d.external_id, d.text, d.label AS gold_label, d.labels AS gold_labels,
       mv.name AS model_name, mv.version AS model_version, p.label, p.labels, p.score, p.scores, p.error,
       p.job_id, p.created_at AS predicted_at
FROM documents d
JOIN predictions p ON p.document_id = d.id
JOIN model_versions mv ON mv.id = p.model_version_id
WHERE NOT EXISTS (
    SELECT 1 FROM predictions p2 JOIN model_versions mv2 ON mv2.id = p2.model_version_id
    WHERE p2.document_id = d.id AND mv2.name = mv.name AND mv2.version > mv.version
)
""",
    # Each document with its prediction from the version each model's `production` alias points at.
    "production_predictions": """
CREATE VIEW production_predictions AS
SELECT d.id AS document_id, d.collection, d.external_id, d.text, d.label AS gold_label, d.labels AS gold_labels,
       mv.name AS model_name, mv.version AS model_version, p.label, p.labels, p.score, p.scores, p.error,
       p.created_at AS predicted_at
FROM model_aliases a
JOIN model_versions mv ON mv.id = a.model_version_id
JOIN predictions p ON p.model_version_id = mv.id
JOIN documents d ON d.id = p.document_id
WHERE a.alias = 'production'
""",
}


def _previous_views() -> dict[str, str]:
    """The same views as 0001 and 0003 created them (those migrations never change)."""
    initial = importlib.import_module('migrations.versions.0001_initial_schema')
    results = importlib.import_module('migrations.versions.0003_registry_and_result_views')
    return {"latest_predictions": initial.LATEST_PREDICTIONS_VIEW,
            "production_predictions": results.VIEWS["production_predictions"],
            "low_confidence_predictions": results.VIEWS["low_confidence_predictions"]}


def _drop_views() -> None:
    # low_confidence_predictions reads production_predictions: dropped before it (and created after it).
    for name in ("low_confidence_predictions", "production_predictions", "latest_predictions"):
        op.execute(f'DROP VIEW IF EXISTS {name}')


def upgrade() -> None:
    op.add_column('documents', sa.Column('labels', JSON_TYPE, nullable=True))
    op.add_column('predictions', sa.Column('labels', JSON_TYPE, nullable=True))
    _drop_views()
    for sql in (*VIEWS.values(), _previous_views()["low_confidence_predictions"]):
        op.execute(sql)


def downgrade() -> None:
    _drop_views()
    op.drop_column('predictions', 'labels')
    op.drop_column('documents', 'labels')
    for sql in _previous_views().values():
        op.execute(sql)
