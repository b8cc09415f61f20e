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


def test_upgrading_a_sqlite_database_with_data_keeps_every_reference(tmp_path):
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO documents (collection, external_id, text) VALUES ('c', 'a', 'x')"))
        conn.execute(text("INSERT INTO jobs (kind) VALUES ('classify')"))
        conn.execute(text("INSERT INTO model_versions (name, version, status, base_model, artifact_path, artifact_sha256, "
                          "labels, hyperparameters, metrics, lineage, training_job_id) "
                          "VALUES ('m', 1, 'ready', 'b', '/p', 's', '[]', '{}', '{}', '{}', 1)"))
        conn.execute(text("INSERT INTO predictions (document_id, model_version_id, label, job_id) "
                          "VALUES (1, 1, 'x', 1)"))
    upgrade(url)
    check(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT job_id FROM predictions")).scalar() == 1
        assert conn.execute(text("SELECT training_job_id FROM model_versions")).scalar() == 1
    engine.dispose()
