"""alias history: every move of a model alias, for rollbacks that step back and for people who ask who did it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00

- model_alias_history: (name, alias) moved to model_version_id from previous_version_id, by command and actor, at
  created_at. `bertjobs models rollback` steps back through it (A -> B -> C, rollback -> B, rollback -> A).
- Aliases that exist already are seeded from model_aliases: the version they held before (if any), then the one
  they hold, as command 'migrated', so one rollback still goes where it went before this migration.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'model_alias_history',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('alias', sa.String(length=100), nullable=False),
        sa.Column('model_version_id', BIG_ID, nullable=False),
        sa.Column('previous_version_id', BIG_ID, nullable=True),
        sa.Column('command', sa.String(length=50), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                                name=op.f('fk_model_alias_history_model_version_id_model_versions'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['previous_version_id'], ['model_versions.id'],
                                name=op.f('fk_model_alias_history_previous_version_id_model_versions'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_alias_history')),
    )
    op.create_index('ix_model_alias_history_name_alias_id', 'model_alias_history', ['name', 'alias', 'id'])
    op.execute("INSERT INTO model_alias_history (name, alias, model_version_id, command, actor) "
               "SELECT name, alias, previous_version_id, 'migrated', 'migration 0006' FROM model_aliases "
               "WHERE previous_version_id IS NOT NULL ORDER BY id")
    op.execute("INSERT INTO model_alias_history (name, alias, model_version_id, previous_version_id, command, actor) "
               "SELECT name, alias, model_version_id, previous_version_id, 'migrated', 'migration 0006' "
               "FROM model_aliases ORDER BY id")


def downgrade() -> None:
    op.drop_index('ix_model_alias_history_name_alias_id', table_name='model_alias_history')
    op.drop_table('model_alias_history')
