"""Scripting the `bertjobs` command: --json documents, --version, shell completion, train help, closed pipes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cli import main

ROOT = Path(__file__).resolve().parents[1]
JOB_KEYS = {"id", "kind", "status", "parent_id", "attempt", "max_attempts", "progress", "cancel_requested", "params",
            "error", "result", "created_at", "started_at", "finished_at"}
MODEL_KEYS = {"model", "id", "name", "version", "status", "base_model", "artifact", "sha256", "labels",
              "hyperparameters", "metrics", "history", "lineage", "training_job_id", "created_at", "aliases",
              "warnings", "description", "tags"}
PREDICTION_KEYS = {"document_id", "collection", "external_id", "model", "model_version_id", "label", "labels",
                   "score", "scores", "error", "job_id", "created_at", "text"}


def _seed(url: str) -> dict:
    """Two jobs, a model version and a prediction, written with the repository functions."""
    from db import repo
    from db.session import session_factory_for
    from helpers import load_documents, sentiment_rows

    load_documents(url, "inbox", sentiment_rows(4))
    with session_factory_for(url).begin() as s:
        train, _ = repo.create_job(s, "train", {"collection": "inbox"}, max_attempts=3)
        classify, _ = repo.create_job(s, "classify", {"collection": "inbox"}, max_attempts=3)
        mv = repo.register_model_version(
            s, name="sentiment", base_model="tiny", artifact_path="/models/sentiment/1", artifact_sha256="ab" * 32,
            labels=["neg", "pos"], hyperparameters={"epochs": 1},
            metrics={"accuracy": 0.75, "macro_f1": 0.7, "history": [{"epoch": 1}]},
            lineage={"row_count": 4}, training_job_id=train.id)
        from sqlalchemy import select

        from db.models import Document, utcnow

        doc_id = s.scalar(select(Document.id).where(Document.collection == "inbox").order_by(Document.id))
        repo.upsert_predictions(s, [{"document_id": doc_id, "model_version_id": mv.id, "label": "pos", "score": 0.9,
                                     "scores": {"neg": 0.1, "pos": 0.9}, "job_id": classify.id,
                                     "created_at": utcnow()}])
        return {"train": train.id, "classify": classify.id, "mv": mv.id, "doc": doc_id}


def _json_out(capsys, argv) -> object:
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_json_documents_have_the_documented_keys(db, env_db, request, capsys):
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "clean_pg")
    env_db(url)
    ids = _seed(url)

    jobs = _json_out(capsys, ["jobs", "--json"])
    assert [j["id"] for j in jobs] == [ids["classify"], ids["train"]] and all(set(j) == JOB_KEYS for j in jobs)
    assert jobs[0]["progress"] == {"done": 0, "total": None} and jobs[0]["status"] == "queued"
    assert _json_out(capsys, ["--json", "jobs", "list"]) == jobs  # the top-level flag works too
    assert _json_out(capsys, ["jobs", "list", "--json", "--kind", "train"]) == [jobs[1]]

    shown = _json_out(capsys, ["jobs", "show", str(ids["train"]), "--json"])
    assert shown == jobs[1] and shown["params"] == {"collection": "inbox"}

    models = _json_out(capsys, ["models", "list", "--json"])
    assert len(models) == 1 and set(models[0]) == MODEL_KEYS
    mv = _json_out(capsys, ["models", "show", "sentiment:1", "--json"])
    assert mv.pop("evaluations") == [] and mv == models[0] and mv["model"] == "sentiment:1" and mv["training_job_id"] == ids["train"]
    assert mv["metrics"] == {"accuracy": 0.75, "macro_f1": 0.7} and mv["history"] == [{"epoch": 1}]

    preds = _json_out(capsys, ["results", "--json", "--collection", "inbox", "--model", "sentiment"])
    assert len(preds) == 1 and set(preds[0]) == PREDICTION_KEYS
    assert preds[0]["document_id"] == ids["doc"] and preds[0]["scores"] == {"neg": 0.1, "pos": 0.9}
    assert preds[0]["label"] == "pos" and preds[0]["job_id"] == ids["classify"]

    report = _json_out(capsys, ["data", "check", "--collection", "inbox", "--json"])
    assert report["class_counts"] == {"neg": 2, "pos": 2} and report["unlabelled_documents"] == 0


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_status_filter_works_before_and_after_list(db, env_db, request, capsys):
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "clean_pg")
    env_db(url)
    _seed(url)
    for argv in (["jobs", "--status", "queued"], ["jobs", "list", "--status", "queued"],
                 ["jobs", "--status", "queued", "list"]):
        assert len(_json_out(capsys, [*argv, "--json"])) == 2
    for argv in (["jobs", "--status", "running"], ["jobs", "list", "--status", "running"]):
        assert _json_out(capsys, [*argv, "--json"]) == []
    assert len(_json_out(capsys, ["jobs", "list", "--limit", "1", "--json"])) == 1
    assert main(["jobs", "list", "--status", "queued"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("queued" in line for line in lines[1:])


def test_version_prints_the_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"bertjobs {version('bertjobs')}\n"


def _run_cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "worker.cli", *argv], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60, **kwargs)


def _complete(script: Path, *words: str) -> list[str]:
    line = " ".join(words)
    probe = (f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _bertjobs; '
             'printf "%s\\n" "${COMPREPLY[@]}"')
    return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True, timeout=30).stdout.split()


@pytest.mark.slow
def test_bash_completion_offers_commands_and_flags(tmp_path):
    done = _run_cli("completion", "bash")
    assert done.returncode == 0 and done.stderr == ""
    script = tmp_path / "bertjobs.bash"
    script.write_text(done.stdout)
    assert _complete(script, "bertjobs", "jo") == ["jobs"]
    assert _complete(script, "bertjobs", "train", "--ep") == ["--epochs"]
    assert _complete(script, "bertjobs", "jobs", "list", "--st") == ["--status"]
    assert _complete(script, "bertjobs", "models", "s") == ["show"]
    assert _complete(script, "bertjobs", "completion", "") == ["-h", "--help", "bash", "zsh"]


@pytest.mark.slow
def test_zsh_completion_is_generated_from_the_same_parser():
    done = _run_cli("completion", "zsh")
    assert done.returncode == 0 and done.stdout.startswith("#compdef bertjobs")
    assert '("jobs list") offer=(-h --help --json --status --kind --limit) ;;' in done.stdout
    assert "compdef _bertjobs bertjobs" in done.stdout
    assert _run_cli("completion", "fish").returncode == 2


@pytest.mark.slow
def test_every_train_flag_shows_its_default_and_choices():
    from dataclasses import fields

    from worker.ml.config import LONG_DOCUMENTS, LR_SCHEDULES, PRECISIONS, SELECT_METRICS, TrainConfig

    done = _run_cli("train", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split("\noptions:", 1)[1].split())  # the option list, argparse's wrapping undone
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name in (n for n in defaults if n != "base_model"):
        flag = "--" + name.replace("_", "-")
        help_text = re.search(re.escape(flag) + r"(?:, --no-[a-z-]+)? (?:[A-Z_]+ )?(.*?)(?= --[a-z]|$)", text).group(1)
        default = defaults[name]
        shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        assert f"(default: {shown}" in help_text, (flag, help_text)
    for name, choices in (("precision", PRECISIONS), ("lr-schedule", LR_SCHEDULES),
                          ("long-documents", LONG_DOCUMENTS), ("select-metric", SELECT_METRICS)):
        assert f"choices: {', '.join(choices)})" in text, name
    assert "choices: auto, cpu, cuda, cuda:N, mps" in text


def _closed_pipe(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run the CLI with its stdout a pipe whose reader is gone before anything is written (`| head -0`)."""
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, proc.returncode, None, err.decode())


@pytest.mark.slow
def test_output_into_a_closed_pipe_is_no_traceback(sqlite_url, tmp_path):
    ids = _seed(sqlite_url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BERTJOBS_DATABASE_URL": sqlite_url,
           "BERTJOBS_DATA_DIR": str(tmp_path / "data")}
    for argv in (["models", "show", "sentiment:1"], ["jobs", "show", str(ids["train"])], ["jobs", "--json"],
                 ["train", "--help"]):
        done = _closed_pipe(argv, env)
        assert done.stderr == "", (argv, done.stderr)
        assert done.returncode in (0, 141), argv
    # and a real pipeline: head takes the first line, the rest goes nowhere, quietly
    shell = subprocess.run(f"{sys.executable} -m worker.cli models show sentiment:1 | head -1", shell=True,
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert shell.stdout == "{\n" and shell.stderr == ""
