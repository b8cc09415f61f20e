"""Settings as users give them (environment variables), wrong ones as one line, metrics and a down broker."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worker.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(monkeypatch, tmp_path):
    from worker.config import get_settings

    monkeypatch.setenv("BERTJOBS_DATA_DIR", str(tmp_path / "data"))

    def use(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"BERTJOBS_{key.upper()}", value)
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


@pytest.mark.parametrize("value, expected", [("inbox,tickets", ["inbox", "tickets"]), ("inbox", ["inbox"]),
                                             (" inbox , tickets ,", ["inbox", "tickets"]),
                                             ('["inbox", "tickets"]', ["inbox", "tickets"])])
def test_nightly_collections_read_the_readme_form(env, sqlite_url, value, expected, capsys):
    from worker.config import get_settings

    env(database_url=sqlite_url, nightly_collections=value)
    assert main(["jobs"]) == 0
    assert get_settings().nightly_collections == expected


@pytest.mark.parametrize("name, value, says", [
    ("classify_precision", "bf61", "BERTJOBS_CLASSIFY_PRECISION: must be one of auto, fp32, bf16, fp16, int8"),
    ("classify_engine", "onnx", "BERTJOBS_CLASSIFY_ENGINE: must be one of torch, openvino, auto, got 'onnx'"),
    ("device", "gpu", "BERTJOBS_DEVICE: must be auto, cpu, cuda or cuda:N"),
    ("device", "cuda:x", "BERTJOBS_DEVICE: must be auto, cpu, cuda or cuda:N"),
    ("lease_seconds", "soon", "BERTJOBS_LEASE_SECONDS: Input should be a valid integer"),
    ("nightly_collections", "[oops", "BERTJOBS_NIGHTLY_COLLECTIONS: expected names separated by commas"),
    ("heartbeat_seconds", "400", "BERTJOBS_HEARTBEAT_SECONDS (400.0) must be at most half"),
    ("low_confidence_threshold", "1.5", "BERTJOBS_LOW_CONFIDENCE_THRESHOLD: Input should be less than 1"),
    ("low_confidence_threshold", "0", "BERTJOBS_LOW_CONFIDENCE_THRESHOLD: Input should be greater than 0"),
    ("drift_psi_threshold", "-0.1", "BERTJOBS_DRIFT_PSI_THRESHOLD: Input should be greater than 0"),
    ("drift_baseline_runs", "0", "BERTJOBS_DRIFT_BASELINE_RUNS: Input should be greater than or equal to 1"),
])
def test_a_wrong_setting_is_one_line_naming_the_variable(env, sqlite_url, name, value, says, capsys):
    env(database_url=sqlite_url, **{name: value})
    for argv in (["jobs"], ["metrics"], ["classify", "--collection", "c", "--model", "m", "--inline"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {says}") and err.count("\n") == 1, err


def test_cuda_on_a_host_without_it_is_refused_before_the_job_is_saved(env, sqlite_url, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    env(database_url=sqlite_url, device="cuda")
    assert main(["classify", "--collection", "c", "--model", "m", "--inline"]) == 2
    assert capsys.readouterr().err == "error: BERTJOBS_DEVICE: cuda was asked for, but this host has no usable CUDA\n"
    assert main(["jobs"]) == 0
    assert "classify" not in capsys.readouterr().out


def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "BERTJOBS_DATA_DIR": str(tmp_path / "data"),
            **{f"BERTJOBS_{k.upper()}": v for k, v in env.items()}}
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
def test_the_worker_with_a_wrong_setting_exits_with_one_line(tmp_path):
    for argv in (["worker"], ["beat"]):
        done = _cli(argv, tmp_path, nightly_collections="[oops")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: BERTJOBS_NIGHTLY_COLLECTIONS:")
    celery = subprocess.run([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "BERTJOBS_CLASSIFY_PRECISION": "fp8"},
                            capture_output=True, text=True, timeout=60)
    assert celery.returncode == 2 and "Traceback" not in celery.stderr
    assert "error: BERTJOBS_CLASSIFY_PRECISION: must be one of" in celery.stderr


@pytest.mark.slow
def test_a_down_broker_is_one_line_within_seconds_and_the_job_is_saved(any_db_url, tmp_path):
    from db import repo
    from db.session import session_factory_for

    data = tmp_path / "c.csv"
    data.write_text("text,label\ngood film,pos\nbad film,neg\n")
    assert _cli(["import", str(data), "--collection", "c"], tmp_path, database_url=any_db_url).returncode == 0
    started = time.monotonic()
    done = _cli(["train", "--collection", "c", "--base-model", "bert-base-uncased"], tmp_path,
                database_url=any_db_url, broker_url="redis://127.0.0.1:1/0")
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "is saved but the broker at redis://127.0.0.1:1/0 could not be reached; the reaper publishes it " \
           "when the broker is back (or run it now with --inline)" in done.stderr
    job_id = int(done.stderr.split()[1])
    with session_factory_for(any_db_url).begin() as s:
        assert repo.get_job(s, job_id).status == "queued"


def test_metrics_after_a_finished_bulk_job(env, any_db_url, capsys):
    from db import repo
    from db.models import Job, utcnow
    from db.session import session_factory_for

    with session_factory_for(any_db_url).begin() as s:
        job, _ = repo.create_job(s, "classify", {"collection": "c", "model": "m"}, max_attempts=3)
        s.flush()
        row = s.get(Job, job.id)
        row.status, row.progress_done, row.progress_total = "succeeded", 300, 300
        row.result, row.finished_at = {"seconds": 1.5}, utcnow()
    env(database_url=any_db_url, broker_url="redis://127.0.0.1:1/0")
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    assert "bertjobs_classify_documents_per_second 200.0\n" in out
    assert "bertjobs_documents_classified_total 300\n" in out
    assert 'bertjobs_jobs{kind="classify",status="succeeded"} 1\n' in out
