"""Inference: a loaded classifier predicts labels and scores for texts, in length-sorted batches."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from worker.ml.artifact import read_metadata, verify_artifact
from worker.ml.batching import average_by_owner, batch_logits, encode, token_budget_batches
from worker.ml.device import quantize_int8, resolve_device, resolve_precision
from worker.ml.engine import resolve_engine
from worker.ml.errors import CorruptArtifact, artifact_read_error
from worker.ml.hf import quiet_transformers
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
    """The Classifier keywords an artifact's metadata sets: how training read long documents, and for a
    multi-label model its thresholds."""
    return {"windows": meta.get("windows"), "thresholds": meta.get("thresholds") if meta.get("multi_label") else None}


@dataclass(frozen=True)
class TextPrediction:
    label: str | None
    score: float | None
    scores: dict[str, float] | None
    error: str | None = None
    labels: list[str] | None = None  # multi-label models: every label at or above its threshold, best first


class Classifier:
    engine = "torch"  # what runs the forward pass (worker/ml/engine.py); recorded on every prediction job

    def __init__(self, model, tokenizer, labels: Sequence[str], max_length: int, device: torch.device,
                 precision: str = "fp32", windows: dict | None = None,
                 thresholds: dict[str, float] | None = None):
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.device = device
        self.precision = precision
        self.model = self._prepare(model)
        # How training read long documents (truncate, or overlapping windows): inference must do the same.
        self.windows = windows or {"long_documents": "truncate"}
        # Multi-label models: sigmoid scores, and a label is given when its score reaches its tuned threshold.
        self.thresholds = [thresholds[label] for label in self.labels] if thresholds else None

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
        logits = self._logits(token_ids, token_budget_batches([len(t) for t in token_ids], batch_size))
        logits = average_by_owner(logits, owners, len(texts))
        if self.thresholds is not None:
            return [self._multi_label(row) for row in torch.sigmoid(logits).tolist()]
        out = []
        for row in torch.softmax(logits, dim=-1).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append(TextPrediction(self.labels[best], row[best], dict(zip(self.labels, row))))
        return out

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
        results: list[TextPrediction | None] = [None] * len(texts)
        valid = []
        for i, text in enumerate(texts):
            problem = text_problem(text, max_chars)
            if problem:
                results[i] = TextPrediction(None, None, None, problem)
            else:
                valid.append(i)
        for i, pred in zip(valid, self._bisect([texts[i] for i in valid], batch_size)):
            results[i] = pred
        return results  # type: ignore[return-value]

    def _bisect(self, texts: Sequence[str], batch_size: int) -> list[TextPrediction]:
        if not texts:
            return []
        try:
            return self.predict(texts, batch_size)
        except torch.cuda.OutOfMemoryError:
            if batch_size > 1:
                torch.cuda.empty_cache()
                return self._bisect(texts, batch_size // 2)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is narrowed to the documents that cause it
            if len(texts) == 1:
                return [TextPrediction(None, None, None, f"prediction failed: {type(exc).__name__}: {exc}"[:500])]
            mid = len(texts) // 2
            return self._bisect(texts[:mid], batch_size) + self._bisect(texts[mid:], batch_size)


_cache: dict[tuple[str, str | None, str, str, str], Classifier] = {}
_cache_lock = threading.Lock()


def load_classifier(path: str | Path, *, sha256: str | None = None, device: str = "auto",
                    precision: str = "auto", engine: str = "torch") -> Classifier:
    """A classifier cached per process (workers keep one model warm across jobs, converted or not).

    ``engine``: torch, openvino or auto (worker/ml/engine.py); OpenVINO runs the same ``Classifier`` interface."""
    key = (str(path), sha256, device, precision, engine)
    with _cache_lock:
        if key not in _cache:
            _cache.clear()  # one model at a time: a worker serves one GPU
            if resolve_engine(engine, device, precision) == "openvino":
                from worker.ml.openvino_engine import load_openvino

                _cache[key] = load_openvino(path, sha256=sha256, precision=precision)
            else:
                _cache[key] = Classifier.from_artifact(path, sha256=sha256, device=device, precision=precision)
        return _cache[key]
