"""``bertjobs ui``: serve the read-only web view. Loopback by default; any other address needs a token."""
from __future__ import annotations

import ipaddress

from worker.config import Settings, get_settings
from worker.errors import PermanentError


class UiRefused(PermanentError, ValueError):
    """The view would be exposed without a token (or cannot start); one line, exit status 2."""


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_bind(host: str, settings: Settings) -> None:
    if not is_loopback(host) and not settings.ui_token:
        raise UiRefused(f"refusing to serve the web view on {host} without a token: set BERTJOBS_UI_TOKEN "
                        "(or bind to 127.0.0.1)")


def _check_schema(settings: Settings) -> None:
    """Fail now, in one line, rather than on every page (DBAPIError: the CLI says to run `db upgrade`)."""
    from sqlalchemy import select

    from db.models import Job
    from db.session import session_factory_for

    with session_factory_for(settings.resolved_database_url)() as session:
        session.execute(select(Job.id).limit(1))


def cmd_ui(args) -> int:
    settings = get_settings()
    host, port = args.host or settings.ui_host, args.port or settings.ui_port
    check_bind(host, settings)
    try:
        import uvicorn

        from worker.web.app import create_app
    except ImportError as exc:
        raise UiRefused(f"the web view needs its packages ({exc.name} is missing): pip install 'bertjobs[ui]'") from None
    _check_schema(settings)
    where = f"[{host}]" if ":" in host else host
    print(f"bertjobs ui: http://{where}:{port}/ (read-only{', token required' if settings.ui_token else ''})",
          flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=args.log_level, access_log=args.access_log)
    return 0


def register(subparsers) -> None:
    ui = subparsers.add_parser(
        "ui", help="serve the read-only web view and JSON API (jobs, models, compare, collections)",
        description="Read-only pages and /api/ JSON over the same database and settings. Binds to "
                    "BERTJOBS_UI_HOST (127.0.0.1); any other address needs BERTJOBS_UI_TOKEN, which every request "
                    "then carries (Authorization: Bearer, or the password of HTTP Basic).")
    ui.add_argument("--host", help="address to bind (default: BERTJOBS_UI_HOST, 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default: BERTJOBS_UI_PORT, 8000)")
    ui.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    ui.add_argument("--access-log", action="store_true", help="log every request")
    ui.set_defaults(func=cmd_ui)
