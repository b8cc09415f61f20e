"""Checks on a document's text, shared by import and classification (no heavy imports)."""
from __future__ import annotations


def text_problem(text: object, max_chars: int) -> str | None:
    """Why a text cannot be classified, or None when it can."""
    if not isinstance(text, str):
        return "text is not a string"
    if "\x00" in text:
        return "text contains NUL bytes"
    if not text.strip():
        return "text is empty or whitespace"
    if len(text) > max_chars:
        return f"text is longer than {max_chars} characters ({len(text)})"
    return None
