"""Template filters and globals: times, numbers, short texts, and the training report's sections."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from worker.ops import report


def when(value: str | None) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` (UTC, as stored)."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def pct(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"


def signed(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):+.{digits}f}"


def short(text: Any, width: int = 120) -> str:
    """One line of at most ``width`` characters (escaped by the template like any other value)."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def plain(value: Any) -> str:
    """A value as text: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def query(params: dict[str, Any], **changes: Any) -> str:
    """A query string: ``params`` with ``changes`` applied, empty values left out."""
    merged = {**params, **changes}
    return "?" + urlencode({k: "1" if v is True else v for k, v in merged.items() if v not in (None, "", False)})


def section(name: str, *args: Any) -> Markup:
    """A section of the training report (worker/ops/report.py builds it with every value escaped)."""
    return Markup(getattr(report, name)(*args))


def install(env: jinja2.Environment) -> None:
    env.filters.update(when=when, num=num, pct=pct, signed=signed, short=short, plain=plain)
    env.globals.update(query=query, section=section)
