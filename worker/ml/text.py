"""Checks on a document's text, shared by import and classification, and the key of near-duplicates (no heavy
imports)."""
from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """The key near-exact duplicates share: case, accents, punctuation and spacing ignored."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _NON_WORD.sub(" ", folded).strip()


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
