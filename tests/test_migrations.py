"""The schema comes from Alembic; models and migrations never drift."""
from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from db.migrate import alembic_config, check, upgrade
from db.session import make_engine


def test_there_is_exactly_one_migration_head():
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1


def test_alembic_check_finds_no_drift_on_postgresql(pg_url):
    check(pg_url)


def test_alembic_check_finds_no_drift_on_sqlite(sqlite_url):
    check(sqlite_url)


def test_upgrade_creates_the_tables_and_the_results_view(any_db_url):
    engine = make_engine(any_db_url)
    inspector = inspect(engine)
    assert {"documents", "jobs", "model_versions", "model_aliases", "predictions"} <= set(inspector.get_table_names())
    assert "latest_predictions" in inspector.get_view_names()
    engine.dispose()


def test_upgrade_twice_is_a_no_op(sqlite_url):
    upgrade(sqlite_url)
    check(sqlite_url)
