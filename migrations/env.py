"""Alembic environment. Imports only db: the URL comes from the caller (db.migrate passes it in the Config),
or, for ``alembic -c migrations/alembic.ini ...`` run by hand, from ``sqlalchemy.url`` or BERTJOBS_DATABASE_URL.
"""
from __future__ import annotations

import os

from alembic import context

from db.models import Base
from db.session import make_engine, normalise_database_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    url = os.environ.get("BERTJOBS_DATABASE_URL", "").strip()  # read as worker/config.py reads it
    if not url:
        raise SystemExit("error: set BERTJOBS_DATABASE_URL to run alembic by hand "
                         "(`bertjobs db upgrade` also knows the default SQLite file)")
    return normalise_database_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
