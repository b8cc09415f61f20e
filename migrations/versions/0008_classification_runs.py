"""label drift between runs: classification_runs, classification_run_labels, label_drift; view_settings

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:40:00

- classification_runs: what a classification job that succeeded wrote, counted when it finished (classified,
  failed, mean top score), one row per job a user started (a sharded job's row sums its shards);
- classification_run_labels: its classified documents by predicted label;
- ix_predictions_job_id: the count at the end of a job reads that job's predictions only (and deleting a job,
  whose predictions keep their row with job_id NULL, no longer scans the table);
- label_drift: the runs label by label, with each label's share, per collection and model;
- view_settings: one row the views read; low_confidence_predictions cuts at its low_confidence_threshold
  (written from BERTJOBS_LOW_CONFIDENCE_THRESHOLD by `bertjobs db upgrade`; 0.6 as before until then).

Jobs that finished before this migration have no run rows: their predictions may since have been overwritten by
later runs, so counting them now would not say what they wrote.
"""
import importlib
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(astext_type=sa.Text(), none_as_null=True),
                                                    'postgresql')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

VIEWS = {
    # Each run of a model over a collection, label by label: the share of its classified documents.
    "label_drift": """
CREATE VIEW label_drift AS
SELECT r.collection, mv.name AS model_name, mv.version AS model_version, r.job_id, r.finished_at,
       r.only_missing, r.filter IS NOT NULL AS filtered, r.classified, r.failed, r.mean_score,
       l.label, l.documents, CAST(l.documents AS FLOAT) / r.classified AS share, l.mean_score AS label_mean_score
FROM classification_runs r
JOIN model_versions mv ON mv.id = r.model_version_id
JOIN classification_run_labels l ON l.job_id = r.job_id
""",
    # Production predictions the model was least sure of (top score below view_settings' threshold), for review.
    "low_confidence_predictions": """
CREATE VIEW low_confidence_predictions AS
SELECT * FROM production_predictions
WHERE label IS NOT NULL
  AND score < COALESCE((SELECT low_confidence_threshold FROM view_settings WHERE id = 1), 0.6)
""",
}


def upgrade() -> None:
    op.create_table(
        'classification_runs',
        sa.Column('job_id', BIG_ID, autoincrement=False, nullable=False),
        sa.Column('collection', sa.String(length=200), nullable=False),
        sa.Column('model_version_id', BIG_ID, nullable=False),
        sa.Column('only_missing', sa.Boolean(), nullable=False),
        sa.Column('filter', JSON_TYPE, nullable=True),
        sa.Column('classified', sa.BigInteger(), nullable=False),
        sa.Column('failed', sa.BigInteger(), nullable=False),
        sa.Column('mean_score', sa.Float(), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name='fk_classification_runs_job_id_jobs', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                                name='fk_classification_runs_model_version_id_model_versions', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', name='pk_classification_runs'),
    )
    op.create_index('ix_classification_runs_collection_finished_at', 'classification_runs',
                    ['collection', 'finished_at'])
    op.create_index('ix_classification_runs_model_version_id', 'classification_runs', ['model_version_id'])
    op.create_table(
        'classification_run_labels',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('job_id', BIG_ID, nullable=False),
        sa.Column('label', sa.String(length=200), nullable=True),
        sa.Column('documents', sa.BigInteger(), nullable=False),
        sa.Column('mean_score', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['classification_runs.job_id'],
                                name='fk_classification_run_labels_job_id_classification_runs', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_classification_run_labels'),
        sa.UniqueConstraint('job_id', 'label', name='uq_classification_run_labels_job_id_label'),
    )
    op.create_index('ix_predictions_job_id', 'predictions', ['job_id'])
    op.create_table(
        'view_settings',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('low_confidence_threshold', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint('id = 1', name='ck_view_settings_one_row'),
        sa.PrimaryKeyConstraint('id', name='pk_view_settings'),
    )
    op.execute("INSERT INTO view_settings (id, low_confidence_threshold) VALUES (1, 0.6)")
    op.execute('DROP VIEW IF EXISTS low_confidence_predictions')
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f'DROP VIEW IF EXISTS {name}')
    # As 0003 created it (0004 recreated it unchanged).
    op.execute(importlib.import_module('migrations.versions.0003_registry_and_result_views')
               .VIEWS["low_confidence_predictions"])
    op.drop_table('view_settings')
    op.drop_index('ix_predictions_job_id', table_name='predictions')
    op.drop_table('classification_run_labels')
    op.drop_index('ix_classification_runs_model_version_id', table_name='classification_runs')
    op.drop_index('ix_classification_runs_collection_finished_at', table_name='classification_runs')
    op.drop_table('classification_runs')
