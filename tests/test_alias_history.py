"""Aliases keep their history: rollbacks step back through it, `models list`/`show`/`history` show it."""
from __future__ import annotations

import getpass
import json
import socket

import pytest
from sqlalchemy import text

from db import repo
from db.migrate import upgrade
from db.session import make_engine, session_factory_for
from worker.cli import main


def _register(url: str, name: str, versions: int) -> None:
    """Model version rows (promotion and rollback without a gate never open the artifact)."""
    with session_factory_for(url).begin() as s:
        for _ in range(versions):
            repo.register_model_version(s, name=name, base_model="tiny", status="ready", artifact_path="/none",
                                        artifact_sha256="0" * 64, labels=["neg", "pos"], hyperparameters={},
                                        metrics={"accuracy": 0.5, "macro_f1": 0.5}, lineage={"row_count": 1})


def _production(url: str, name: str = "m") -> int:
    with session_factory_for(url).begin() as s:
        return repo.resolve_model_version(s, f"{name}@production").version


@pytest.mark.slow
def test_rollback_steps_back_through_the_history_and_stops_with_one_line(any_db_url, env_db, capsys):
    url = env_db(any_db_url)
    _register(url, "m", 3)
    for v in (1, 2, 3):
        assert main(["models", "promote", f"m:{v}"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "m@production -> m:3 (was m:2)"

    assert main(["models", "rollback", "m"]) == 0
    assert capsys.readouterr().out.strip() == "m@production -> m:2"
    assert _production(url) == 2
    assert main(["models", "rollback", "m"]) == 0  # further back, not back to m:3
    assert capsys.readouterr().out.strip() == "m@production -> m:1"
    assert _production(url) == 1
    assert main(["models", "rollback", "m"]) == 2
    err = capsys.readouterr().err
    assert err == "error: m@production has no earlier version to roll back to\n"
    assert _production(url) == 1

    # A promotion after rollbacks pushes onto what is left: rolling it back returns to m:1.
    assert main(["models", "promote", "m:3"]) == 0
    assert main(["models", "rollback", "m"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "m@production -> m:1"

    with session_factory_for(url).begin() as s:
        moves = [(m.command, m.model_version_id, m.previous_version_id, m.actor)
                 for m in repo.alias_history(s, "m", "production")]
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert moves == [("promote", 1, None, me), ("promote", 2, 1, me), ("promote", 3, 2, me),
                     ("rollback", 2, 3, me), ("rollback", 1, 2, me), ("promote", 3, 1, me),
                     ("rollback", 1, 3, me)]


def test_models_list_show_and_history_show_the_aliases(any_db_url, env_db, capsys):
    url = env_db(any_db_url)
    _register(url, "m", 2)
    assert main(["models", "promote", "m:1"]) == 0
    assert main(["models", "promote", "m:1", "--alias", "staging"]) == 0
    assert main(["models", "promote", "m:2", "--alias", "staging"]) == 0
    capsys.readouterr()

    assert main(["models", "list", "m"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == ["model", "aliases", "flags", "val_acc", "val_f1", "eval_acc"]
    rows = {line.split()[0]: line.split()[1:6] for line in lines}
    assert rows == {"m:1": ["production", "-", "0.5000", "0.5000", "-"],
                    "m:2": ["staging", "-", "0.5000", "0.5000", "-"]}
    assert main(["models", "show", "m:1"]) == 0
    assert json.loads(capsys.readouterr().out)["aliases"] == ["production"]
    assert main(["models", "show", "m@staging"]) == 0
    assert json.loads(capsys.readouterr().out)["aliases"] == ["staging"]

    assert main(["models", "history", "m", "--alias", "staging"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split()[:2] == ["when", "alias"]
    assert lines[2].split()[2:6] == ["staging", "m:2", "m:1", "promote"]
    assert lines[2].endswith(f"{getpass.getuser()}@{socket.gethostname()}")


def test_unknown_aliases_and_models_are_one_line_errors(any_db_url, env_db, capsys):
    env_db(any_db_url)
    assert main(["models", "rollback", "ghost"]) == 2
    assert capsys.readouterr().err == "error: unknown model 'ghost'\n"
    assert main(["models", "history", "ghost"]) == 2
    assert capsys.readouterr().err == "error: no alias of 'ghost' has moved yet\n"


@pytest.mark.slow
def test_a_gated_promotion_is_recorded_as_such(sqlite_url, env_db, tmp_path, monkeypatch, tiny_base_model,
                                               capsys):
    from helpers import TINY_OPTIONS, load_documents, sentiment_rows

    url = env_db(sqlite_url)
    monkeypatch.setenv("BERTJOBS_MODEL_STORE", str(tmp_path / "models"))
    load_documents(url, "train", sentiment_rows(48))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_OPTIONS.items()]
    assert main(["train", "--collection", "train", "--base-model", tiny_base_model, "--name", "g", "--inline",
                 *flags]) == 0
    assert main(["models", "promote", "g:1", "--gate", "train", "--force"]) == 0  # 10 validation texts: flagged
    assert "g@production -> g:1" in capsys.readouterr().out
    with session_factory_for(url).begin() as s:
        [move] = repo.alias_history(s, "g")
    assert (move.command, move.alias, move.previous_version_id) == ("promote --gate", "production", None)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db_url(request, tmp_path):
    """A database of its own at revision 0004 (before the history)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0004")
        yield url
        return
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from helpers import PG_ADMIN_URL

    request.getfixturevalue("pg_url")  # skips (or fails in CI) when PostgreSQL is not answering
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bertjobs_alias_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url, "0004")
    yield url
    from db.session import dispose_all

    dispose_all()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.slow
def test_the_migration_seeds_the_history_from_existing_aliases(old_db_url, env_db, capsys):
    url = env_db(old_db_url)
    engine = make_engine(url)
    with engine.begin() as conn:
        for v in (1, 2):
            conn.execute(text("INSERT INTO model_versions (name, version, status, base_model, artifact_path, "
                              "artifact_sha256, labels, hyperparameters, metrics, lineage) "
                              f"VALUES ('m', {v}, 'ready', 'b', '/p', 's', '[]', '{{}}', '{{}}', '{{}}')"))
        conn.execute(text("INSERT INTO model_aliases (name, alias, model_version_id, previous_version_id) "
                          "VALUES ('m', 'production', 2, 1)"))
    engine.dispose()
    upgrade(url)
    assert main(["models", "rollback", "m"]) == 0
    assert capsys.readouterr().out.strip() == "m@production -> m:1"
    assert main(["models", "rollback", "m"]) == 2  # the history starts at what the alias held before
    assert "no earlier version" in capsys.readouterr().err

    from alembic import command
    from sqlalchemy import inspect

    from db.migrate import alembic_config, check

    command.downgrade(alembic_config(url), "0004")  # and back: the table goes, the aliases stay
    engine = make_engine(url)
    assert "model_alias_history" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        assert conn.execute(text("SELECT model_version_id FROM model_aliases")).scalar() == 1
    engine.dispose()
    upgrade(url)
    check(url)
