"""registry rollback, result views and their indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:35:00

- model_aliases.previous_version_id, so a promotion can be rolled back with one command;
- indexes on predictions (model version, label) and (model version, score) for the views below; the
  (model version) index they make redundant is dropped;
- views for the common questions: production_predictions, label_counts, version_disagreements,
  low_confidence_predictions.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

VIEWS = {
    # Each document with its prediction from the version each model's `production` alias points at.
    "production_predictions": """
CREATE VIEW production_predictions AS
SELECT d.id AS document_id, d.collection, d.external_id, d.text, d.label AS gold_label,
       mv.name AS model_name, mv.version AS model_version, p.label, p.score, p.scores, p.error,
       p.created_at AS predicted_at
FROM model_aliases a
JOIN model_versions mv ON mv.id = a.model_version_id
JOIN predictions p ON p.model_version_id = mv.id
JOIN documents d ON d.id = p.document_id
WHERE a.alias = 'production'
""",
    # How many documents of each collection got each label from each model version (failures: label NULL).
    "label_counts": """
CREATE VIEW label_counts AS
SELECT d.collection, mv.name AS model_name, mv.version AS model_version, p.label, count(*) AS documents,
       avg(p.score) AS mean_score
FROM predictions p
JOIN model_versions mv ON mv.id = p.model_version_id
JOIN documents d ON d.id = p.document_id
GROUP BY d.collection, mv.name, mv.version, p.label
""",
    # Documents on which two versions of the same model disagree (filter on the two versions you compare).
    "version_disagreements": """
CREATE VIEW version_disagreements AS
SELECT d.id AS document_id, d.collection, d.external_id, d.text, ma.name AS model_name,
       ma.version AS version_a, pa.label AS label_a, pa.score AS score_a,
       mb.version AS version_b, pb.label AS label_b, pb.score AS score_b
FROM predictions pa
JOIN model_versions ma ON ma.id = pa.model_version_id
JOIN predictions pb ON pb.document_id = pa.document_id
JOIN model_versions mb ON mb.id = pb.model_version_id AND mb.name = ma.name AND mb.version > ma.version
JOIN documents d ON d.id = pa.document_id
WHERE pa.label IS NOT NULL AND pb.label IS NOT NULL AND pa.label <> pb.label
""",
    # Production predictions the model was least sure of (top score below 0.6), for review.
    "low_confidence_predictions": """
CREATE VIEW low_confidence_predictions AS
SELECT * FROM production_predictions WHERE label IS NOT NULL AND score < 0.6
""",
}


def upgrade() -> None:
    if op.get_context().dialect.name == 'sqlite':
        op.execute('ALTER TABLE model_aliases ADD COLUMN previous_version_id INTEGER '
                   'CONSTRAINT fk_model_aliases_previous_version_id_model_versions REFERENCES model_versions (id)')
    else:
        op.add_column('model_aliases', sa.Column('previous_version_id', sa.BigInteger(), nullable=True))
        op.create_foreign_key('fk_model_aliases_previous_version_id_model_versions', 'model_aliases',
                              'model_versions', ['previous_version_id'], ['id'])
    op.create_index('ix_predictions_model_version_id_label', 'predictions', ['model_version_id', 'label'])
    op.create_index('ix_predictions_model_version_id_score', 'predictions', ['model_version_id', 'score'])
    op.drop_index('ix_predictions_model_version_id', table_name='predictions')
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f'DROP VIEW IF EXISTS {name}')
    op.create_index('ix_predictions_model_version_id', 'predictions', ['model_version_id'])
    op.drop_index('ix_predictions_model_version_id_score', table_name='predictions')
    op.drop_index('ix_predictions_model_version_id_label', table_name='predictions')
    if op.get_context().dialect.name == 'sqlite':
        op.execute('PRAGMA foreign_keys=OFF')
        with op.batch_alter_table('model_aliases') as batch_op:
            batch_op.drop_column('previous_version_id')
        op.execute('PRAGMA foreign_keys=ON')
    else:
        op.drop_constraint('fk_model_aliases_previous_version_id_model_versions', 'model_aliases',
                           type_='foreignkey')
        op.drop_column('model_aliases', 'previous_version_id')
