"""A real ``celery worker`` that trains one job over two CPU processes (DistributedDataParallel, gloo), as a
worker owning several GPUs does: rank 0 is the prefork child, rank 1 its own subprocess. Killed mid-run, the
job resumes from its last epoch checkpoint and registers one model version; the orphaned rank ends by itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import ModelVersion
from db.session import session_factory_for
from helpers import load_documents, sentiment_corpus
from worker.cli import main
from worker.client import submit_training
from worker.ops.reaper import reap
from workers import ROOT, wait_for

# The refit (on by default) has its own test below; the others check the selection run over two processes.
OPTIONS = {"epochs": 8, "batch_size": 8, "learning_rate": 3e-3, "max_length": 32, "device": "cpu", "refit": False}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _rank_under(worker_pid: int) -> tuple[int, int] | None:
    """(the prefork child running rank 0, its rank 1 process), once the run has started."""
    for child in _children(worker_pid):
        for grandchild in _children(child):
            if "worker.ml.ddp_rank" in Path(f"/proc/{grandchild}/cmdline").read_text(errors="replace"):
                return child, grandchild
    return None


def _load(url: str, n: int) -> None:
    texts, labels = sentiment_corpus(n)
    load_documents(url, "reviews", [{"external_id": f"r{i}", "text": t, "label": label}
                                    for i, (t, label) in enumerate(zip(texts, labels))])


def _reap_until_finished(job, settings, timeout: float):
    def finished():
        reap(settings)
        return job.snapshot().finished

    wait_for(finished, timeout=timeout, interval=0.5, what=f"job {job.id} finished")
    return job.snapshot()


def _start_two_process_job(workers, settings, base_model, options):
    """A worker whose training jobs run over 2 processes, and a training job for it over 96 texts."""
    _load(settings.resolved_database_url, 96)
    proc = workers.start("a", queues="train,maintenance", BERTJOBS_TRAIN_PROCESSES="2")
    job = submit_training("reviews", base_model, model_name="ddp", settings=settings, options=options)
    return proc, job


@pytest.mark.slow
def test_a_two_process_training_job_killed_mid_run_resumes_from_its_checkpoint_and_registers_once(
        workers, service_settings, tiny_base_model):
    url = service_settings.resolved_database_url
    proc, job = _start_two_process_job(workers, service_settings, tiny_base_model, OPTIONS)
    checkpoint = Path(service_settings.resolved_model_store) / ".checkpoints" / f"job{job.id}" / "checkpoint.pt"
    wait_for(checkpoint.is_file, timeout=120, what="the first epoch's checkpoint")
    child, rank1 = wait_for(lambda: _rank_under(proc.pid), timeout=10, what="rank 1 of the run")
    os.kill(rank1, signal.SIGSTOP)  # rank 0 cannot finish the run without rank 1: the kill comes mid-run
    os.kill(child, signal.SIGKILL)  # the process running the job (rank 0) dies; the worker starts another
    os.kill(rank1, signal.SIGCONT)
    wait_for(lambda: not _alive(rank1), timeout=15, what="the orphaned rank 1 ending by itself")

    snap = _reap_until_finished(job, service_settings, timeout=150)
    assert (snap.status, snap.attempt) == ("succeeded", 2), workers.log("a")[-3000:]
    assert 1 <= snap.result["resumed_from_epoch"] < OPTIONS["epochs"]
    with session_factory_for(url).begin() as s:
        versions = s.scalars(select(ModelVersion).where(ModelVersion.name == "ddp")).all()
        assert [v.version for v in versions] == [1]
        history = versions[0].metrics["history"]
        assert versions[0].lineage["train_processes"] == 2
    assert [h["epoch"] for h in history] == list(range(1, OPTIONS["epochs"] + 1))
    assert history[-1]["accuracy"] == 1.0  # the resumed run went on learning
    assert workers.log("a").count("training over 2 processes (DistributedDataParallel)") == 2
    wait_for(lambda: not checkpoint.parent.exists(), timeout=10, what="checkpoints removed after registration")
    assert not [p for c in _children(proc.pid) for p in _children(c)]  # no rank outlives its run


@pytest.mark.slow
def test_a_two_process_job_refits_over_two_processes_and_killed_in_its_refit_resumes_it_and_registers_once(
        workers, service_settings, tiny_base_model):
    proc, job = _start_two_process_job(workers, service_settings, tiny_base_model,
                                       {**OPTIONS, "epochs": 5, "refit": True})
    folder = Path(service_settings.resolved_model_store) / ".checkpoints" / f"job{job.id}"
    wait_for((folder / "refit" / "checkpoint.pt").is_file, timeout=240, what="the refit's first epoch checkpoint")
    # The selection run's ranks ended before the refit began: the rank 1 found now is the refit's own.
    child, rank1 = wait_for(lambda: _rank_under(proc.pid), timeout=10, what="rank 1 of the refit")
    os.kill(rank1, signal.SIGSTOP)
    os.kill(child, signal.SIGKILL)
    os.kill(rank1, signal.SIGCONT)
    wait_for(lambda: not _alive(rank1), timeout=15, what="the orphaned rank 1 ending by itself")

    snap = _reap_until_finished(job, service_settings, timeout=240)
    assert (snap.status, snap.attempt) == ("succeeded", 2), workers.log("a")[-3000:]
    with session_factory_for(service_settings.resolved_database_url).begin() as s:
        versions = s.scalars(select(ModelVersion).where(ModelVersion.name == "ddp")).all()
        assert [v.version for v in versions] == [1]
        lineage, metrics = versions[0].lineage, versions[0].metrics
    # The second attempt ends the selection run from its checkpoint (the same epoch choice), then the refit's.
    assert 1 <= metrics["refit"]["resumed_from_epoch"] < metrics["best_epoch"]
    assert lineage["refit"] == {"epochs": metrics["best_epoch"], "train_size": 96}
    assert [h["epoch"] for h in metrics["refit"]["history"]] == list(range(1, metrics["best_epoch"] + 1))
    assert lineage["train_processes"] == 2
    wait_for(lambda: not folder.exists(), timeout=10, what="checkpoints removed after registration")


@pytest.mark.slow
def test_cancelling_a_two_process_training_job_stops_both_ranks_and_registers_nothing(
        workers, service_settings, tiny_base_model):
    url = service_settings.resolved_database_url
    proc, job = _start_two_process_job(workers, service_settings, tiny_base_model, {**OPTIONS, "epochs": 200})
    _, rank1 = wait_for(lambda: _rank_under(proc.pid), timeout=120, what="rank 1 of the run")
    wait_for(lambda: job.snapshot().progress_done >= 1, timeout=120, what="a training step")
    job.cancel()
    assert job.wait(timeout=60).status == "cancelled"
    wait_for(lambda: not _alive(rank1), timeout=15, what="rank 1 stopping with rank 0")
    with session_factory_for(url).begin() as s:
        assert s.scalar(select(ModelVersion.id)) is None
    assert "Traceback" not in workers.log("a")


@pytest.mark.slow
def test_a_worker_given_several_gpus_sees_exactly_those(worker_env, tmp_path):
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--gpus", "2,0", "--queues", "train",
                                 "--", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: "ready." in log_path.read_text(), 60, what="the worker to start")
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"CUDA_VISIBLE_DEVICES=2,0" in environ
        assert "gpu2-0@" in log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("argv, settings, message", [
    (["--gpus", "0,x"], {}, "error: --gpus takes distinct GPU numbers separated by commas (0,1,2,3), not '0,x'"),
    (["--gpus", "1,1"], {}, "error: --gpus takes distinct GPU numbers separated by commas (0,1,2,3), not '1,1'"),
    (["--gpus", "0,1"], {"train_processes": "4"}, "error: BERTJOBS_TRAIN_PROCESSES=4, but this worker owns 2 GPU(s)"),
])
def test_a_worker_refuses_a_bad_gpu_list_in_one_line(env_db, tmp_path, capsys, argv, settings, message):
    env_db(f"sqlite:///{tmp_path / 'db.sqlite'}", **settings)
    assert main(["worker", *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_a_worker_takes_one_gpu_or_several_not_both(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "--gpu", "0", "--gpus", "0,1"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
