"""int8 for the OpenVINO engine: quantized once per model version, from a fixed sample, and scored against fp32.

The calibration sample is fixed and kept: up to ``CALIBRATION_SIZE`` texts drawn with the training seed from the
version's validation split, saved inside the artifact (``calibration.json``, so the artifact's sha256 covers it)
when training saves the artifact. Versions trained before that take a sample of a labelled collection instead
(`bertjobs models quantize NAME:V --collection C`, worker/ops/quantize.py). NNCF's post-training quantization over
the sample is deterministic: the same sample and library versions give the same files on the same kind of CPU
(the statistics come from running the fp32 model, so it is built once, not per worker). The int8 model is
saved beside the artifact (worker/ml/openvino_engine.py) with a manifest naming its sample and hash; the
record ``build_int8`` returns (fp32 and int8 accuracy and macro-F1 on labelled texts, the hash, the versions) goes
into the model version's metrics. Jobs never quantize: they load that model or refuse.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import random
import time
from pathlib import Path
from typing import Sequence

from worker.ml.artifact import artifact_sha256, read_metadata, verify_artifact
from worker.ml.batching import encode
from worker.ml.engine import require_openvino
from worker.ml.longdocs import reading
from worker.ml.metrics import classification_metrics, multilabel_metrics
from worker.ml.split import split_without_leaks, strata

CALIBRATION_FILE = "calibration.json"
CALIBRATION_SIZE = 300  # texts; NNCF's default subset, and what the measurements in bench/README.md used


def calibration_sample(texts: Sequence[str], labels: Sequence, seed: int, source: str,
                       size: int = CALIBRATION_SIZE) -> dict:
    """Up to ``size`` (text, label) pairs drawn with ``seed``, in their original order."""
    chosen = sorted(random.Random(seed).sample(range(len(texts)), min(size, len(texts))))
    return {"source": source, "seed": seed, "size": len(chosen), "texts": [texts[i] for i in chosen],
            "labels": [labels[i] for i in chosen]}


def validation_split(texts: Sequence[str], labels: Sequence, val_fraction: float, seed: int) -> list[int]:
    """The indices of the validation split ``fine_tune`` holds out with this fraction and seed."""
    return split_without_leaks(texts, strata(labels), val_fraction, seed)[1]


def calibration_file(texts: Sequence[str], labels: Sequence, val_fraction: float, seed: int) -> dict[str, str]:
    """``{CALIBRATION_FILE: json}`` for ``save_artifact``'s extra files: the sample of the validation split."""
    val = validation_split(texts, labels, val_fraction, seed)
    sample = calibration_sample([texts[i] for i in val], [labels[i] for i in val], seed, "validation split")
    return {CALIBRATION_FILE: json.dumps(sample, ensure_ascii=False, indent=1)}


def read_calibration(artifact: str | Path) -> dict | None:
    """The artifact's own calibration sample, or None for an artifact saved before samples were kept."""
    path = Path(artifact) / CALIBRATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def describe(sample: dict) -> dict:
    """The sample without its texts, for manifests and metrics: where from, seed, size and content hash."""
    content = json.dumps([sample["texts"], sample["labels"]], ensure_ascii=False, sort_keys=True)
    return {k: v for k, v in sample.items() if k not in ("texts", "labels")} | {
        "sha256": hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()}


def quantize_model(fp32_model, tokenizer, meta: dict, texts: Sequence[str]):
    """NNCF post-training static quantization (transformer preset) over ``texts``, one unpadded input each."""
    import nncf
    import numpy as np

    windows, _ = reading(meta.get("windows"))
    token_ids, _ = encode(tokenizer, list(texts), meta["max_length"], **windows)
    items = [{"input_ids": np.asarray([seq], dtype=np.int64), "attention_mask": np.ones((1, len(seq)), dtype=np.int64)}
             for seq in token_ids[:CALIBRATION_SIZE]]
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress bars
        return nncf.quantize(fp32_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(items))


def build_int8(path: str | Path, sha256: str | None, sample: dict,
               evaluation: tuple[Sequence[str], Sequence, str] | None = None) -> dict:
    """Quantize the artifact's model over ``sample``, save it beside the artifact, and score fp32 and int8 on
    ``evaluation`` (texts, gold labels, what they are); return the record for the model version's metrics."""
    require_openvino("int8 quantization", quantizer=True)
    import nncf

    from worker.ml import openvino_engine as ove
    from worker.ml.predict import read_tokenizer

    if not sample.get("texts"):
        raise ValueError("the calibration sample has no texts")
    started = time.perf_counter()
    path = Path(path)
    verify_artifact(path, sha256)
    sha256 = sha256 or artifact_sha256(path)
    int8 = quantize_model(ove.fp32_model(path, sha256)[0], read_tokenizer(path), read_metadata(path), sample["texts"])
    manifest = ove.save_converted(ove.converted_dir(path, "int8"), int8, {
        "artifact_sha256": sha256, "kind": "int8", "nncf": nncf.__version__, "calibration": describe(sample)})
    record = {"engine": "openvino", "precision": "int8", "sha256": manifest["sha256"],
              "openvino": manifest["openvino"], "nncf": manifest["nncf"], "calibration": manifest["calibration"],
              "build_seconds": round(time.perf_counter() - started, 2)}
    if evaluation is not None:
        record.update(score(path, sha256, *evaluation))
    return record


def score(path: Path, sha256: str, texts: Sequence[str], gold: Sequence, what: str) -> dict:
    """Accuracy and macro-F1 of the fp32 and int8 OpenVINO models on labelled texts (multi-label: label sets)."""
    from worker.ml.openvino_engine import load_openvino

    out: dict = {"evaluated_on": {"what": what, "texts": len(texts)}}
    for precision in ("fp32", "int8"):
        classifier = load_openvino(path, sha256=sha256, precision=precision)
        out[precision] = _metrics(classifier, classifier.predict_or_fail(list(texts)), gold)
    return out


def _metrics(classifier, predictions, gold) -> dict:
    scored = [i for i, p in enumerate(predictions) if p.error is None]
    if classifier.thresholds is not None:
        labels = classifier.labels
        y = [[int(label in gold[i]) for label in labels] for i in scored]
        probs = [[predictions[i].scores[label] for label in labels] for i in scored]
        metrics = multilabel_metrics(y, probs, labels, classifier.thresholds)
    else:
        labels = sorted(set(classifier.labels) | {gold[i] for i in scored})
        index = {label: i for i, label in enumerate(labels)}
        metrics = classification_metrics([index[gold[i]] for i in scored],
                                         [index[predictions[i].label] for i in scored], labels)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "failed": len(predictions) - len(scored)}
