"""`bertjobs predict`, `bertjobs evaluate`, `models compare` and the gated promote, as users reach them."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from db.models import Evaluation
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker import jobs
from worker.cli import main
from worker.client import submit_training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _settings(monkeypatch):
    monkeypatch.setenv("BERTJOBS_CLASSIFY_CHUNK_SIZE", "16")


def _trained(url: str, base_model: str, *versions: dict) -> None:
    """senti:1, senti:2, ... trained with these options on sentiment_rows(48); a labelled `holdout` beside."""
    from worker.config import get_settings

    load_documents(url, "train", sentiment_rows(48))
    load_documents(url, "holdout", sentiment_rows(24, prefix="holdout"))
    for options in versions or (TINY_OPTIONS,):
        handle = submit_training("train", base_model, model_name="senti", options=options, settings=get_settings(),
                                 enqueue=False)
        assert jobs.run_training(handle.id, settings=get_settings()) is jobs.Outcome.succeeded


@pytest.mark.slow
def test_predict_prints_label_and_score_per_text_reads_stdin_and_writes_json(
        env_db, sqlite_url, tiny_base_model, capsys, monkeypatch, tmp_path):
    env_db(sqlite_url)
    _trained(sqlite_url, tiny_base_model)
    assert main(["predict", "senti", "a wonderful and superb film", "an awful and dreadful film"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    assert all(0.5 <= float(line.split("\t")[1]) <= 1 for line in lines)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"truly brilliant and lovely\nterrible, boring\n")))
    assert main(["predict", "senti:1", "--file", "-", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "senti:1" and [p["label"] for p in doc["predictions"]] == ["pos", "neg"]
    assert set(doc["predictions"][0]) == {"text", "label", "score", "scores", "labels", "error"}
    assert set(doc["predictions"][0]["scores"]) == {"neg", "pos"}

    # The same answers as a bulk job gives the same texts.
    from worker.client import predict
    from worker.config import get_settings

    assert [r["label"] for r in predict("senti", ["a wonderful and superb film"], settings=get_settings())] == ["pos"]

    # An empty line is that text's error, not a crash; the exit status says something failed.
    (tmp_path / "texts.txt").write_text("a lovely film\n   \n")
    assert main(["predict", "senti", "--file", str(tmp_path / "texts.txt")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pos\t") and out[1].startswith("error\t")


def test_predict_bad_input_is_one_line_without_a_traceback(env_db, sqlite_url, tmp_path, capsys):
    env_db(sqlite_url)
    assert main(["predict", "ghost", "some text"]) == 2
    assert capsys.readouterr().err == "error: no ready model version matches 'ghost'\n"
    assert main(["predict", "ghost"]) == 2
    assert "no texts to classify" in capsys.readouterr().err
    env = {**os.environ, "BERTJOBS_DATABASE_URL": sqlite_url, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1",
           "BERTJOBS_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "worker.cli", "predict", "ghost", "--file", "-"],
                          input=b"\xff\xfe bad\n", capture_output=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr.decode()
    assert proc.stderr.decode().count("\n") == 1 and "not UTF-8" in proc.stderr.decode()


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_evaluate_inline_stores_the_record_prints_it_and_models_show_lists_it(
        db, env_db, request, tiny_base_model, capsys):
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "clean_pg")
    env_db(url)
    _trained(url, tiny_base_model)
    assert main(["evaluate", "senti", "--collection", "holdout", "--inline", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["model"] == "senti:1" and ev["collection"] == "holdout" and ev["documents"] == 24
    assert ev["accuracy"] >= 0.9 and ev["macro_f1"] >= 0.9
    assert ev["baseline"]["accuracy"] == 0.5 and ev["baseline"]["label"] == "neg"
    assert ev["confusion_matrix"] and sum(map(sum, ev["confusion_matrix"])) == 24
    assert set(ev["per_class"]) == {"neg", "pos"} and len(ev["content_sha256"]) == 64 and ev["job_id"]
    with session_factory_for(url).begin() as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 1

    assert main(["evaluate", "senti:1", "--collection", "holdout", "--where-label", "pos", "--where-label", "neg",
                 "--inline"]) == 0
    text = capsys.readouterr().out
    assert "senti:1 on 'holdout' (24 documents" in text and "baseline" in text and "confusion" in text
    assert main(["models", "show", "senti:1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["evaluations"]) == 2 and shown["evaluations"][0]["filter"] == {"labels": ["pos", "neg"]}
    assert {e["content_sha256"] for e in shown["evaluations"]} == {ev["content_sha256"]}
    assert main(["models", "list", "senti"]) == 0  # the latest evaluation's accuracy beside validation's
    header, row, *flagged = capsys.readouterr().out.splitlines()  # then a line per flagged version
    assert [line.split()[1] for line in flagged] == (["senti:1:"] if shown["warnings"] else [])
    columns = dict(zip(header.split()[:6], row.split()[:6]))
    assert columns["eval_acc"] == f"{shown['evaluations'][0]['accuracy']:.4f}"
    assert columns["val_acc"] == f"{shown['metrics']['accuracy']:.4f}"


@pytest.mark.slow
def test_evaluate_refuses_a_single_class_or_unlabelled_collection_with_a_failed_job(
        env_db, sqlite_url, tiny_base_model, capsys):
    env_db(sqlite_url)
    _trained(sqlite_url, tiny_base_model)
    load_documents(sqlite_url, "onlypos", [r for r in sentiment_rows(10, prefix="p") if r["label"] == "pos"])
    load_documents(sqlite_url, "inbox", [{"external_id": f"u{i}", "text": f"text {i}"} for i in range(5)])
    assert main(["evaluate", "senti", "--collection", "onlypos", "--inline"]) == 2
    err = capsys.readouterr().err.splitlines()  # the progress bar's last line, then the error in one line
    assert err[-1].startswith("error: evaluation job") and "has only one label ('pos')" in err[-1]
    assert err[0].startswith("job ") and "failed" in err[0] and "Traceback" not in "".join(err)
    assert main(["evaluate", "senti", "--collection", "inbox", "--inline", "--json"]) == 2
    assert "has no documents with labels to evaluate senti:1 on (5 without labels)" in capsys.readouterr().err
    assert main(["evaluate", "ghost", "--collection", "inbox", "--inline"]) == 2
    assert "no ready model version matches 'ghost'" in capsys.readouterr().err
    assert main(["jobs", "--kind", "evaluate"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]  # two failed jobs; the unknown model was refused at submit
    assert len(rows) == 2 and all(" failed " in row for row in rows)


@pytest.mark.slow
def test_compare_shows_both_versions_side_by_side_with_their_disagreements(
        env_db, sqlite_url, tiny_base_model, capsys):
    env_db(sqlite_url)
    _trained(sqlite_url, tiny_base_model, TINY_OPTIONS, {**TINY_OPTIONS, "epochs": 1, "learning_rate": 1e-5})
    assert main(["models", "compare", "senti:1", "senti:2", "--collection", "holdout", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["a"]["model"] == "senti:1" and doc["b"]["model"] == "senti:2" and doc["documents"] == 24
    assert doc["a"]["macro_f1"] > doc["b"]["macro_f1"] and doc["disagreements"] > 0
    example = doc["examples"][0]
    assert set(example) == {"document_id", "text", "gold", "a", "b"} and example["a"] != example["b"]
    assert main(["models", "compare", "senti:1", "senti:2", "--collection", "holdout", "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{doc['disagreements']} disagreements" in out and "senti:1" in out and "senti:2" in out
    # The gated promote takes the same path and keeps its evaluations too.
    assert main(["models", "promote", "senti:2", "--gate", "holdout", "--force"]) == 0  # small validation: flagged
    assert main(["models", "promote", "senti:1", "--gate", "holdout", "--force"]) == 0
    assert "gate macro-F1" in capsys.readouterr().out
    with session_factory_for(sqlite_url).begin() as s:
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 2 * 2 + 1 + 2  # two compares, two gates


@pytest.mark.slow
def test_a_multilabel_model_evaluates_on_label_sets_at_its_thresholds(env_db, sqlite_url, tiny_base_model, capsys):
    from helpers import topic_corpus
    from worker.config import get_settings

    env_db(sqlite_url)
    texts, sets = topic_corpus(150)
    load_documents(sqlite_url, "topics", [{"external_id": f"t{i}", "text": t, "labels": s}
                                          for i, (t, s) in enumerate(zip(texts[:120], sets[:120]))])
    load_documents(sqlite_url, "topics-holdout", [{"external_id": f"h{i}", "text": t, "labels": s}
                                                  for i, (t, s) in enumerate(zip(texts[120:], sets[120:]))])
    options = {"epochs": 8, "batch_size": 8, "learning_rate": 3e-3, "seed": 42, "multi_label": True}
    handle = submit_training("topics", tiny_base_model, model_name="topics", options=options,
                             settings=get_settings(), enqueue=False)
    assert jobs.run_training(handle.id, settings=get_settings()) is jobs.Outcome.succeeded
    assert main(["evaluate", "topics", "--collection", "topics-holdout", "--inline", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["multi_label"] is True and ev["documents"] == 30 and ev["confusion_matrix"] is None
    assert set(ev["thresholds"]) == {"action", "comedy", "romance"} and ev["macro_f1"] >= 0.8
    # Each topic is on half the documents: the baseline always answers all three.
    assert ev["macro_f1"] > ev["baseline"]["macro_f1"] and ev["baseline"]["labels"] == ["action", "comedy", "romance"]
    assert main(["predict", "topics", "the film explosion joke scene 7", "--json"]) == 0
    [p] = json.loads(capsys.readouterr().out)["predictions"]
    assert isinstance(p["labels"], list) and set(p["scores"]) == {"action", "comedy", "romance"}


@pytest.mark.slow
def test_a_queued_evaluation_runs_on_a_classify_worker(workers, service_settings, tiny_base_model):
    from worker.client import submit_evaluation

    url = service_settings.resolved_database_url
    load_documents(url, "train", sentiment_rows(48))
    load_documents(url, "holdout", sentiment_rows(24, prefix="holdout"))
    handle = submit_training("train", tiny_base_model, model_name="senti", options=TINY_OPTIONS,
                             settings=service_settings, enqueue=False)
    assert jobs.run_training(handle.id, settings=service_settings) is jobs.Outcome.succeeded
    workers.start("w1", queues="classify")
    evaluation = submit_evaluation("holdout", "senti", settings=service_settings)
    assert evaluation.published
    result = evaluation.result(timeout=180)
    assert result["model"] == "senti:1" and result["documents"] == 24 and result["macro_f1"] >= 0.9
    with session_factory_for(url).begin() as s:
        row = s.get(Evaluation, result["evaluation_id"])
        assert row.job_id == evaluation.id and row.collection == "holdout"
