"""The one rule for collection, model and alias names, and the parser of model references.

A name is 1-64 characters: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or a digit (so no
``/``, ``:``, ``@``, whitespace, and never ``.`` or ``..``). Every command that creates a name (import, train,
promote) and every one that reads one (classify, results, models, data check) checks it here.

Pure (imports nothing of ours), so the repository layer and every interface share it.
"""
from __future__ import annotations

import re
from typing import Any


class InvalidName(ValueError):
    """A collection, model or alias name that breaks the name rule; never retried."""


MAX_NAME_CHARS = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
RULE = f"1-{MAX_NAME_CHARS} letters, digits, '_', '-' or '.', starting with a letter or a digit"


def check_name(kind: str, value: Any) -> str:
    """``value`` if it is a valid ``kind`` name ("collection", "model name", "alias"); else InvalidName."""
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS or not _NAME.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "..."
        raise InvalidName(f"{kind} must be {RULE}, got {shown}")
    return value


def format_model_ref(name: str, version: int) -> str:
    """The reference to one version of a model, ``name:version`` (what a job is pinned to); see ModelVersion.ref."""
    return f"{name}:{version}"


def parse_model_ref(ref: Any) -> tuple[str, int | str | None]:
    """``name`` (latest), ``name:3`` (a version) or ``name@alias``, each part checked; else InvalidName."""
    if not isinstance(ref, str):
        raise InvalidName(f"a model reference is NAME, NAME:VERSION or NAME@ALIAS, got {ref!r}")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return check_name("model name", name), check_name("alias", alias)
    if ":" in ref:
        name, version = ref.split(":", 1)
        check_name("model name", name)
        if not (version.isascii() and version.isdigit()):
            raise InvalidName(f"model version must be a number: {ref!r}")
        return name, int(version)
    return check_name("model name", ref), None
