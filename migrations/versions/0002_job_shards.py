"""job shards: jobs.parent_id

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:20:18

A plain ADD COLUMN on both databases: SQLite's batch mode would rebuild `jobs`, and with foreign keys on,
dropping the old table would null every predictions.job_id and model_versions.training_job_id.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    if op.get_context().dialect.name == 'sqlite':
        op.execute('ALTER TABLE jobs ADD COLUMN parent_id INTEGER '
                   'CONSTRAINT fk_jobs_parent_id_jobs REFERENCES jobs (id)')
    else:
        op.add_column('jobs', sa.Column('parent_id', BIG_ID, nullable=True))
        op.create_foreign_key('fk_jobs_parent_id_jobs', 'jobs', 'jobs', ['parent_id'], ['id'])
    op.create_index('ix_jobs_parent_id', 'jobs', ['parent_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_parent_id', table_name='jobs')
    if op.get_context().dialect.name == 'sqlite':
        op.execute('PRAGMA foreign_keys=OFF')  # SQLite drops a column with a foreign key only by a rebuild
        with op.batch_alter_table('jobs') as batch_op:
            batch_op.drop_column('parent_id')
        op.execute('PRAGMA foreign_keys=ON')
    else:
        op.drop_constraint('fk_jobs_parent_id_jobs', 'jobs', type_='foreignkey')
        op.drop_column('jobs', 'parent_id')
