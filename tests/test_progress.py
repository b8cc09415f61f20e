"""Progress people can see: the same bar for --wait, --inline, `jobs wait` and the demo; a plain line every few
seconds when piped; units, epoch and loss; classification progress inside a page."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker.cli import main
from worker.client import JobSnapshot
from worker.progress import ProgressBar

ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_OPTIONS.items()]


def _snap(**fields) -> JobSnapshot:
    base = dict(id=7, kind="train", status="running", attempt=1, max_attempts=3, progress_done=0, progress_total=100,
                error=None, result=None, params={}, created_at=None, started_at=None, finished_at=None)
    return JobSnapshot(**{**base, **fields})


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_the_bar_writes_a_full_plain_line_at_most_every_five_seconds():
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(out, clock=clock)
    for second in range(0, 13):
        clock.now = 1000.0 + second
        bar(_snap(progress_done=second * 5,
                  result={"progress": {"unit": "steps", "epoch": 1 + second // 7, "epochs": 2, "loss": 0.5}}))
    clock.now += 1
    bar(_snap(status="succeeded", progress_done=100, result={"model": "m:1"}))
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4  # seconds 0, 5 and 10, then the final line
    for line in lines[:3]:
        assert re.fullmatch(r"job 7 running   \[[#-]{30}\] \d+/100 steps( [\d.]+ steps/s ETA \d+:\d\d)? "
                            r"epoch \d/2 loss 0\.5000", line), line
    assert "epoch 2/2" in lines[2] and "5.0 steps/s" in lines[2]
    assert lines[3] == f"job 7 succeeded [{'#' * 30}] 100/100 steps"


def test_a_refit_says_so_beside_its_epoch_on_the_bar_and_the_web_view():
    from worker.web.shown import detail_text

    detail = {"unit": "steps", "epoch": 2, "epochs": 3, "loss": 0.25, "phase": "refit"}
    line = ProgressBar(io.StringIO(), clock=Clock()).line(_snap(progress_done=10, result={"progress": detail}))
    assert line.endswith(" refit epoch 2/3 loss 0.2500"), line
    assert detail_text(_snap(result={"progress": detail})) == "refit epoch 2/3, loss 0.2500"


def test_on_a_terminal_the_bar_redraws_in_place_and_shows_documents_in_flight():
    out, clock = Tty(), Clock()
    bar = ProgressBar(out, clock=clock)
    bar(_snap(kind="classify", progress_done=512, progress_total=2048, result={"progress": {"unit": "documents"}}))
    clock.now += 1
    bar(_snap(kind="classify", progress_done=512, progress_total=2048,
              result={"progress": {"unit": "documents", "inflight": 200}}))
    clock.now += 1
    bar(_snap(kind="classify", status="succeeded", progress_done=2048, progress_total=2048, result={"classified": 1}))
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 3 and not frames[0].endswith("\n") and frames[2].endswith("\n")
    assert "512/2048 documents" in frames[0]
    assert "712/2048 documents 200.0 documents/s ETA 0:06" in frames[1]  # the page in flight counts
    assert "2048/2048 documents" in frames[2]


def _env(url: str, tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTJOBS_")}
    env.update({"BERTJOBS_DATABASE_URL": url, "BERTJOBS_DATA_DIR": str(tmp_path / "data"),
                "BERTJOBS_MODEL_STORE": str(tmp_path / "models"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra})
    return env


@pytest.mark.slow
def test_inline_training_piped_prints_the_job_id_first_then_status_lines_with_epoch_and_loss(
        sqlite_url, tmp_path, tiny_base_model):
    load_documents(sqlite_url, "train", sentiment_rows(120))
    options = {**TINY_OPTIONS, "epochs": 12}  # several seconds of steps: more than one plain line
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    proc = subprocess.run([sys.executable, "-m", "worker.cli", "train", "--collection", "train", "--base-model",
                           tiny_base_model, "--name", "senti", "--inline", *flags],
                          env=_env(sqlite_url, tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "job 1 running here (train); re-attach with: bertjobs jobs wait 1"
    assert "job 1: train succeeded" in proc.stdout
    assert "\r" not in proc.stderr and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("job 1 ")]
    assert lines[-1].startswith("job 1 succeeded [") and lines[-1].endswith(" steps")
    running = [line for line in lines if line.startswith("job 1 running")]
    assert running, proc.stderr
    assert any(re.search(r"\d+/\d+ steps .*epoch \d+/12 loss \d\.\d{4}$", line) for line in running), running


@pytest.mark.slow
def test_jobs_wait_reattaches_to_a_job_running_elsewhere_and_unknown_jobs_are_one_line(
        any_db_url, env_db, tiny_base_model, capsys):
    import threading

    from worker import jobs
    from worker.client import submit_training

    url = env_db(any_db_url)
    assert main(["jobs", "wait", "42"]) == 2
    assert capsys.readouterr().err == "error: no job 42\n"
    load_documents(url, "train", sentiment_rows(48))
    handle = submit_training("train", tiny_base_model, model_name="senti", options=TINY_OPTIONS, enqueue=False)
    worker = threading.Thread(target=jobs.run_training, args=(handle.id,))  # a worker elsewhere
    worker.start()
    try:
        assert main(["jobs", "wait", str(handle.id)]) == 0
    finally:
        worker.join()
    out = capsys.readouterr()
    assert out.err.splitlines()[-1] == f"job {handle.id} succeeded [{'#' * 30}] {_steps(url, handle.id)} steps"
    assert f"job {handle.id}: train succeeded" in out.out


@pytest.mark.slow
def test_jobs_wait_of_a_finished_job_prints_its_final_line_and_status(any_db_url, env_db, tiny_base_model, capsys):
    url = env_db(any_db_url)
    load_documents(url, "train", sentiment_rows(48))
    assert main(["train", "--collection", "train", "--base-model", tiny_base_model, "--name", "senti", "--inline",
                 *TINY_FLAGS]) == 0
    first = capsys.readouterr()
    job_id = int(first.out.split()[1])
    assert first.err.splitlines()[-1].startswith(f"job {job_id} succeeded [")

    assert main(["jobs", "wait", str(job_id)]) == 0
    again = capsys.readouterr()
    assert again.err == f"job {job_id} succeeded [{'#' * 30}] {_steps(url, job_id)} steps\n"
    assert f"job {job_id}: train succeeded" in again.out

    load_documents(url, "bad", [{"external_id": "a", "text": "only one class", "label": "x"}])
    assert main(["train", "--collection", "bad", "--base-model", tiny_base_model, "--inline"]) == 1
    failed = capsys.readouterr()
    bad_id = int(failed.out.split()[1])
    assert main(["jobs", "wait", str(bad_id)]) == 1
    assert f"job {bad_id}: train failed" in capsys.readouterr().out


def _steps(url: str, job_id: int) -> str:
    with session_factory_for(url).begin() as s:
        job = repo.get_job(s, job_id)
        return f"{job.progress_done}/{job.progress_total}"


@pytest.mark.slow
def test_classification_shows_the_page_in_flight_and_still_commits_each_page_once(
        any_db_url, env_db, monkeypatch, tiny_base_model, capsys):
    from worker.jobs import classification

    url = env_db(any_db_url)
    load_documents(url, "train", sentiment_rows(48))
    assert main(["train", "--collection", "train", "--base-model", tiny_base_model, "--name", "senti", "--inline",
                 *TINY_FLAGS]) == 0
    load_documents(url, "inbox", sentiment_rows(100, prefix="inbox"))
    monkeypatch.setenv("BERTJOBS_CLASSIFY_CHUNK_SIZE", "64")
    monkeypatch.setenv("BERTJOBS_CLASSIFY_BATCH_SIZE", "8")
    # The serial loop: pipelined, the previous page commits while this one is in flight, so the order below varies.
    monkeypatch.setenv("BERTJOBS_CLASSIFY_PIPELINE", "off")
    from worker.config import get_settings

    get_settings.cache_clear()
    # Pieces of one batch and a display write after each: what a slow page does every few seconds.
    monkeypatch.setattr(classification, "PIECE_SECONDS", 1e-9)
    monkeypatch.setattr(classification, "INFLIGHT_EVERY_SECONDS", 0.0)
    seen = []
    real = repo.set_progress_detail

    def spy(s, job_id, attempt, detail):
        job = repo.get_job(s, job_id)
        seen.append((job.progress_done, job.cursor, detail["inflight"]))
        return real(s, job_id, attempt, detail)

    monkeypatch.setattr(repo, "set_progress_detail", spy)
    capsys.readouterr()
    assert main(["classify", "--collection", "inbox", "--model", "senti:1", "--inline"]) == 0
    out = capsys.readouterr()
    job_id = int(out.out.split()[1])
    # In flight inside the first page (nothing of it committed), then inside the second (the first committed).
    assert [d for d, _, _ in seen[:7]] == [0] * 7 and seen[0][2] == 8 and seen[6][2] == 56
    assert {d for d, _, _ in seen[7:]} == {64} and [n for _, _, n in seen[7:]] == [8, 16, 24, 32]
    assert out.err.splitlines()[-1] == f"job {job_id} succeeded [{'#' * 30}] 100/100 documents"
    with session_factory_for(url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.progress_done, job.result["classified"], job.result["documents"]) == (100, 100, 100)
        assert "progress" not in job.result
        assert repo.prediction_counts(s, job.result["model_version_id"]) == {"classified": 100, "failed": 0}


@pytest.mark.slow
def test_the_demo_runs_its_jobs_with_the_same_bar(sqlite_url, env_db, tiny_base_model, capsys):
    from worker import demo
    from worker.client import submit_training

    url = env_db(sqlite_url)
    load_documents(url, "train", sentiment_rows(48))
    handle = submit_training("train", tiny_base_model, model_name="senti", options=TINY_OPTIONS, enqueue=False)
    result = demo._run(handle, "train")
    assert result["model"] == "senti:1"
    out = capsys.readouterr()
    assert f"bertjobs jobs wait {handle.id}" in out.out
    assert out.err.splitlines()[-1] == f"job {handle.id} succeeded [{'#' * 30}] {_steps(url, handle.id)} steps"


@pytest.mark.slow
def test_ctrl_c_stops_waiting_with_one_line_and_the_job_goes_on(sqlite_url, env_db, tmp_path):
    import signal
    import time

    from db import repo
    from db.session import session_factory_for
    from worker.client import JobHandle

    env_db(sqlite_url)
    with session_factory_for(sqlite_url).begin() as s:  # a queued row no worker will take (as SQL inserts one)
        job, _ = repo.create_job(s, "classify", {"collection": "inbox", "model": "senti:1"}, max_attempts=3,
                                 dedupe_key=None)
        handle = JobHandle(job.id)
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "jobs", "wait", str(handle.id)],
                            env=_env(sqlite_url, tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a shell running this suite in the background ignores SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stderr.readline()  # the bar's first plain line: the wait has begun
    assert first.startswith(f"job {handle.id} queued    0 documents"), first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == f"stopped waiting; job {handle.id} goes on: bertjobs jobs wait {handle.id}\n"
    assert handle.status() == "queued"
