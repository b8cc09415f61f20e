"""What every page shares: one data function served twice (HTML and ``/api``), query parsing, errors."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.names import check_name, parse_model_ref

# A page's data: (session, path parameters, query parameters) -> one JSON document.
DataFn = Callable[[Session, dict[str, Any], Any], dict[str, Any]]

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class BadRequest(ValueError):
    """A wrong query parameter; answered 400 with one line."""


class NotFound(LookupError):
    """No such job, model version or collection; answered 404 with one line."""


def dumps(value: Any) -> str:
    """The CLI's JSON: keys sorted, anything else (times, decimals) as a string."""
    return json.dumps(value, sort_keys=True, default=str)


class JSONDocument(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def page(path: str, name: str, data: DataFn, template: str) -> list[Route]:
    """The page at ``path`` (rendered with ``template``) and its JSON at ``/api`` + ``path``: one data function."""

    def load(request: Request) -> dict[str, Any]:
        with request.app.state.sessions() as session:
            return data(session, request.path_params, request.query_params)

    def html(request: Request) -> Response:
        return request.app.state.templates.TemplateResponse(request, template, {"data": load(request), "page": name})

    def api(request: Request) -> Response:
        return JSONDocument(load(request))

    return [Route(path, html, methods=["GET"], name=name), Route("/api" + path, api, methods=["GET"], name="api_" + name)]


# ---------------------------------------------------------------- query parameters


def int_param(query, key: str, *, default: int | None = None, low: int = 0, high: int | None = None) -> int | None:
    raw = query.get(key)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{key} must be a whole number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{key} must be between {low} and {high}, got {value}" if high is not None
                         else f"{key} must be at least {low}, got {value}")
    return value


def limit_param(query) -> int:
    return int_param(query, "limit", default=PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)


def choice_param(query, key: str, choices) -> str | None:
    raw = query.get(key) or None
    if raw is not None and raw not in choices:
        raise BadRequest(f"{key} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def name_param(query, key: str, what: str) -> str | None:
    """A collection or model name; the name rule (db.names) applies, as on the command line."""
    raw = query.get(key) or None
    if raw is not None:
        try:
            check_name(what, raw)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    return raw


def model_param(query, key: str = "model") -> str | None:
    """A model name or ``name:N``."""
    raw = query.get(key) or None
    if raw is not None:
        try:
            selector = parse_model_ref(raw)[1]
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if isinstance(selector, str):
            raise BadRequest(f"{key} must be a model name or name:N, got {raw!r}")
    return raw


def date_param(query, key: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (UTC) as the start of that day, or of the next one for an inclusive end."""
    raw = query.get(key) or None
    if raw is None:
        return None
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest(f"{key} must be a date YYYY-MM-DD, got {raw!r}") from None
    return day + timedelta(days=1) if end else day


def keyset(rows: list, limit: int, key: Callable[[Any], int]) -> tuple[list, int | None]:
    """A page read with ``limit + 1`` rows: the page, and the cursor of the next one (None on the last page)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, key(rows[-1])
