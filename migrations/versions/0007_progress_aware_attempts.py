"""progress-aware attempt budget: a job is dead after max_attempts attempts in a row without durable progress

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:10:00

- jobs.progress_mark: moves with every durable step of a job (a committed page, a recorded checkpoint);
- jobs.progress_mark_at_claim: its value when the current attempt claimed the job;
- jobs.attempts_without_progress: attempts in a row that ended without moving it. Existing jobs start with
  their attempt count, so no job gets more attempts than it had before this migration.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('progress_mark', sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('progress_mark_at_claim', sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('attempts_without_progress', sa.Integer(), server_default='0', nullable=False))
    op.execute("UPDATE jobs SET attempts_without_progress = attempt")


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('attempts_without_progress')
        batch.drop_column('progress_mark_at_claim')
        batch.drop_column('progress_mark')
