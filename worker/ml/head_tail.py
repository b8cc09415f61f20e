"""Head+tail truncation: a text too long for one model input keeps its first and its last tokens.

Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification", section 5.3.1) compared head-only, tail-only
and head+tail at 512 tokens on IMDb and Sogou news: the first 128 and the last 382 tokens scored best. ``head_tail``
keeps that split at any ``max_length``: a quarter of the content tokens from the start (128 of 510 is 0.251), the
rest from the end, between the special tokens ([CLS] ... [SEP]). One model input per document, as with truncation,
so it costs what truncation costs; the text is tokenized whole (no character cap) to find its end.
"""
from __future__ import annotations

from typing import Sequence

from worker.ml.config import HEAD_FRACTION


def head_tail(tokens: Sequence[int], budget: int, head: int) -> list[int]:
    """``tokens`` when they fit in ``budget``; else the first ``head`` and the last ``budget - head``."""
    if not 0 <= head <= budget:
        raise ValueError(f"head must be between 0 and the budget {budget}, got {head}")
    if len(tokens) <= budget:
        return list(tokens)
    return list(tokens[:head]) + list(tokens[len(tokens) - (budget - head):])


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after a single text ([CLS] and [SEP] for BERT)."""
    probe = "a"
    full = tokenizer(probe)["input_ids"]
    content = tokenizer(probe, add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(full) - len(content) + 1) if full[i : i + len(content)] == content)
    return full[:start], full[start + len(content):]


def head_tokens(budget: int, head_fraction: float = HEAD_FRACTION) -> int:
    """How many of ``budget`` content tokens come from the start of a long text (the rest from its end)."""
    return round(budget * head_fraction)


def encode_head_tail(tokenizer, texts: Sequence[str], max_length: int,
                     head_fraction: float = HEAD_FRACTION) -> list[list[int]]:
    """Token ids per text (special tokens included), at most ``max_length``: head and tail of long texts; a text
    that fits is tokenized exactly as truncation tokenizes it."""
    if not texts:
        return []
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    content = tokenizer(list(texts), add_special_tokens=False, truncation=False, padding=False,
                        return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"]
    head = head_tokens(budget, head_fraction)
    return [prefix + head_tail(ids, budget, head) + suffix for ids in content]
