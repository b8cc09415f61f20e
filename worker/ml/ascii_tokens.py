"""A cheaper road through a BERT tokenizer for pure-ASCII texts, giving the same token ids.

On ASCII text BERT's normalizer (``BertNormalizer``) only drops control characters, turns tabs and line breaks
into spaces and lowercases (accent stripping and the spacing of CJK characters change nothing), and its
pre-tokenizer (``BertPreTokenizer``) splits at whitespace and around each ASCII punctuation mark. Python's string
methods do both for a fraction of what the Rust tokenizer spends (it keeps an alignment for every character it
normalizes), so an ASCII text is normalized and spaced here and handed to a copy of the backend with no
normalizer and a plain whitespace split: the same words reach the same WordPiece model, truncation and
post-processing. Measured on Rotten Tomatoes pages of 512: 28-30 against 55 microseconds a text (bench/README.md).

A text that is not ASCII, or that holds the first character of an added token (``[CLS]``, ``[MASK]``...: those
are matched before normalization), goes the usual way. Tokenizers of another kind get no road.
"""
from __future__ import annotations

import json
import re
import string
from typing import Sequence

# ASCII control characters (Unicode Cc) as BertNormalizer's clean_text treats them: tab, line feed and carriage
# return become spaces, the others (NUL included) are dropped.
_CLEAN = str.maketrans({**{c: None for c in (*range(32), 127)}, 9: " ", 10: " ", 13: " "})
# BertPreTokenizer isolates every ASCII punctuation mark (Rust's is_ascii_punctuation: string.punctuation).
_PUNCTUATION = re.compile(f"([{re.escape(string.punctuation)}])")
MAX_GUARD_CHARACTERS = 8  # more added tokens than this: the per-text check would cost more than it saves


class AsciiRoad:
    """``backend`` (no normalizer, whitespace split) takes the texts ``ready`` returns."""

    def __init__(self, backend, lowercase: bool, guard: frozenset[str]):
        self.backend = backend
        self.lowercase = lowercase
        self.guard = guard

    def ready(self, text: str) -> str | None:
        """``text`` normalized and spaced at its punctuation, or None when it must take the usual way."""
        if not text.isascii() or any(c in text for c in self.guard):
            return None
        if not text.isprintable():  # in ASCII: a control character, tab or line break
            text = text.translate(_CLEAN)
        if self.lowercase:
            text = text.lower()
        return " ".join(_PUNCTUATION.split(text))


def ascii_road(backend) -> AsciiRoad | None:
    """The road for a copy of ``backend`` (with its truncation and padding), or None for a tokenizer whose
    normalizer or pre-tokenizer is not BERT's (or that cleans no control characters)."""
    config = json.loads(backend.to_str())
    normalizer, pre_tokenizer = config.get("normalizer") or {}, config.get("pre_tokenizer") or {}
    if (normalizer.get("type") != "BertNormalizer" or not normalizer.get("clean_text")
            or pre_tokenizer.get("type") != "BertPreTokenizer"):
        return None
    guard = set()
    for token in backend.get_added_tokens_decoder().values():
        for form in (token.content, backend.normalizer.normalize_str(token.content)):
            guard.update(c for first in form[:1] for c in (first, first.lower(), first.upper()))
    if len(guard) > MAX_GUARD_CHARACTERS or any(c.isspace() for c in guard):  # spaces: ready() adds them
        return None
    config["normalizer"], config["pre_tokenizer"] = None, {"type": "WhitespaceSplit"}
    return AsciiRoad(type(backend).from_str(json.dumps(config)), bool(normalizer.get("lowercase")),
                     frozenset(guard))


def encode_ids(backend, road: AsciiRoad | None, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of ``texts`` from ``backend``; those ``road`` can take go through it (same ids, less work)."""
    if road is None:
        return [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=True)]
    ready = [road.ready(t) for t in texts]
    if None not in ready:
        return [e.ids for e in road.backend.encode_batch_fast(ready, add_special_tokens=True)]
    ids: list = [None] * len(texts)
    fast = [i for i, r in enumerate(ready) if r is not None]
    slow = [i for i, r in enumerate(ready) if r is None]
    for group, encoder, inputs in ((fast, road.backend, ready), (slow, backend, texts)):
        for i, e in zip(group, encoder.encode_batch_fast([inputs[i] for i in group], add_special_tokens=True)):
            ids[i] = e.ids
    return ids
