"""Job functions run in-process (as the embedded runner does) on SQLite and on PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from db import repo
from db.models import Document, Job, ModelVersion, Prediction
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows, topic_corpus
from worker import jobs
from worker.client import JobHandle, submit_classification, submit_training
from worker.errors import InvalidJob, InvalidName
from worker.jobs.shards import parent_outcome

TINY = TINY_OPTIONS



def _train(settings, collection="train", **kw):
    options = kw.pop("options", TINY)
    handle = submit_training(collection, kw.pop("base_model"), model_name=kw.pop("model_name", "senti"),
                             options=options, settings=settings, enqueue=False, **kw)
    return handle, jobs.run_training(handle.id, settings=settings)


@pytest.mark.slow
def test_a_training_job_registers_a_model_version_with_metrics_lineage_and_a_hashed_artifact(
        any_db_url, make_settings, tiny_base_model):
    settings = make_settings(any_db_url)
    load_documents(any_db_url, "train", sentiment_rows(48))
    handle, outcome = _train(settings, base_model=tiny_base_model)
    assert outcome is jobs.Outcome.succeeded
    snap = handle.snapshot()
    assert snap.status == "succeeded" and snap.attempt == 1
    assert snap.result["model"] == "senti:1"
    assert snap.progress_done == snap.progress_total > 0
    with session_factory_for(any_db_url).begin() as s:
        mv = s.scalar(select(ModelVersion))
        assert mv.labels == ["neg", "pos"] and mv.training_job_id == handle.id
        assert mv.metrics["accuracy"] >= 0.9
        assert {"macro_f1", "per_class", "confusion_matrix", "history", "best_epoch"} <= set(mv.metrics)
        assert len(mv.metrics["history"]) == TINY["epochs"]
        assert mv.lineage["row_count"] == 48 and mv.lineage["label_counts"] == {"neg": 24, "pos": 24}
        assert mv.lineage["seed"] == 7 and len(mv.lineage["content_sha256"]) == 64
        assert {"torch", "transformers"} <= set(mv.lineage["libraries"])
        assert mv.lineage["train_processes"] == 1  # a CPU worker without BERTJOBS_TRAIN_PROCESSES: one process
        check = mv.lineage["data_check"]
        assert check["class_counts"] == {"neg": 24, "pos": 24} and check["blocking"] == []
        assert check["length"]["unit"] == "tokens" and "validation_texts_seen_in_training" in check
        assert mv.hyperparameters["learning_rate"] == TINY["learning_rate"]
        artifact = Path(mv.artifact_path)
    assert (artifact / "model.safetensors").is_file() and not list(artifact.glob("*.bin"))
    assert not [p for p in artifact.parent.iterdir() if p.name.startswith(".tmp-")]
    from worker.ml.artifact import artifact_sha256

    assert artifact_sha256(artifact) == mv.artifact_sha256


@pytest.mark.slow
def test_two_training_jobs_on_the_same_data_and_seed_register_the_same_metrics_and_data_hash(
        sqlite_url, make_settings, tiny_base_model):
    settings = make_settings(sqlite_url)
    load_documents(sqlite_url, "train", sentiment_rows(48))
    for _ in range(2):
        assert _train(settings, base_model=tiny_base_model)[1] is jobs.Outcome.succeeded
    with session_factory_for(sqlite_url).begin() as s:
        first, second = s.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
        assert first.lineage["content_sha256"] == second.lineage["content_sha256"]
        assert first.lineage["seed"] == second.lineage["seed"] == TINY["seed"]
        assert first.lineage["libraries"] == second.lineage["libraries"]
        strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
        assert strip(first.metrics["history"]) == strip(second.metrics["history"])
        assert first.metrics["per_class"] == second.metrics["per_class"]


@pytest.mark.slow
def test_a_searched_windowed_model_records_its_trials_and_bulk_classification_reads_it_in_windows(
        sqlite_url, make_settings, tiny_base_model):
    from worker.ml.loader import load_classifier
    from worker.ops.report import report_path

    settings = make_settings(sqlite_url)
    load_documents(sqlite_url, "train", sentiment_rows(48))
    options = {**TINY, "epochs": 2, "long_documents": "windows", "max_length": 16, "window_overlap": 4,
               "trials": 2, "search_space": {"learning_rate": [1e-4, 2e-3], "epochs": [2]}}
    handle, outcome = _train(settings, base_model=tiny_base_model, options=options)
    assert outcome is jobs.Outcome.succeeded, handle.snapshot().error
    with session_factory_for(sqlite_url).begin() as s:
        mv = s.scalar(select(ModelVersion))
        trials = mv.metrics["trials"]
        assert len(trials) == 2 and [t["selected"] for t in trials].count(True) == 1
        chosen = next(t for t in trials if t["selected"])
        assert mv.hyperparameters["learning_rate"] == chosen["options"]["learning_rate"]
        assert mv.hyperparameters["trials"] == 2 and mv.hyperparameters["long_documents"] == "windows"
        assert mv.hyperparameters["window_pooling"] == "max"  # the default with windows, recorded as such
        assert mv.lineage["validation_removed"] == 0
        path, sha = mv.artifact_path, mv.artifact_sha256
    assert "Hyperparameter search (2 trials" in report_path(path).read_text()
    assert load_classifier(path, sha256=sha, device="cpu").windows["long_documents"] == "windows"

    load_documents(sqlite_url, "new", sentiment_rows(8, prefix="new"))
    chandle = submit_classification("new", "senti", settings=settings, enqueue=False)
    assert jobs.run_classification(chandle.id, settings=settings) is jobs.Outcome.succeeded
    assert chandle.snapshot().result["classified"] == 8


@pytest.mark.slow
def test_a_multilabel_collection_trains_a_sigmoid_model_and_bulk_classification_writes_label_sets(
        any_db_url, make_settings, tiny_base_model):
    settings = make_settings(any_db_url)
    texts, sets = topic_corpus(150)
    load_documents(any_db_url, "topics", [{"external_id": f"t{i}", "text": t, "labels": s}
                                          for i, (t, s) in enumerate(zip(texts[:120], sets[:120]))])
    options = {"epochs": 8, "batch_size": 8, "learning_rate": 3e-3, "seed": 42, "multi_label": True}
    handle, outcome = _train(settings, "topics", base_model=tiny_base_model, model_name="topics", options=options)
    assert outcome is jobs.Outcome.succeeded, handle.snapshot().error
    with session_factory_for(any_db_url).begin() as s:
        mv = s.scalar(select(ModelVersion).where(ModelVersion.name == "topics"))
        assert mv.labels == ["action", "comedy", "romance"] and mv.metrics["multi_label"] is True
        assert set(mv.metrics["thresholds"]) == set(mv.labels) and mv.metrics["macro_f1"] >= 0.85
        assert mv.lineage["label_counts"] == {"action": 60, "comedy": 60, "romance": 60}
        report = Path(mv.artifact_path + ".report.html").read_text()
        assert "<th>threshold</th>" in report and "exact-match accuracy" in report
    from worker.ops.registry import evaluate

    with session_factory_for(any_db_url).begin() as s:  # what a gated promotion computes, on label sets
        scored = evaluate(s.scalar(select(ModelVersion).where(ModelVersion.name == "topics")), "topics", settings)
    assert scored["multi_label"] is True and scored["macro_f1"] >= 0.85

    load_documents(any_db_url, "unseen", [{"external_id": f"u{i}", "text": t} for i, t in enumerate(texts[120:])])
    chandle = submit_classification("unseen", "topics", settings=settings, enqueue=False)
    assert jobs.run_classification(chandle.id, settings=settings) is jobs.Outcome.succeeded
    with session_factory_for(any_db_url).begin() as s:
        rows = s.execute(select(Prediction.labels, Prediction.label, Document.external_id)
                         .join(Document, Document.id == Prediction.document_id)
                         .where(Document.collection == "unseen")).all()
    assert len(rows) == 30
    exact = sum(sorted(r.labels) == sets[120 + int(r.external_id[1:])] for r in rows)
    assert exact >= 24
    assert all(r.label == (r.labels[0] if r.labels else None) for r in rows)


@pytest.mark.slow
def test_a_classification_job_writes_one_prediction_or_failure_row_per_document(
        any_db_url, make_settings, tiny_base_model):
    settings = make_settings(any_db_url)
    load_documents(any_db_url, "train", sentiment_rows(48))
    _train(settings, base_model=tiny_base_model)
    new = sentiment_rows(40, prefix="new") + [
        {"external_id": "empty", "text": "   "},
        {"external_id": "huge", "text": "word " * 400},  # over max_text_chars below
    ]
    settings = make_settings(any_db_url, max_text_chars=1000)
    load_documents(any_db_url, "new", new)
    handle = submit_classification("new", "senti", settings=settings, enqueue=False)
    assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.succeeded
    snap = handle.snapshot()
    assert snap.result["classified"] == 40 and snap.result["failed"] == 2
    assert snap.progress_done == snap.progress_total == 42
    with session_factory_for(any_db_url).begin() as s:
        rows = s.execute(text("SELECT external_id, label, gold_label, score, error FROM latest_predictions "
                              "WHERE collection = 'new'")).all()
        assert len(rows) == 42
        errors = {r.external_id: r.error for r in rows if r.error}
        assert errors == {"empty": "text is empty or whitespace", "huge": "text is longer than 1000 characters (2000)"}
        scored = [r for r in rows if not r.error]
        assert sum(r.label == r.gold_label for r in scored) / len(scored) >= 0.9
        assert all(0.5 <= r.score <= 1.0 for r in scored)

    again = submit_classification("new", "senti:1", settings=settings, enqueue=False)
    assert jobs.run_classification(again.id, settings=settings) is jobs.Outcome.succeeded
    assert again.snapshot().result["documents"] == 0  # nothing left that this version has not classified
    with session_factory_for(any_db_url).begin() as s:
        assert s.scalar(text("SELECT count(*) FROM predictions")) == 42


@pytest.mark.parametrize("case, rows, base, reason", [
    ("one class", [{"external_id": str(i), "text": f"t {i}", "label": "pos"} for i in range(6)], "tiny",
     "only one class ('pos') in 6 documents; need at least two"),
    ("missing labels", [{"external_id": str(i), "text": f"t {i}", "label": "pos" if i else None} for i in range(6)],
     "tiny", "1 documents of collection 'train' have no label; label them or train with skip_unlabelled"),
    ("single example", [{"external_id": str(i), "text": f"t {i}", "label": "pos" if i else "neg"} for i in range(6)],
     "tiny", "class with a single example cannot be split for validation: 'neg'"),
    ("empty collection", [], "tiny", "collection 'train' has no labelled documents"),
    ("missing folder", sentiment_rows(8), "/no/such/model", "base model folder '/no/such/model' does not exist"),
    ("unknown hub name", sentiment_rows(8), "no-such-org/no-such-bert",
     "base model 'no-such-org/no-such-bert': the hub is offline"),
])
def test_bad_training_input_fails_the_job_once_with_a_one_line_reason(
        case, rows, base, reason, clean_pg, make_settings, tiny_base_model):
    """Rows inserted with SQL (the client refuses most of these at submit) are checked again at claim time."""
    from worker.client import JobHandle
    from worker.jobs.params import TrainParams

    settings = make_settings(clean_pg)
    if rows:
        load_documents(clean_pg, "train", rows)
    params = TrainParams(collection="train", base_model=tiny_base_model if base == "tiny" else base,
                         model_name="senti", options=TINY)
    with session_factory_for(clean_pg).begin() as s:
        job_id = repo.create_job(s, "train", params.to_dict(), max_attempts=3)[0].id
    handle, outcome = JobHandle(job_id, settings), jobs.run_training(job_id, settings=settings)
    snap = handle.snapshot()
    assert outcome is jobs.Outcome.failed
    assert (snap.status, snap.attempt) == ("failed", 1)
    assert reason in snap.error and "\n" not in snap.error


def test_classifying_with_a_model_that_does_not_exist_fails_with_the_reason(clean_pg, make_settings):
    settings = make_settings(clean_pg)
    load_documents(clean_pg, "new", sentiment_rows(4))
    with pytest.raises(InvalidJob, match="no ready model version matches 'ghost:3'"):
        submit_classification("new", "ghost:3", settings=settings, enqueue=False)
    with session_factory_for(clean_pg).begin() as s:  # a row inserted with SQL fails at claim time
        job_id = repo.create_job(s, "classify", {"collection": "new", "model": "ghost:3"}, max_attempts=3)[0].id
    assert jobs.run_classification(job_id, settings=settings) is jobs.Outcome.failed
    with session_factory_for(clean_pg).begin() as s:
        assert repo.get_job(s, job_id).error == "no ready model version matches 'ghost:3'"


def test_a_corrupt_artifact_fails_the_classification_job(clean_pg, make_settings, tiny_base_model):
    settings = make_settings(clean_pg)
    load_documents(clean_pg, "train", sentiment_rows(16))
    _train(settings, base_model=tiny_base_model, options={**TINY, "epochs": 1})
    load_documents(clean_pg, "new", sentiment_rows(4, prefix="n"))
    with session_factory_for(clean_pg).begin() as s:
        path = Path(s.scalar(select(ModelVersion.artifact_path)))
    (path / "config.json").write_text((path / "config.json").read_text() + " ")
    handle = submit_classification("new", "senti", settings=settings, enqueue=False)
    assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.failed
    assert "does not match its registered sha256" in handle.snapshot().error


def test_invalid_parameters_are_refused_before_anything_is_enqueued(clean_pg, make_settings):
    settings = make_settings(clean_pg)
    with pytest.raises(InvalidJob, match="learning_rate"):
        submit_training("train", "tiny", options={"learning_rate": 5}, settings=settings, enqueue=False)
    with pytest.raises(InvalidJob, match="unknown training option"):
        submit_training("train", "tiny", options={"epoch": 5}, settings=settings, enqueue=False)
    with pytest.raises(InvalidName, match="collection"):
        submit_classification("bad name!", "m", settings=settings, enqueue=False)
    with session_factory_for(clean_pg).begin() as s:
        assert s.scalar(select(Job.id)) is None


def test_a_job_that_another_worker_holds_is_left_alone(clean_pg, make_settings):
    settings = make_settings(clean_pg)
    with session_factory_for(clean_pg).begin() as s:  # a row as SQL inserts it (submit refuses an unknown model)
        handle = JobHandle(repo.create_job(s, "classify", {"collection": "new", "model": "m"}, max_attempts=3)[0].id,
                           settings)
    with session_factory_for(clean_pg).begin() as s:
        assert repo.claim_job(s, handle.id, "someone-else", lease_seconds=300) == 1
    assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.skipped
    snap = handle.snapshot()
    assert (snap.status, snap.attempt) == ("running", 1)


def test_a_cancelled_queued_job_never_starts(clean_pg, make_settings):
    settings = make_settings(clean_pg)
    with session_factory_for(clean_pg).begin() as s:  # a row as SQL inserts it (submit refuses an unknown model)
        handle = JobHandle(repo.create_job(s, "classify", {"collection": "new", "model": "m"}, max_attempts=3)[0].id,
                           settings)
    assert handle.cancel() == "cancelled"
    assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.skipped
    assert handle.snapshot().attempt == 0


def _sharded_setup(url, settings, tiny_base_model, n_docs=50):
    load_documents(url, "train", sentiment_rows(48))
    _train(settings, base_model=tiny_base_model)
    load_documents(url, "big", sentiment_rows(n_docs, prefix="big"))


@pytest.mark.slow
def test_a_sharded_bulk_job_finishes_when_its_last_shard_does(any_db_url, make_settings, tiny_base_model):
    settings = make_settings(any_db_url)
    _sharded_setup(any_db_url, settings, tiny_base_model)
    handle = submit_classification("big", "senti", shards=3, settings=settings, enqueue=False)
    assert jobs.run_inline(handle.id, "classify", settings=settings) is jobs.Outcome.succeeded
    snap = handle.snapshot()
    assert snap.status == "succeeded"
    assert (snap.result["documents"], snap.result["classified"], snap.result["failed"]) == (50, 50, 0)
    assert snap.progress_done == snap.progress_total == 50
    with session_factory_for(any_db_url).begin() as s:
        shards = s.scalars(select(Job).where(Job.parent_id == handle.id).order_by(Job.id)).all()
        assert len(shards) == 3 and [sh.status for sh in shards] == ["succeeded"] * 3
        ranges = [(sh.params["id_min"], sh.params["id_max"]) for sh in shards]
        assert all(hi < lo2 for (_, hi), (lo2, _) in zip(ranges, ranges[1:]))  # disjoint, in order
        assert sum(sh.result["documents"] for sh in shards) == 50
        assert all(sh.params["model"] == "senti:1" for sh in shards)  # pinned to one version
        assert s.scalar(text("SELECT count(DISTINCT document_id) FROM predictions")) == 50


@pytest.mark.slow
def test_cancelling_a_sharded_job_cancels_its_queued_shards_and_then_itself(clean_pg, make_settings, tiny_base_model):
    settings = make_settings(clean_pg)
    _sharded_setup(clean_pg, settings, tiny_base_model)
    handle = submit_classification("big", "senti", shards=4, settings=settings, enqueue=False)
    spawned = []
    outcome = jobs.run_classification(handle.id, settings=settings, publish=lambda i, k: spawned.append(i))
    assert outcome is jobs.Outcome.succeeded and len(spawned) == 4
    assert handle.status() == "running"
    jobs.run_classification(spawned[0], settings=settings)  # one shard done before the cancel
    assert handle.cancel() == "cancelled"
    for shard in spawned[1:]:
        assert jobs.run_classification(shard, settings=settings) is jobs.Outcome.skipped
    snap = handle.snapshot()
    assert snap.status == "cancelled" and snap.result["documents"] < 50


def test_sharding_is_refused_with_bad_parameters(clean_pg, make_settings):
    settings = make_settings(clean_pg)
    for bad in (0, 5000, "2"):
        with pytest.raises(InvalidJob, match="shards must be"):
            submit_classification("big", "senti", shards=bad, settings=settings, enqueue=False)


@pytest.mark.slow
def test_a_filter_selects_what_is_trained_on_and_classified(clean_pg, make_settings, tiny_base_model):
    settings = make_settings(clean_pg)
    rows = sentiment_rows(48) + [{"external_id": f"other-{i}", "text": f"unrelated {i}", "label": "spam"}
                                 for i in range(10)]
    load_documents(clean_pg, "train", rows)
    handle, outcome = _train(settings, base_model=tiny_base_model, filter={"external_id_prefix": "doc-"})
    assert outcome is jobs.Outcome.succeeded
    with session_factory_for(clean_pg).begin() as s:
        mv = s.scalar(select(ModelVersion))
        assert mv.labels == ["neg", "pos"] and mv.lineage["filter"] == {"external_id_prefix": "doc-"}
    job = submit_classification("train", "senti", filter={"labels": ["spam"]}, settings=settings, enqueue=False)
    jobs.run_classification(job.id, settings=settings)
    assert job.snapshot().result["documents"] == 10
    with pytest.raises(InvalidJob, match="unknown filter key"):
        submit_classification("train", "senti", filter={"where": "1=1"}, settings=settings, enqueue=False)


@pytest.mark.slow
def test_a_cancel_that_arrives_before_the_split_creates_no_shards(clean_pg, make_settings, tiny_base_model):
    settings = make_settings(clean_pg)
    _sharded_setup(clean_pg, settings, tiny_base_model)
    handle = submit_classification("big", "senti", shards=3, settings=settings, enqueue=False)
    original = repo.id_ranges

    def cancel_while_computing_ranges(*args, **kwargs):  # the cancel lands while the ranges are computed
        with session_factory_for(clean_pg).begin() as other:
            repo.request_cancel(other, handle.id, aggregate=parent_outcome)
        return original(*args, **kwargs)

    repo.id_ranges = cancel_while_computing_ranges
    try:
        outcome = jobs.run_classification(handle.id, settings=settings, publish=lambda i, k: None)
    finally:
        repo.id_ranges = original
    assert outcome is jobs.Outcome.cancelled
    with session_factory_for(clean_pg).begin() as s:
        assert s.scalars(select(Job).where(Job.parent_id == handle.id)).all() == []
    assert handle.status() == "cancelled"
