"""A cheaper road through a BERT tokenizer for pure-ASCII texts, giving the same token ids.

On ASCII text BERT's normalizer (``BertNormalizer``) only drops control characters, turns tabs and line breaks
into spaces and lowercases (accent stripping and the spacing of CJK characters change nothing), and its
pre-tokenizer (``BertPreTokenizer``) splits at whitespace and around each ASCII punctuation mark. Python's string
methods do both for a fraction of what the Rust tokenizer spends (it keeps an alignment for every character), and
the words they give are the ones WordPiece sees: WordPiece reads each word alone, so a word's ids are the same in
every text. They are kept in a bounded cache (a word seen first goes through a copy of the Rust backend with no
normalizer and a plain whitespace split), and a text's ids are its words' ids cut as the tokenizer's truncation
cuts them, between the post-processor's special tokens ([CLS] ... [SEP]). Measured on Rotten Tomatoes pages of
512: about 13 against 55 microseconds a text (bench/README.md).

A text that is not ASCII, or that holds the first character of an added token (``[CLS]``, ``[MASK]``...: those
are matched before normalization), goes the usual way. Tokenizers of another kind get no road.
"""
from __future__ import annotations

import json
import re
import string
from itertools import chain
from typing import Sequence

# ASCII control characters (Unicode Cc) as BertNormalizer's clean_text treats them: tab, line feed and carriage
# return become spaces, the others (NUL included) are dropped.
_CLEAN = str.maketrans({**{c: None for c in (*range(32), 127)}, 9: " ", 10: " ", 13: " "})
# BertPreTokenizer isolates every ASCII punctuation mark (Rust's is_ascii_punctuation: string.punctuation).
_PUNCTUATION = re.compile(f"([{re.escape(string.punctuation)}])")
MAX_GUARD_CHARACTERS = 8  # more added tokens than this: the per-text check would cost more than it saves
CACHED_WORDS = 50_000  # the cache is emptied when it would grow past this (a few megabytes per tokenizer copy)
CACHED_WORD_CHARS = 64  # longer words are looked up for the call at hand only


class AsciiRoad:
    """Token ids of ASCII texts from their words' cached ids; ``words_backend`` gives a new word's ids."""

    def __init__(self, words_backend, lowercase: bool, guard: frozenset[str], prefix: list[int],
                 suffix: list[int], budget: int | None, keep_end: bool):
        self.words_backend = words_backend
        self.lowercase = lowercase
        self.guard = guard
        self.prefix, self.suffix = prefix, suffix  # the post-processor's special tokens around a text's ids
        self.budget, self.keep_end = budget, keep_end  # truncation: how many ids a text keeps, the last ones?
        self.cache: dict[str, list[int]] = {}

    def __deepcopy__(self, memo) -> "AsciiRoad":
        """A copy for another thread (``Classifier.own_tokenizer`` copies the tokenizer): the same backend (nothing
        changes it once made), its own empty cache."""
        return AsciiRoad(self.words_backend, self.lowercase, self.guard, self.prefix, self.suffix, self.budget,
                         self.keep_end)

    def words(self, text: str) -> list[str] | None:
        """``text``'s words as WordPiece sees them, or None when it must take the usual way."""
        if not text.isascii() or any(map(text.__contains__, self.guard)):
            return None
        if not text.isprintable():  # in ASCII: a control character, tab or line break
            text = text.translate(_CLEAN)
        if self.lowercase:
            text = text.lower()
        return " ".join(_PUNCTUATION.split(text)).split()

    def ids(self, pages_words: Sequence[list[str] | None]) -> list[list[int] | None]:
        """The ids of each text's words (None stays None), as the tokenizer's own call gives them."""
        cache = self.cache
        needed = set(chain.from_iterable(w for w in pages_words if w is not None))
        new = list(needed.difference(cache))
        if new:
            if len(cache) + len(new) > CACHED_WORDS:
                cache.clear()
                new = list(needed)
            for word, encoding in zip(new, self.words_backend.encode_batch_fast(new, add_special_tokens=False)):
                cache[word] = encoding.ids
        lookup, prefix, suffix, budget = cache.__getitem__, self.prefix, self.suffix, self.budget
        out: list[list[int] | None] = []
        for words in pages_words:
            if words is None:
                out.append(None)
                continue
            ids = list(chain.from_iterable(map(lookup, words)))
            if budget is not None and len(ids) > budget:
                ids = ids[len(ids) - budget:] if self.keep_end else ids[:budget]
            out.append([*prefix, *ids, *suffix])
        for word in new:
            if len(word) > CACHED_WORD_CHARS:
                cache.pop(word, None)
        return out


def ascii_road(backend) -> AsciiRoad | None:
    """The road for ``backend`` (with its truncation), or None for a tokenizer whose normalizer or pre-tokenizer is
    not BERT's (or that cleans no control characters), or whose post-processing or truncation it cannot follow."""
    config = json.loads(backend.to_str())
    normalizer, pre_tokenizer = config.get("normalizer") or {}, config.get("pre_tokenizer") or {}
    if (normalizer.get("type") != "BertNormalizer" or not normalizer.get("clean_text")
            or pre_tokenizer.get("type") != "BertPreTokenizer" or config.get("padding")):
        return None
    guard = set()
    for token in backend.get_added_tokens_decoder().values():
        for form in (token.content, backend.normalizer.normalize_str(token.content)):
            guard.update(c for first in form[:1] for c in (first, first.lower(), first.upper()))
    if len(guard) > MAX_GUARD_CHARACTERS or any(c.isspace() for c in guard):  # spaces: words() adds them
        return None
    config["normalizer"], config["pre_tokenizer"] = None, {"type": "WhitespaceSplit"}
    config["truncation"] = None
    words_backend = type(backend).from_str(json.dumps(config))
    around = _special_tokens(backend, words_backend)
    truncation = backend.truncation
    if around is None or (truncation and truncation["strategy"] not in ("longest_first", "only_first")):
        return None
    prefix, suffix = around
    budget = truncation["max_length"] - len(prefix) - len(suffix) if truncation else None
    if budget is not None and budget < 1:
        return None
    return AsciiRoad(words_backend, bool(normalizer.get("lowercase")), frozenset(guard), prefix, suffix, budget,
                     bool(truncation) and truncation["direction"] == "left")


def _special_tokens(backend, words_backend) -> tuple[list[int], list[int]] | None:
    """The ids the post-processor puts before and after a text's own ids (BERT: [CLS] and [SEP]), found by
    encoding a text of one word with and without them; None when they do not simply surround it."""
    alone = backend.encode("", add_special_tokens=True).ids
    word = words_backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a", add_special_tokens=True).ids
    for cut in range(len(alone) + 1):
        if full == alone[:cut] + word + alone[cut:]:
            return alone[:cut], alone[cut:]
    return None


def encode_ids(backend, road: AsciiRoad | None, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of ``texts`` from ``backend``; those ``road`` can take go through it (same ids, less work)."""
    if road is None:
        return [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=True)]
    ids = road.ids([road.words(t) for t in texts])
    usual = [i for i, x in enumerate(ids) if x is None]
    if usual:
        for i, e in zip(usual, backend.encode_batch_fast([texts[i] for i in usual], add_special_tokens=True)):
            ids[i] = e.ids
    return ids  # type: ignore[return-value]
