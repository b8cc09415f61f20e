"""Tokenization and batching: dynamic padding over length-sorted batches.

Padding to the longest text in a random batch wastes most of the compute on short texts; sorting by
length inside a bounded window keeps every batch nearly rectangular. Callers restore the original order.
"""
from __future__ import annotations

import copy
import itertools
import random
from typing import Iterator, Sequence

import numpy as np
import torch

from worker.ml.ascii_tokens import ascii_road, encode_ids
from worker.ml.config import HEAD_FRACTION
from worker.ml.device import autocast
from worker.ml.head_tail import encode_head_tail


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length``, no padding: those of ``tokenizer(texts, truncation=True,
    max_length=max_length)``, taken straight from a fast tokenizer's Rust backend (``truncating_backend``), pure-ASCII
    texts of a BERT tokenizer by a cheaper road to the same ids (worker/ml/ascii_tokens.py)."""
    if not texts:
        return []
    kept = _kept_backend(tokenizer, max_length)
    if kept is not None:
        return encode_ids(*kept, texts)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
    return encoded["input_ids"]


def truncating_backend(tokenizer, max_length: int):
    """A copy of a fast tokenizer's Rust backend that cuts at ``max_length`` as ``tokenizer(..., truncation=True)``
    does, kept on ``tokenizer`` with its ``ascii_road`` (see ``_Backends``); None for a tokenizer without one.
    Calling it skips what inference does not need: the backend's settings changed and restored per call, offsets,
    attention masks, type ids and the BatchEncoding of Python lists."""
    kept = _kept_backend(tokenizer, max_length)
    return None if kept is None else kept[0]


def _kept_backend(tokenizer, max_length: int):
    """(truncating backend, its ascii_road or None) kept on ``tokenizer``, made on first use; None for a tokenizer
    without a Rust backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast") or getattr(tokenizer, "split_special_tokens", False):
        return None
    kept = tokenizer.__dict__.setdefault("_truncating_backends", _Backends())
    key = (max_length, tokenizer.truncation_side)
    if key not in kept:
        own = type(backend).from_str(backend.to_str())
        own.no_padding()
        own.enable_truncation(max_length, stride=0, strategy="longest_first", direction=key[1])
        kept[key] = own, ascii_road(own)
    return kept[key]


class _Backends(dict):
    """(max_length, truncation side) -> (truncating backend, its ascii_road or None), kept on a tokenizer object.
    Nothing changes a backend once it is made (unlike the tokenizer's own, whose settings each call sets), so
    the tokenizer's copies for other threads (``Classifier.own_tokenizer``) share them rather than copy each
    (about 40 ms a backend); each copy's road gets its own word cache."""

    def __deepcopy__(self, memo) -> "_Backends":
        return _Backends({key: (backend, copy.deepcopy(road, memo)) for key, (backend, road) in self.items()})


CHARS_PER_TOKEN_CAP = 8  # a truncated text is first tokenized from its first max_length * this many characters


def encode_capped(tokenizer, texts: Sequence[str], max_length: int, long_documents: str = "truncate",
                  **windows) -> tuple[list[list[int]], list[int]]:
    """``encode``, without tokenizing what truncation drops: a long text is tokenized from a prefix cut at a
    whitespace (normalization and pre-tokenization are local, so the prefix's tokens are the text's tokens up to
    the cut). A prefix counts only when it fills ``max_length``; one that does not is tried again four times as
    long, up to the whole text. Windows and head+tail read to the end of the text, so they are not capped."""
    cap = max_length * CHARS_PER_TOKEN_CAP
    if long_documents != "truncate" or not any(len(t) > cap for t in texts):
        return encode(tokenizer, texts, max_length, long_documents, **windows)
    ids: list = [None] * len(texts)
    todo = list(range(len(texts)))
    while todo:
        cut = [_prefix(texts[i], cap) for i in todo]
        for i, c, x in zip(todo, cut, tokenize(tokenizer, cut, max_length)):
            if len(x) >= max_length or len(c) == len(texts[i]):
                ids[i] = x
        todo, cap = [i for i in todo if ids[i] is None], cap * 4
    return ids, list(range(len(texts)))


def _prefix(text: str, cap: int) -> str:
    """``text`` up to the last whitespace within its first ``cap`` characters (all of it when it is short)."""
    if len(text) <= cap:
        return text
    end = max(text.rfind(" ", 0, cap), text.rfind("\n", 0, cap), text.rfind("\t", 0, cap))
    return text[:end].rstrip() if end > 0 else text


def encode(tokenizer, texts: Sequence[str], max_length: int, long_documents: str = "truncate",
           window_overlap: int = 32, max_windows: int = 16,
           head_fraction: float = HEAD_FRACTION) -> tuple[list[list[int]], list[int]]:
    """Token ids per model input and the text each came from.

    ``truncate``: one input per text, cut at ``max_length``. ``head_tail``: one input per text, a long one keeping
    its first ``head_fraction`` and its last tokens (worker/ml/head_tail.py). ``windows``: a long text becomes up to
    ``max_windows`` inputs of ``max_length`` tokens, consecutive ones sharing ``window_overlap`` tokens; its
    prediction pools its windows' logits (worker/ml/longdocs.py).
    """
    if long_documents == "truncate" or not texts:
        return tokenize(tokenizer, texts, max_length), list(range(len(texts)))
    if long_documents == "head_tail":
        return encode_head_tail(tokenizer, texts, max_length, head_fraction), list(range(len(texts)))
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, stride=window_overlap,
                        return_overflowing_tokens=True, padding=False, return_attention_mask=False,
                        return_token_type_ids=False)
    ids, owners, per_text = [], [], [0] * len(texts)
    for seq, owner in zip(encoded["input_ids"], encoded["overflow_to_sample_mapping"]):
        if per_text[owner] < max_windows:
            per_text[owner] += 1
            ids.append(seq)
            owners.append(owner)
    return ids, owners


def average_by_owner(logits: torch.Tensor, owners: Sequence[int], n: int) -> torch.Tensor:
    """Mean of the rows of ``logits`` that belong to each of ``n`` texts (windows to documents).

    ``owners`` comes from ``encode``: every text has at least one row, in order, so as many rows as texts
    means one each and the logits are already per text."""
    if len(owners) == n:
        return logits
    index = torch.as_tensor(owners, device=logits.device)
    sums = torch.zeros((n, logits.shape[-1]), dtype=logits.dtype, device=logits.device).index_add_(0, index, logits)
    counts = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_add_(
        0, index, torch.ones(len(owners), dtype=logits.dtype, device=logits.device))
    return sums / counts.clamp(min=1).unsqueeze(-1)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches over texts sorted by length (longest first, so memory errors show up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


TOKENS_PER_TEXT = 32  # the token budget of a batch is batch_size texts of this many tokens


def token_budget_batches(lengths: Sequence[int], batch_size: int, tokens_per_text: int = TOKENS_PER_TEXT,
                         max_texts: int | None = None) -> list[list[int]]:
    """Length-sorted batches (longest first) holding at most ``batch_size * tokens_per_text`` padded tokens.

    Short texts share a batch with many others and long ones with few, so every batch does about the same
    work and holds a narrow band of lengths: less padding than a fixed count per batch (measured on Rotten
    Tomatoes pages of 512: 1.12x the useful FLOPs against 1.16x for batches of 64).
    """
    budget = batch_size * tokens_per_text
    max_texts = max_texts or batch_size * 4
    min_texts = max(1, batch_size // 4)  # very long texts still share a batch (a quarter of batch_size)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        full = bool(current) and (len(current) + 1) * lengths[current[0]] > budget and len(current) >= min_texts
        if full or len(current) >= max_texts:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           window_batches: int = 50) -> list[list[int]]:
    """Training batches: shuffle, sort inside windows of ``window_batches`` batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(ids: Sequence[Sequence[int]], pad_id: int, pad_to_multiple: int = 1,
            pin: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch (rounded up to ``pad_to_multiple``), filled in one numpy step;
    ``pin``: in page-locked memory, for a non-blocking copy to a GPU."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max())
    if pad_to_multiple > 1:
        width = -(-width // pad_to_multiple) * pad_to_multiple
    attention = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    input_ids[attention] = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    out = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention.astype(np.int64))}
    return {k: v.pin_memory() for k, v in out.items()} if pin else out


def batch_logits(model, token_ids: Sequence[Sequence[int]], batches: Sequence[Sequence[int]], n_labels: int,
                 pad_id: int, device: torch.device, precision: str) -> torch.Tensor:
    """The model's logits for every input (float32, on the CPU, in input order), batch by batch. The logits stay on
    the device until the last batch, so a GPU is synchronised once per call, not once per batch."""
    logits = torch.empty((len(token_ids), n_labels), dtype=torch.float32, device=device)
    with torch.inference_mode():
        for batch, tensors in iter_batches(token_ids, batches, pad_id, device):
            with autocast(device, precision):
                logits[torch.as_tensor(batch, device=device)] = model(**tensors).logits.float()
    return logits.cpu()


def iter_batches(token_ids: Sequence[Sequence[int]], batches: Sequence[Sequence[int]], pad_id: int,
                 device: torch.device) -> Iterator[tuple[Sequence[int], dict[str, torch.Tensor]]]:
    cuda = device.type == "cuda"
    for batch in batches:
        tensors = collate([token_ids[i] for i in batch], pad_id, 8 if cuda else 1, pin=cuda)
        yield batch, {k: v.to(device, non_blocking=True) for k, v in tensors.items()}
