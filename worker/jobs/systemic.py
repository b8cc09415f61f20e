"""Systemic failures: when every document of a piece of a page fails in the model the same way, the model (or
the accelerator) is broken, not the documents. Then no failure rows are written: the attempt is retried
(worker/errors.py SystemicError), and after a CUDA error the worker process ends so that prefork replaces it.
Only a document that fails alone gets a failure row."""
from __future__ import annotations

from typing import Sequence

from worker.errors import AcceleratorPoisoned, SystemicError

MODEL_FAILURE = "prediction failed: "  # the prefix Classifier.predict_or_fail gives a document the model failed on
SYSTEMIC_AT_LEAST = 4  # documents that must fail together before the failure is the model's
_ACCELERATOR_ERRORS = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "device-side assert")


def check_systemic(predictions: Sequence) -> Sequence:
    """The predictions, unless every document that reached the model failed in it with the same error."""
    reached = [p.error for p in predictions if p.error is None or p.error.startswith(MODEL_FAILURE)]
    if len(reached) < SYSTEMIC_AT_LEAST or None in reached or len(set(reached)) != 1:
        return predictions
    reason = f"all {len(reached)} documents failed the same way: {reached[0][len(MODEL_FAILURE):]}"
    if any(marker in reached[0] for marker in _ACCELERATOR_ERRORS):
        raise AcceleratorPoisoned(reason)
    raise SystemicError(reason)
