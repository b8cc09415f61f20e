"""The OpenVINO engine as users reach it: settings in the environment, commands through the CLI, on SQLite.

Training keeps a calibration sample in the artifact and, where the deployment runs OpenVINO, builds int8 once and
records its accuracy next to fp32's; bulk and evaluation jobs record the engine and precision they ran with;
`models quantize` builds int8 for a version that lacks it; a missing OpenVINO is refused at submit."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker import jobs
from worker.cli import main
from worker.client import submit_training

needs_openvino = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("openvino", "nncf")),
    reason="OpenVINO is not installed (pip install 'bertjobs[openvino]')")


def _train(url: str, base_model: str) -> None:
    from worker.config import get_settings

    load_documents(url, "train", sentiment_rows(48))
    load_documents(url, "inbox", sentiment_rows(20, prefix="inbox"))
    handle = submit_training("train", base_model, model_name="senti", options=TINY_OPTIONS, settings=get_settings(),
                             enqueue=False)
    assert jobs.run_training(handle.id, settings=get_settings()) is jobs.Outcome.succeeded


def _last_job(url: str):
    with session_factory_for(url).begin() as s:
        job = repo.list_jobs(s, limit=1)[0]
        return job.status, dict(job.result or {}), job.error


def _labels(url: str) -> dict[str, str]:
    from sqlalchemy import text

    with session_factory_for(url).begin() as s:
        return dict(s.execute(text("SELECT d.external_id, p.label FROM predictions p JOIN documents d "
                                   "ON d.id = p.document_id")).all())


@pytest.mark.slow
@needs_openvino
def test_training_on_an_openvino_deployment_records_int8_and_bulk_jobs_record_their_engine(
        env_db, sqlite_url, tiny_base_model, capsys):
    env_db(sqlite_url, classify_engine="openvino", classify_precision="int8", classify_chunk_size="16")
    _train(sqlite_url, tiny_base_model)
    assert main(["models", "show", "senti:1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    record = shown["metrics"]["openvino_int8"]
    assert record["calibration"]["source"] == "validation split" and record["calibration"]["seed"] == TINY_OPTIONS["seed"]
    assert record["evaluated_on"] == {"what": "validation split", "texts": shown["lineage"]["val_size"]}
    assert record["fp32"]["accuracy"] >= 0.9 and abs(record["int8"]["accuracy"] - record["fp32"]["accuracy"]) <= 0.1
    assert (Path(shown["artifact"] + ".openvino") / "int8" / "model.bin").is_file() and len(record["sha256"]) == 64
    assert (Path(shown["artifact"]) / "calibration.json").is_file()  # inside: the artifact's sha256 covers it
    assert "OpenVINO int8 against fp32" in open(shown["artifact"] + ".report.html").read()

    assert main(["classify", "--collection", "inbox", "--model", "senti", "--inline"]) == 0
    status, result, _ = _last_job(sqlite_url)
    assert status == "succeeded" and (result["engine"], result["precision"]) == ("openvino", "int8")
    on_int8 = _labels(sqlite_url)
    assert on_int8 == {r["external_id"]: r["label"] for r in sentiment_rows(20, prefix="inbox")}

    env_db(sqlite_url, classify_engine="torch", classify_precision="fp32")
    assert main(["classify", "--collection", "inbox", "--model", "senti", "--all", "--inline"]) == 0
    status, result, _ = _last_job(sqlite_url)
    assert (result["engine"], result["precision"]) == ("torch", "fp32") and _labels(sqlite_url) == on_int8


@pytest.mark.slow
@needs_openvino
def test_models_quantize_builds_int8_once_for_a_version_without_it(env_db, sqlite_url, tiny_base_model, capsys):
    env_db(sqlite_url, classify_chunk_size="16")  # the default engine, torch: training builds no int8
    _train(sqlite_url, tiny_base_model)
    load_documents(sqlite_url, "holdout", sentiment_rows(24, prefix="holdout"))
    assert main(["models", "show", "senti:1"]) == 0
    assert "openvino_int8" not in json.loads(capsys.readouterr().out)["metrics"]

    assert main(["models", "quantize", "senti:1", "--collection", "holdout"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("senti:1: OpenVINO int8 built in") and "(collection holdout, seed 7)" in out
    assert "on collection holdout (24 texts): accuracy fp32 1.0000, int8" in out
    assert main(["models", "quantize", "senti:1", "--json"]) == 0  # built once: found, not built again
    again = json.loads(capsys.readouterr().out)
    assert again["built"] is False and again["openvino_int8"]["calibration"]["source"] == "collection holdout"
    assert main(["models", "quantize", "senti", "--force", "--json"]) == 0  # the artifact's own sample
    assert json.loads(capsys.readouterr().out)["openvino_int8"]["calibration"]["source"] == "validation split"

    env_db(sqlite_url, classify_engine="auto", classify_precision="int8")
    assert main(["evaluate", "senti", "--collection", "holdout", "--inline", "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert (evaluation["engine"], evaluation["precision"]) == ("openvino", "int8") and evaluation["accuracy"] >= 0.9
    status, result, _ = _last_job(sqlite_url)
    assert (result["engine"], result["precision"]) == ("openvino", "int8")


@pytest.mark.slow
@needs_openvino
def test_quantize_refuses_in_one_line_a_version_trained_before_calibration_samples(
        env_db, sqlite_url, tiny_base_model, tmp_path, capsys):
    from worker.ml.artifact import artifact_sha256

    env_db(sqlite_url)
    _train(sqlite_url, tiny_base_model)
    with session_factory_for(sqlite_url).begin() as s:
        mv = repo.resolve_model_version(s, "senti:1")
        old = tmp_path / "old-artifact"
        shutil.copytree(mv.artifact_path, old)
        (old / "calibration.json").unlink()
        repo.register_model_version(s, name="old", base_model=mv.base_model, status="ready", artifact_path=str(old),
                                    artifact_sha256=artifact_sha256(old), labels=mv.labels, hyperparameters={},
                                    metrics={}, lineage={})
    assert main(["models", "quantize", "old"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: old:1 was trained before calibration samples were kept in the artifact; give a labelled "
                   "collection: bertjobs models quantize old:1 --collection NAME\n")
    env_db(sqlite_url, classify_engine="openvino", classify_precision="int8")
    assert main(["predict", "old", "a lovely film"]) == 2  # no int8 model: refused, never quantized on the fly
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "int8 model of" in err and "is missing; build it with `bertjobs models quantize" in err


def test_openvino_without_openvino_is_refused_at_submit_in_one_line(env_db, sqlite_url, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an install without the extra looks like to import
    env_db(sqlite_url, classify_engine="openvino")
    load_documents(sqlite_url, "inbox", sentiment_rows(4))
    expected = ("error: BERTJOBS_CLASSIFY_ENGINE: openvino was asked for, but OpenVINO is not installed here "
                "(pip install 'bertjobs[openvino]')\n")
    for argv in (["classify", "--collection", "inbox", "--model", "senti"],
                 ["evaluate", "senti", "--collection", "inbox"], ["worker"]):
        assert main(argv) == 2
        assert capsys.readouterr().err == expected
    with session_factory_for(sqlite_url).begin() as s:
        assert repo.list_jobs(s) == []
    env_db(sqlite_url, classify_engine="auto")  # auto falls back to torch: submitting is fine
    assert main(["classify", "--collection", "inbox", "--model", "senti"]) == 2
    assert "no ready model version matches 'senti'" in capsys.readouterr().err


@pytest.mark.parametrize("settings, says", [
    ({"classify_engine": "openvino", "device": "cuda"}, "openvino runs on the CPU, but BERTJOBS_DEVICE is cuda"),
    ({"classify_engine": "openvino", "classify_precision": "fp16"}, "openvino runs fp32, bf16 or int8"),
])
def test_an_engine_that_cannot_run_the_other_settings_is_one_line(env_db, sqlite_url, settings, says, capsys):
    env_db(sqlite_url, **settings)
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: BERTJOBS_CLASSIFY_ENGINE: {says}") and err.count("\n") == 1
