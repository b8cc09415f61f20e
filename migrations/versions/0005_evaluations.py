"""evaluations: a model version's metrics on a labelled collection

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:30:00

A new table only (`bertjobs evaluate`, `models compare`, the gated promote write it); nothing existing changes.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'evaluations',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('model_version_id', BIG_ID, nullable=False),
        sa.Column('collection', sa.String(length=200), nullable=False),
        sa.Column('filter', JSON_TYPE, nullable=True),
        sa.Column('content_sha256', sa.String(length=64), nullable=False),
        sa.Column('documents', sa.Integer(), nullable=False),
        sa.Column('accuracy', sa.Float(), nullable=False),
        sa.Column('macro_f1', sa.Float(), nullable=False),
        sa.Column('baseline_accuracy', sa.Float(), nullable=False),
        sa.Column('baseline_macro_f1', sa.Float(), nullable=False),
        sa.Column('metrics', JSON_TYPE, nullable=False),
        sa.Column('job_id', BIG_ID, nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_evaluations_job_id_jobs'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                                name=op.f('fk_evaluations_model_version_id_model_versions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluations')),
    )
    op.create_index(op.f('ix_evaluations_model_version_id'), 'evaluations', ['model_version_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_evaluations_model_version_id'), table_name='evaluations')
    op.drop_table('evaluations')
