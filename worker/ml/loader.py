"""The classifier a worker keeps warm: one per process, on the engine the deployment runs (worker/ml/engine.py).

Torch models come from worker/ml/predict.py, OpenVINO ones from worker/ml/openvino_engine.py; both are the same
``Classifier`` interface, so a job does not know which it got."""
from __future__ import annotations

import threading
from pathlib import Path

from worker.ml.engine import resolve_engine
from worker.ml.predict import Classifier

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
