"""Inference: a loaded classifier predicts labels and scores for texts, in length-sorted batches."""
from __future__ import annotations

import contextlib
import copy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from worker.ml.artifact import read_metadata, verify_artifact
from worker.ml.batching import batch_logits, encode, encode_capped, token_budget_batches, truncating_backend
from worker.ml.device import one_cpu_thread, quantize_int8, resolve_device, resolve_precision
from worker.ml.errors import CorruptArtifact, artifact_read_error
from worker.ml.hf import quiet_transformers
from worker.ml.longdocs import pool_logits, reading
from worker.ml.text import text_problem


@contextlib.contextmanager
def _reading_artifact(path: str | Path):
    try:
        yield
    except OSError as exc:  # a storage hiccup is retried; a missing or unreadable file is a bad artifact
        raise artifact_read_error(exc, f"cannot load model artifact {path}") from exc
    except Exception as exc:  # noqa: BLE001 - safetensors, json and tokenizer errors all mean a bad artifact
        raise CorruptArtifact(f"cannot load model artifact {path}: {type(exc).__name__}: {exc}") from exc


def read_tokenizer(path: str | Path):
    """The artifact's tokenizer (call verify_artifact first)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    with _reading_artifact(path):
        return AutoTokenizer.from_pretrained(path)


def read_torch_model(path: str | Path):
    """The artifact's model, from safetensors only, without remote code (call verify_artifact first)."""
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    with _reading_artifact(path):
        return AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, trust_remote_code=False)


def metadata_options(meta: dict) -> dict:
    """The Classifier keywords an artifact's metadata sets: how training read long documents, for a
    multi-label model its thresholds, for a single-label one the temperature calibration fitted (none: 1)."""
    multi = meta.get("multi_label")
    return {"windows": meta.get("windows"), "thresholds": meta.get("thresholds") if multi else None,
            "temperature": None if multi else meta.get("temperature")}


# Guards the spare tokenizer copies classifiers keep for the pipelined reader thread.
_spare_lock = threading.Lock()


@dataclass(frozen=True)
class TextPrediction:
    label: str | None
    score: float | None
    scores: dict[str, float] | None
    error: str | None = None
    labels: list[str] | None = None  # multi-label models: every label at or above its threshold, best first


@dataclass(frozen=True)
class EncodedPage:
    """A page of texts validated and tokenized (``Classifier.prepare``), ready for the forward pass (``run``)."""

    size: int
    failures: dict[int, TextPrediction]  # position -> the failure row of a text that cannot be classified
    valid: list[int]  # positions of the texts that go through the model, in order
    inputs: list[list[list[int]]]  # per valid text: its model inputs (one, or its windows)

    def piece(self, lo: int, hi: int) -> "EncodedPage":
        """The texts at positions ``lo`` to ``hi`` (exclusive), as a page of their own."""
        keep = [k for k, i in enumerate(self.valid) if lo <= i < hi]
        return EncodedPage(min(hi, self.size) - lo, {i - lo: f for i, f in self.failures.items() if lo <= i < hi},
                           [self.valid[k] - lo for k in keep], [self.inputs[k] for k in keep])


def _screen(texts: Sequence[str], max_chars: int) -> tuple[dict[int, TextPrediction], list[int]]:
    """The failure rows of the texts that cannot be classified, and the positions of the others."""
    failures: dict[int, TextPrediction] = {}
    valid = []
    for i, text in enumerate(texts):
        problem = text_problem(text, max_chars)
        if problem:
            failures[i] = TextPrediction(None, None, None, problem)
        else:
            valid.append(i)
    return failures, valid


class Classifier:
    engine = "torch"  # what runs the forward pass (worker/ml/engine.py); recorded on every prediction job

    def __init__(self, model, tokenizer, labels: Sequence[str], max_length: int, device: torch.device,
                 precision: str = "fp32", windows: dict | None = None,
                 thresholds: dict[str, float] | None = None, temperature: float | None = None):
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.device = device
        self.precision = precision
        self.model = self._prepare(model)
        # How training read long documents (truncate, or overlapping windows and how their logits are pooled, as
        # the model version records them): inference must do the same.
        self.windows, self.pooling = reading(windows)
        # Multi-label models: sigmoid scores, and a label is given when its score reaches its tuned threshold.
        self.thresholds = [thresholds[label] for label in self.labels] if thresholds else None
        # Single-label models: scores are softmax(logits / temperature), fitted on the validation split after
        # training (worker/ml/calibration.py), so a score of 0.8 is right about 80% of the time.
        self.temperature = float(temperature or 1.0)

    def _prepare(self, model):
        """The model as the forward pass runs it: on the device, in eval mode, int8-quantized on request."""
        model = model.to(self.device).eval()
        return quantize_int8(model) if self.precision == "int8" else model

    @classmethod
    def from_artifact(cls, path: str | Path, *, sha256: str | None = None, device: str = "auto",
                      precision: str = "auto") -> "Classifier":
        verify_artifact(Path(path), sha256)
        meta = read_metadata(Path(path))
        tokenizer, model = read_tokenizer(path), read_torch_model(path)
        dev = resolve_device(device)
        return cls(model, tokenizer, meta["labels"], meta["max_length"], dev, resolve_precision(dev, precision),
                   **metadata_options(meta))

    def _logits(self, token_ids: Sequence[Sequence[int]], batches: Sequence[Sequence[int]]) -> torch.Tensor:
        return batch_logits(self.model, token_ids, batches, len(self.labels), self.tokenizer.pad_token_id or 0,
                            self.device, self.precision)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[TextPrediction]:
        """Predictions in the order of ``texts``; all texts must be valid (see ``text_problem``)."""
        token_ids, owners = encode(self.tokenizer, texts, self.max_length, **self.windows)
        return self._predict_encoded(token_ids, owners, len(texts), batch_size)

    def _predict_encoded(self, token_ids, owners, n: int, batch_size: int) -> list[TextPrediction]:
        logits = self._logits(token_ids, token_budget_batches([len(t) for t in token_ids], batch_size))
        with one_cpu_thread():
            logits = pool_logits(logits, owners, n, self.pooling, multi_label=self.thresholds is not None)
            if self.thresholds is not None:
                return [self._multi_label(row) for row in torch.sigmoid(logits).tolist()]
            probs = torch.softmax(logits / self.temperature, dim=-1)
            rows = probs.tolist()
            # The first best column of each row, as max() gives it; argmax would pick a NaN where max() does not.
            best = None if probs.isnan().any() else probs.argmax(dim=-1).tolist()
        labels = self.labels
        if best is None:
            columns = range(len(labels))
            best = [max(columns, key=row.__getitem__) for row in rows]
        return [TextPrediction(labels[b], row[b], dict(zip(labels, row))) for b, row in zip(best, rows)]

    def _predict_inputs(self, inputs: Sequence[Sequence[list[int]]], batch_size: int) -> list[TextPrediction]:
        """Predictions for texts already tokenized: ``inputs[i]`` holds text i's model inputs (one, or its windows)."""
        token_ids = [ids for text_inputs in inputs for ids in text_inputs]
        owners = [i for i, text_inputs in enumerate(inputs) for _ in text_inputs]
        return self._predict_encoded(token_ids, owners, len(inputs), batch_size)

    def prepare(self, texts: Sequence[str], max_chars: int = 100_000, tokenizer=None) -> EncodedPage:
        """Validate and tokenize a page (the CPU half of ``predict_or_fail``; ``run`` does the forward pass).
        ``tokenizer``: a clone to use from another thread (see ``tokenizer_clone``)."""
        failures, valid = _screen(texts, max_chars)
        token_ids, owners = encode_capped(tokenizer or self.tokenizer, [texts[i] for i in valid], self.max_length,
                                          **self.windows)
        inputs: list[list[list[int]]] = [[] for _ in valid]
        for ids, owner in zip(token_ids, owners):
            inputs[owner].append(ids)
        return EncodedPage(len(texts), failures, valid, inputs)

    def run(self, page: EncodedPage, batch_size: int = 64) -> list[TextPrediction]:
        """The forward pass over a prepared page: predictions in the page's order, a batch that raises bisected
        until the document that causes it fails alone (as ``predict_or_fail``)."""
        results: list[TextPrediction | None] = [page.failures.get(i) for i in range(page.size)]
        for i, pred in zip(page.valid, self._bisect(page.inputs, batch_size, self._predict_inputs)):
            results[i] = pred
        return results  # type: ignore[return-value]

    @contextlib.contextmanager
    def own_tokenizer(self):
        """A copy of the tokenizer for one thread while the block runs (a fast tokenizer must not be shared
        across threads); copies are kept for the next job, as copying one takes a while."""
        with _spare_lock:
            spare = self.__dict__.setdefault("_spare_tokenizers", [])
            tokenizer = spare.pop() if spare else None
        tokenizer = tokenizer or self._tokenizer_copy()
        try:
            yield tokenizer
        finally:
            with _spare_lock:
                spare.append(tokenizer)

    def _tokenizer_copy(self):
        """A tokenizer for another thread. Texts read by truncation through the Rust backend only ever reach the
        tokenizer's truncating backend (``batching.truncating_backend``), which nothing changes once made: a
        shallow copy with its own word caches will do there. Otherwise (windows, no Rust backend) the tokenizer's
        own call runs, which sets its backend's options per call: a deep copy (about 50 ms)."""
        if self.windows.get("long_documents") == "truncate" and truncating_backend(self.tokenizer,
                                                                                     self.max_length) is not None:
            own = copy.copy(self.tokenizer)
            own.__dict__["_truncating_backends"] = copy.deepcopy(self.tokenizer.__dict__["_truncating_backends"])
            return own
        return copy.deepcopy(self.tokenizer)

    def _multi_label(self, row: list[float]) -> TextPrediction:
        """``label``/``score``: the best label that passed its threshold (None when none did)."""
        passed = sorted((j for j, (p, t) in enumerate(zip(row, self.thresholds)) if p >= t), key=lambda j: -row[j])
        best = passed[0] if passed else max(range(len(row)), key=row.__getitem__)
        return TextPrediction(self.labels[best] if passed else None, row[best], dict(zip(self.labels, row)),
                          labels=[self.labels[j] for j in passed])

    def predict_or_fail(self, texts: Sequence[str], batch_size: int = 64, max_chars: int = 100_000) -> list[TextPrediction]:
        """Like ``predict`` but never raises for one bad text: it gets a failure with its reason.

        Invalid texts are screened out first; a batch that still raises is bisected until the poison
        document fails alone.
        """
        failures, valid = _screen(texts, max_chars)
        results: list[TextPrediction | None] = [failures.get(i) for i in range(len(texts))]
        for i, pred in zip(valid, self._bisect([texts[i] for i in valid], batch_size)):
            results[i] = pred
        return results  # type: ignore[return-value]

    def _bisect(self, items: Sequence, batch_size: int, predict=None) -> list[TextPrediction]:
        """``predict(items, batch_size)`` (texts by default), narrowing any failure to the items that cause it."""
        predict = predict or self.predict
        if not items:
            return []
        try:
            return predict(items, batch_size)
        except torch.cuda.OutOfMemoryError:
            if batch_size > 1:
                torch.cuda.empty_cache()
                return self._bisect(items, batch_size // 2, predict)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is narrowed to the documents that cause it
            if len(items) == 1:
                return [TextPrediction(None, None, None, f"prediction failed: {type(exc).__name__}: {exc}"[:500])]
            mid = len(items) // 2
            return self._bisect(items[:mid], batch_size, predict) + self._bisect(items[mid:], batch_size, predict)
