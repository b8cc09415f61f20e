"""`bertjobs db upgrade|check|settings`: the schema migrations (db/migrate.py), and the settings the SQL views read
(the view_settings row: `upgrade` writes it from the environment, `settings` shows it)."""
from __future__ import annotations

from worker.cli.common import json_flag, safe_url, sessions
from worker.config import get_settings


def cmd_upgrade(args) -> int:
    from db import migrate, repo

    settings = get_settings()
    url = settings.resolved_database_url
    migrate.upgrade(url)
    with sessions().begin() as s:
        repo.write_view_settings(s, low_confidence_threshold=settings.low_confidence_threshold)
    print(f"database at {safe_url(url)} is at the latest schema; low_confidence_predictions lists top scores "
          f"below {settings.low_confidence_threshold:g} (BERTJOBS_LOW_CONFIDENCE_THRESHOLD)")
    return 0


def cmd_check(args) -> int:
    from db import migrate

    migrate.check(get_settings().resolved_database_url)
    print("models and migrations agree")
    return 0


def cmd_settings(args) -> int:
    """What the views read, beside what the environment says (they differ until the next `db upgrade`)."""
    from db import repo
    from worker.present import print_json

    with sessions().begin() as s:
        row = repo.read_view_settings(s)
    stored = row.low_confidence_threshold if row is not None else None
    wanted = get_settings().low_confidence_threshold
    if getattr(args, "json", False):
        print_json({"low_confidence_threshold": {"database": stored, "setting": wanted}})
        return 0
    shown = "- (no row: the view cuts at 0.6)" if stored is None else f"{stored:g}"
    print(f"low_confidence_threshold  {shown}  (BERTJOBS_LOW_CONFIDENCE_THRESHOLD: {wanted:g})")
    if stored != wanted:
        print("the setting differs from what the view reads: run `bertjobs db upgrade` to write it")
    return 0


ACTIONS = {"upgrade": cmd_upgrade, "check": cmd_check, "settings": cmd_settings}


def register(sub) -> None:
    db = sub.add_parser("db", help="schema migrations and the settings the SQL views read", parents=[json_flag()])
    db.add_argument("action", choices=list(ACTIONS))
    db.set_defaults(func=lambda args: ACTIONS[args.action](args))
