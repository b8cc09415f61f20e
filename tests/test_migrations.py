"""The schema comes from Alembic; models and migrations never drift."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from db.migrate import alembic_config, check, upgrade
from db.session import make_engine

ROOT = Path(__file__).resolve().parents[1]


def test_there_is_exactly_one_migration_head():
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1


def test_alembic_check_finds_no_drift_on_postgresql(pg_url):
    check(pg_url)


def test_alembic_check_finds_no_drift_on_sqlite(sqlite_url):
    check(sqlite_url)


_HAND_RUN = ("import sys; from alembic.config import main; main(['-c', 'migrations/alembic.ini', *sys.argv[1:]]); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'worker'))")


@pytest.mark.slow
def test_alembic_run_by_hand_reads_the_url_from_the_environment_and_imports_no_worker_code(tmp_path):
    url = f"sqlite:///{tmp_path / 'by-hand.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTJOBS_")}
    env.update(BERTJOBS_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    for args in (["upgrade", "head"], ["check"]):
        run = subprocess.run([sys.executable, "-c", _HAND_RUN, *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1] == "[]"
    check(url)
    del env["BERTJOBS_DATABASE_URL"]
    run = subprocess.run([sys.executable, "-c", _HAND_RUN, "check"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "set BERTJOBS_DATABASE_URL" in run.stderr


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


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request, tmp_path):
    """A database of its own, with no schema: migrations go up and down in it without touching the session's."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'updown.db'}"
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from helpers import PG_ADMIN_URL

    request.getfixturevalue("pg_url")  # skips (or fails in CI) when PostgreSQL is not answering
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bertjobs_updown_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _view_columns(engine, view: str) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(view)]


@pytest.mark.slow
def test_multi_label_columns_go_up_and_down_keeping_data_and_views(empty_db_url):
    url = empty_db_url
    upgrade(url, "0003")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO documents (collection, external_id, text, label) VALUES ('c', 'a', 'x', 'pos')"))
        conn.execute(text("INSERT INTO model_versions (name, version, status, base_model, artifact_path, "
                          "artifact_sha256, labels, hyperparameters, metrics, lineage) "
                          "VALUES ('m', 1, 'ready', 'b', '/p', 's', '[]', '{}', '{}', '{}')"))
        conn.execute(text("INSERT INTO model_aliases (name, alias, model_version_id) VALUES ('m', 'production', 1)"))
        conn.execute(text("INSERT INTO predictions (document_id, model_version_id, label, score) "
                          "VALUES (1, 1, 'pos', 0.5)"))
    upgrade(url)
    check(url)
    for view in ("latest_predictions", "production_predictions", "low_confidence_predictions"):
        assert {"gold_labels", "labels"} <= set(_view_columns(engine, view)), view
    with engine.begin() as conn:
        conn.execute(text("""UPDATE documents SET labels = '["a", "b"]'"""))
        conn.execute(text("""UPDATE predictions SET labels = '["a"]'"""))
        row = conn.execute(text("SELECT gold_label, gold_labels, label, labels FROM low_confidence_predictions")).one()
    as_list = (lambda v: json.loads(v) if isinstance(v, str) else v)  # noqa: E731 - SQLite views return JSON text
    assert (row[0], as_list(row[1]), row[2], as_list(row[3])) == ("pos", ["a", "b"], "pos", ["a"])

    command.downgrade(alembic_config(url), "0003")
    engine.dispose()
    engine = make_engine(url)
    assert "labels" not in {c["name"] for c in inspect(engine).get_columns("documents")}
    assert "labels" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
    for view in ("latest_predictions", "production_predictions", "low_confidence_predictions"):
        assert "labels" not in _view_columns(engine, view), view
    with engine.begin() as conn:
        assert conn.execute(text("SELECT external_id, gold_label, label FROM latest_predictions")).one() == \
            ("a", "pos", "pos")
        assert conn.execute(text("SELECT count(*) FROM low_confidence_predictions")).scalar() == 1
    upgrade(url)
    check(url)
    with engine.begin() as conn:  # the predictions survived both ways (no table rebuild cascaded them away)
        assert conn.execute(text("SELECT label, labels FROM predictions")).one() == ("pos", None)
    engine.dispose()
