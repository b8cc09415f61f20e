"""OpenVINO int8, built once per model version and recorded in it (worker/ml/quantize.py does the work):

- after training, when the deployment runs OpenVINO (``BERTJOBS_CLASSIFY_ENGINE`` openvino or auto, with the
  ``bertjobs[openvino]`` extra installed): from the calibration sample training keeps in the artifact, scored
  against fp32 on the whole validation split;
- for any version, ``bertjobs models quantize NAME:V``: from the artifact's sample (scored on it), or, for a version
  trained before samples were kept, ``--collection C``: from a sample of that labelled collection (scored on all of
  it).

The record (files' sha256, OpenVINO and NNCF versions, calibration source, seed, size and hash, fp32 and int8
accuracy and macro-F1) goes into the version's metrics under ``openvino_int8``: `models show` and the training
report show it. Jobs only load it (or refuse it); they never quantize.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from db import repo
from db.models import ModelVersion
from db.session import session_factory_for
from worker.config import Settings, get_settings
from worker.errors import InvalidJob
from worker.jobs.target import resolve
from worker.ml.engine import installed, require_openvino
from worker.ml.errors import CorruptArtifact
from worker.ml.quantize import build_int8, calibration_sample, read_calibration, validation_split
from worker.ops.report import write_report

KEY = "openvino_int8"
log = logging.getLogger("bertjobs.quantize")


def discard(artifact: Path) -> None:
    """Remove what was converted beside an artifact that is being removed."""
    shutil.rmtree(Path(artifact).with_name(Path(artifact).name + ".openvino"), ignore_errors=True)


def after_training(settings: Settings, job_log, artifact: Path, sha256: str, texts: Sequence[str], labels: Sequence,
                   val_fraction: float, seed: int) -> dict[str, Any]:
    """``{"openvino_int8": record}`` for the new version's metrics when this deployment runs OpenVINO, else {}.

    A failure here leaves the model as good as it was: it is logged, and `models quantize` can build int8 later."""
    if settings.classify_engine == "torch":
        return {}
    if not (installed("openvino") and installed("nncf")):
        if settings.classify_engine == "openvino":
            job_log.warning("BERTJOBS_CLASSIFY_ENGINE is openvino but openvino/nncf are not installed on this worker: "
                            "no int8 model built (bertjobs models quantize builds it later)")
        return {}
    val = validation_split(texts, labels, val_fraction, seed)
    evaluation = ([texts[i] for i in val], [labels[i] for i in val], "validation split")
    try:
        record = build_int8(artifact, sha256, read_calibration(artifact), evaluation)
    except Exception as exc:  # noqa: BLE001 - the torch model is registered either way
        job_log.warning("could not build the OpenVINO int8 model (%s); bertjobs models quantize can build it later",
                        " ".join(str(exc).split())[:300])
        return {}
    job_log.info("OpenVINO int8 built in %.0f s; validation accuracy fp32 %.4f, int8 %.4f; macro-F1 fp32 %.4f, "
                 "int8 %.4f", record["build_seconds"], record["fp32"]["accuracy"], record["int8"]["accuracy"],
                 record["fp32"]["macro_f1"], record["int8"]["macro_f1"])
    return {KEY: record}


def quantize_version(ref: str, *, collection: str | None = None, force: bool = False,
                     settings: Settings | None = None) -> tuple[str, dict, bool]:
    """Build (or find) the int8 model of a version: (NAME:VERSION, its record, whether it was built now)."""
    from worker.ml.openvino_engine import int8_model

    require_openvino("`bertjobs models quantize`", quantizer=True)
    settings = settings or get_settings()
    sessions = session_factory_for(settings.resolved_database_url)
    with sessions.begin() as s:
        target = resolve(s, ref)
        mv = s.get(ModelVersion, target.id)
        mv_id, name, path, sha = target.id, target.ref, Path(target.path), target.sha256
        existing, seed = (mv.metrics or {}).get(KEY), int((mv.lineage or {}).get("seed", 42))
    if existing and not force:
        try:
            int8_model(path, sha)
            return name, existing, False
        except CorruptArtifact as exc:  # missing, damaged or from another OpenVINO: built again below
            log.info("%s: %s", name, exc)
    sample, evaluation = _calibration(sessions, name, path, collection, seed)
    record = build_int8(path, sha, sample, evaluation)
    with sessions.begin() as s:
        mv = s.get(ModelVersion, mv_id)
        mv.metrics = {**(mv.metrics or {}), KEY: record}
        model = {"name": mv.name, "version": mv.version, "base_model": mv.base_model, "metrics": mv.metrics,
                 "hyperparameters": mv.hyperparameters, "lineage": mv.lineage}
    try:
        write_report(model, path)
    except OSError as exc:  # the record is stored; `bertjobs models report` writes the report again
        log.warning("could not rewrite the report of %s: %s", name, exc)
    return name, record, True


def _calibration(sessions, name: str, path: Path, collection: str | None, seed: int) -> tuple[dict, tuple]:
    """(calibration sample, (texts, gold, what) to score on): the artifact's own, or a labelled collection's."""
    if collection is None:
        sample = read_calibration(path)
        if sample is None:
            raise InvalidJob(f"{name} was trained before calibration samples were kept in the artifact; give a "
                             f"labelled collection: bertjobs models quantize {name} --collection NAME")
        return sample, (sample["texts"], sample["labels"], f"calibration sample ({sample['source']})")
    from worker.ml.artifact import read_metadata

    with sessions.begin() as s:
        data = repo.load_labelled(s, collection, multi_label=bool(read_metadata(path).get("multi_label")))
    if len(data.texts) < 2:
        raise InvalidJob(f"collection {collection!r} has {len(data.texts)} labelled documents; calibration needs more")
    sample = calibration_sample(data.texts, data.labels, seed, f"collection {collection}")
    return sample, (data.texts, data.labels, f"collection {collection}")
