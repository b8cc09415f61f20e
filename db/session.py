"""Engines and sessions. Takes a URL; never reads the environment."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_database_url(url: str) -> str:
    """Accept the URL forms people paste (``postgres://``, ``postgresql://``) and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys, their folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() == "postgresql":
        # A paused or hung process must not hold row locks forever: the server ends a session that sits
        # idle inside a transaction for a minute (no bertjobs transaction waits on anything but the database).
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("options", "-c idle_in_transaction_session_timeout=60000")
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


_factories: dict[tuple[str, float | None], sessionmaker[Session]] = {}


def session_factory_for(url: str, *, idle_in_transaction_seconds: float | None = None) -> sessionmaker[Session]:
    """One engine and session factory per URL per process (created lazily, so a forked child makes its own).

    ``idle_in_transaction_seconds`` (PostgreSQL): the server ends a session idle inside a transaction that long
    (default a minute). Workers pass about their lease, so a frozen worker's row locks go with its lease."""
    key = (url, idle_in_transaction_seconds)
    if key not in _factories:
        kwargs = {}
        if idle_in_transaction_seconds is not None and make_url(url).get_backend_name() == "postgresql":
            timeout_ms = max(1000, int(idle_in_transaction_seconds * 1000))
            kwargs["connect_args"] = {"options": f"-c idle_in_transaction_session_timeout={timeout_ms}"}
        _factories[key] = make_session_factory(make_engine(url, **kwargs))
    return _factories[key]


def dispose_all() -> None:
    """Forget engines inherited from a parent process (call after fork)."""
    for factory in _factories.values():
        factory.kw["bind"].dispose(close=False)
    _factories.clear()
