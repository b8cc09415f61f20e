"""Validation metrics of a model during training: logits per document (a long document's windows pooled as the model
version will record), then single-label metrics or, for multi-label models, a threshold per label tuned on these rows."""
from __future__ import annotations

from typing import Sequence

import torch

from worker.ml.batching import batch_logits, sorted_batches
from worker.ml.labels import LabelMap
from worker.ml.longdocs import pool_logits
from worker.ml.metrics import classification_metrics, multilabel_metrics, tune_thresholds


def document_logits(model, token_ids, n_documents: int, n_labels: int, pad_id: int, device, precision: str,
                    batch_size: int = 64, owners: Sequence[int] | None = None, pooling: str = "mean",
                    multi_label: bool = False) -> torch.Tensor:
    """Logits per document (on the CPU); with ``owners`` (windows), a document's logits are its windows' pooled
    by ``pooling`` (worker/ml/longdocs.py)."""
    model.eval()
    logits = batch_logits(model, token_ids, sorted_batches([len(t) for t in token_ids], batch_size), n_labels,
                          pad_id, device, precision)
    return pool_logits(logits, owners, n_documents, pooling, multi_label) if owners is not None else logits


def validation_metrics(model, token_ids, y_true: Sequence[int], label_map: LabelMap, pad_id: int, device,
                       precision: str, batch_size: int = 64, owners: Sequence[int] | None = None,
                       pooling: str = "mean") -> dict:
    """Single-label validation metrics over documents, with the cross-entropy ``loss``."""
    logits = document_logits(model, token_ids, len(y_true), len(label_map), pad_id, device, precision, batch_size,
                             owners, pooling)
    target = torch.as_tensor(list(y_true))
    predictions = logits.argmax(-1).tolist()
    metrics = classification_metrics(y_true, predictions, label_map.labels)
    metrics["loss"] = torch.nn.functional.cross_entropy(logits, target).item() if len(y_true) else 0.0
    return {**metrics, **_outputs(logits, predictions)}


def _outputs(logits: torch.Tensor, predictions: list) -> dict:
    """What the trainer keeps beside the scores and ``TrainResult`` takes out of them (worker/ml/train.py):
    the validation logits (calibration) and predictions (intervals, baselines, epoch selection)."""
    return {"logits": logits.tolist(), "predictions": predictions}


def multilabel_validation_metrics(model, token_ids, y_true: Sequence[Sequence[int]], label_map: LabelMap,
                                  pad_id: int, device, precision: str, batch_size: int = 64,
                                  owners: Sequence[int] | None = None, pooling: str = "mean") -> dict:
    """Multi-label validation: sigmoid probabilities, a threshold per label tuned here, per-label metrics."""
    logits = document_logits(model, token_ids, len(y_true), len(label_map), pad_id, device, precision, batch_size,
                             owners, pooling, multi_label=True)
    target = torch.as_tensor([list(row) for row in y_true], dtype=torch.float32)
    probs = torch.sigmoid(logits).tolist()
    metrics = multilabel_metrics(y_true, probs, label_map.labels, tune_thresholds(y_true, probs))
    metrics["loss"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, target).item() if len(y_true) else 0.0
    thresholds = [metrics["thresholds"][label] for label in label_map.labels]
    return {**metrics, **_outputs(logits, [[int(p >= t) for p, t in zip(row, thresholds)] for row in probs])}
