"""The application: pages, static files, the token gate, errors, and a database connection that cannot write."""
from __future__ import annotations

import base64
import hmac
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from db.session import make_engine, make_session_factory
from worker.config import Settings, get_settings
from worker.web import filters
from worker.web.common import BadRequest, JSONDocument, NotFound
from worker.web.pages import collections, compare, jobs, models

HERE = Path(__file__).resolve().parent


def readonly_sessions(url: str):
    """Sessions whose transactions cannot write: PostgreSQL READ ONLY transactions, SQLite ``query_only``."""
    if make_url(url).get_backend_name() == "postgresql":
        return make_session_factory(make_engine(url, execution_options={"postgresql_readonly": True}))
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _query_only(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    return make_session_factory(engine)


def templates() -> Jinja2Templates:
    """Jinja2 with autoescape on for every template: document text is never rendered as markup."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    filters.install(env)
    return Jinja2Templates(env=env)


class TokenGate:
    """With a token set, every request carries it: ``Authorization: Bearer TOKEN``, or HTTP Basic with the
    token as the password (what a browser asks for after the 401)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    def _allowed(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip().encode()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except ValueError:
                return False
        else:
            return False
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.token:
            header = Request(scope).headers.get("authorization", "")
            if not self._allowed(header):
                response = PlainTextResponse("a token is required: BERTJOBS_UI_TOKEN (Authorization: Bearer, or the "
                                             "password of HTTP Basic)\n", status_code=401,
                                             headers={"WWW-Authenticate": 'Basic realm="bertjobs"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, message: str):
    async def handler(request: Request, exc: Exception) -> Response:
        text = message or str(exc)
        if request.url.path.startswith("/api/"):
            return JSONDocument({"error": text}, status_code=status)
        return request.app.state.templates.TemplateResponse(
            request, "error.html", {"status": status, "message": text, "page": "error"}, status_code=status)

    return handler


def _database_error(url: str):
    safe = make_url(url).render_as_string(hide_password=True)

    async def handler(request: Request, exc: DBAPIError) -> Response:
        text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return await _error(503, f"database at {safe}: {text}")(request, exc)

    return handler


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    routes: list[Any] = [
        Route("/", lambda request: RedirectResponse("/jobs"), methods=["GET"]),
        *jobs.routes(), *models.routes(), *compare.routes(), *collections.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {BadRequest: _error(400, ""), NotFound: _error(404, ""), 404: _error(404, "no such page"),
                405: _error(405, "read-only: this view changes nothing (use the CLI or the client)"),
                DBAPIError: _database_error(settings.resolved_database_url)}
    app = Starlette(routes=routes, exception_handlers=handlers,
                    middleware=[Middleware(TokenGate, token=settings.ui_token)])
    app.state.sessions = readonly_sessions(settings.resolved_database_url)
    app.state.templates = templates()
    app.state.settings = settings
    return app
