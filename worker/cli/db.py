"""`bertjobs db upgrade|check`: the schema migrations (db/migrate.py)."""
from __future__ import annotations

from worker.cli.common import safe_url
from worker.config import get_settings


def cmd_upgrade(args) -> int:
    from db import migrate

    url = get_settings().resolved_database_url
    migrate.upgrade(url)
    print(f"database at {safe_url(url)} is at the latest schema")
    return 0


def cmd_check(args) -> int:
    from db import migrate

    migrate.check(get_settings().resolved_database_url)
    print("models and migrations agree")
    return 0


ACTIONS = {"upgrade": cmd_upgrade, "check": cmd_check}


def register(sub) -> None:
    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=list(ACTIONS))
    db.set_defaults(func=lambda args: ACTIONS[args.action](args))
