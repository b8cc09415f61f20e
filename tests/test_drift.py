"""Label drift between runs (`bertjobs drift`, the label_drift view, metrics) and the low-confidence setting."""
from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import text

from db import repo
from db.session import session_factory_for
from helpers import NEGATIVE, POSITIVE, TINY_OPTIONS, load_documents, sentiment_rows
from worker.cli import main
from worker.ml.drift import EPSILON, Run, compare, mean_shares, psi, shares

RUN_KEYS = {"job_id", "finished_at", "model", "model_version", "scope", "filter", "classified", "failed", "mean_score",
            "labels", "psi", "shifted", "baseline", "version_changed", "scope_changed", "note"}
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_OPTIONS.items()]


# ---------------------------------------------------------------- the PSI (pure)


def test_psi_is_zero_for_equal_shares_and_the_textbook_sum_otherwise():
    assert psi({"a": 0.5, "b": 0.5}, {"b": 0.5, "a": 0.5}) == 0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi({"a": 0.7, "b": 0.3}, {"a": 0.5, "b": 0.5}) == pytest.approx(expected)


def test_a_label_on_one_side_only_counts_with_epsilon_on_the_other():
    value = psi({"a": 1.0}, {"a": 0.5, "b": 0.5})
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert value == pytest.approx(expected) and math.isfinite(value)


def test_shares_and_their_mean_over_runs_that_lack_a_label():
    assert shares({"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25} and shares({}) == {}
    assert mean_shares([{"a": 1.0}, {"a": 0.5, "b": 0.5}]) == {"a": 0.75, "b": 0.25}


def test_each_run_is_compared_with_the_mean_of_up_to_window_runs_before_it():
    runs = [Run(1, 1, "new", {"a": 50, "b": 50}), Run(2, 1, "new", {"a": 70, "b": 30}),
            Run(3, 1, "new", {"a": 0, "b": 0}), Run(4, 2, "new", {"a": 90, "b": 10}),
            Run(5, 2, "all", {"a": 60, "b": 40})]
    first, second, empty, fourth, fifth = compare(runs, window=2, threshold=0.2)
    assert (first.psi, first.note, first.baseline) == (None, "first run: nothing to compare", ())
    assert second.psi == pytest.approx(psi({"a": 0.7, "b": 0.3}, {"a": 0.5, "b": 0.5})) and not second.shifted
    assert empty.psi is None and empty.note == "no document classified: nothing to compare"
    # the run that classified nothing is no baseline: runs 1 and 2 are the two before run 4
    assert fourth.baseline == (1, 2) and fourth.version_changed and not fourth.scope_changed
    assert fourth.psi == pytest.approx(psi({"a": 0.9, "b": 0.1}, {"a": 0.6, "b": 0.4})) and fourth.shifted
    assert fifth.baseline == (2, 4) and fifth.scope_changed and not fifth.version_changed


def test_a_sharded_runs_tally_adds_counts_and_weighs_mean_scores():
    a = repo.Tally(3, 1, (repo.LabelTally("pos", 2, 0.9), repo.LabelTally("neg", 1, 0.6)))
    b = repo.Tally(2, 0, (repo.LabelTally("neg", 2, 0.8),))
    merged = repo.Tally.merge([a, b])
    assert (merged.classified, merged.failed) == (5, 1)
    assert [(t.label, t.documents) for t in merged.labels] == [("neg", 3), ("pos", 2)]
    assert merged.labels[0].mean_score == pytest.approx((0.6 + 2 * 0.8) / 3)
    assert merged.mean_score == pytest.approx((2 * 0.9 + 0.6 + 2 * 0.8) / 5)
    assert repo.Tally.from_json(merged.to_json()) == merged and repo.Tally.from_json({"classified": 1}) is None


# ---------------------------------------------------------------- through the CLI


def _out(capsys, argv: list[str]) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _predicted_shares(url: str, job_ids: list[int]) -> dict[str, float]:
    """Label shares of the success rows the jobs wrote, counted straight from predictions."""
    with session_factory_for(url).begin() as s:
        rows = s.execute(text("SELECT label, count(*) FROM predictions WHERE error IS NULL AND job_id IN "
                              f"({','.join(str(i) for i in job_ids)}) GROUP BY label")).all()
    total = sum(n for _, n in rows)
    return {label: n / total for label, n in rows}


def _one_sided(prefix: str, words: list[str], n: int) -> list[dict]:
    return [{"external_id": f"{prefix}-{i}", "text": f"a {words[i % 8]} and {words[(i + 2) % 8]} film, truly "
             f"{words[(i + 5) % 8]}"} for i in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_drift_flags_a_run_whose_label_shares_moved(db, request, env_db, tiny_base_model, capsys):
    url = env_db(request.getfixturevalue("sqlite_url" if db == "sqlite" else "clean_pg"),
                 broker_url=request.getfixturevalue("redis_url"), classify_shard_size="8")
    load_documents(url, "train", sentiment_rows(48))
    _out(capsys, ["train", "--collection", "train", "--base-model", tiny_base_model, "--name", "senti", "--inline",
                  *TINY_FLAGS])
    load_documents(url, "inbox", sentiment_rows(20, prefix="inbox"))
    _out(capsys, ["classify", "--collection", "inbox", "--model", "senti", "--inline", "--shards", "1"])
    load_documents(url, "inbox", _one_sided("pos", POSITIVE, 12))  # only the new documents: all positive
    _out(capsys, ["classify", "--collection", "inbox", "--model", "senti", "--inline"])  # 12 > 8: two shards

    report = json.loads(_out(capsys, ["drift", "--collection", "inbox", "--model", "senti", "--json"]))
    assert (report["collection"], report["model"], report["threshold"], report["baseline_runs"]) == \
        ("inbox", "senti", 0.2, 7)
    first, second = report["runs"]
    assert set(first) == RUN_KEYS and (first["psi"], first["note"]) == (None, "first run: nothing to compare")
    assert (first["classified"], second["classified"], second["scope"], second["model"]) == (20, 12, "new", "senti:1")
    with session_factory_for(url).begin() as s:
        shard_ids = [j.id for j in repo.list_jobs(s, kind="classify") if j.parent_id == second["job_id"]]
    assert len(shard_ids) == 2  # the run's counts sum its shards' predictions
    before, after = _predicted_shares(url, [first["job_id"]]), _predicted_shares(url, shard_ids)
    assert {x["label"]: x["share"] for x in first["labels"]} == pytest.approx(before)
    assert {x["label"]: x["share"] for x in second["labels"]} == pytest.approx(after)
    assert after.get("pos", 0) >= 0.75 and second["baseline"] == [first["job_id"]]
    assert second["psi"] == pytest.approx(psi(after, before)) and second["psi"] >= 0.2 and second["shifted"]

    people = _out(capsys, ["drift", "--collection", "inbox", "--model", "senti"])
    assert "first run: nothing to compare" in people and people.splitlines()[-1].split()[-1] == "SHIFT"
    _check_view_and_metrics(url, capsys, second, after)
    _check_version_and_scope_marks(url, capsys, tiny_base_model)


def _check_view_and_metrics(url: str, capsys, run: dict, shares_now: dict[str, float]) -> None:
    with session_factory_for(url).begin() as s:
        rows = s.execute(text("SELECT label, share, model_version, classified FROM label_drift "
                              "WHERE collection = 'inbox' AND model_name = 'senti' AND job_id = :j"),
                         {"j": run["job_id"]}).all()
    assert {label: share for label, share, _, _ in rows} == pytest.approx(shares_now)
    assert {(v, n) for _, _, v, n in rows} == {(1, 12)}
    metrics = _out(capsys, ["metrics"]).splitlines()
    for label, share in shares_now.items():
        line = f'bertjobs_label_share{{collection="inbox",label="{label}",model="senti"}} '
        assert any(m.startswith(line) and float(m.split()[-1]) == pytest.approx(share) for m in metrics), metrics
    psi_line = next(m for m in metrics if m.startswith('bertjobs_label_drift_psi{collection="inbox",model="senti"}'))
    assert float(psi_line.split()[-1]) == pytest.approx(run["psi"], abs=1e-5)
    assert 'bertjobs_label_drift_shifted{collection="inbox",model="senti"} 1' in metrics


def _check_version_and_scope_marks(url: str, capsys, tiny_base_model: str) -> None:
    _out(capsys, ["train", "--collection", "train", "--base-model", tiny_base_model, "--name", "senti", "--inline",
                  *TINY_FLAGS])
    _out(capsys, ["classify", "--collection", "inbox", "--model", "senti:2", "--inline", "--shards", "1"])
    _out(capsys, ["classify", "--collection", "inbox", "--model", "senti:2", "--all", "--inline", "--shards", "1",
                  "--where-id-prefix", "inbox-"])
    runs = json.loads(_out(capsys, ["drift", "--collection", "inbox", "--model", "senti", "--json", "--runs", "2"]))["runs"]
    assert [(r["model"], r["scope"], r["version_changed"], r["scope_changed"]) for r in runs] == \
        [("senti:2", "new", True, False), ("senti:2", "all", False, True)]
    assert runs[1]["filter"] == {"external_id_prefix": "inbox-"} and runs[0]["classified"] == 32
    assert len(runs[1]["baseline"]) == 3
    people = _out(capsys, ["drift", "--collection", "inbox", "--model", "senti"])
    assert "new model version (was senti:1)" in people and "other documents than the run before (was new)" in people


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_drift_of_an_unknown_collection_or_model_is_one_line(db, request, env_db, capsys):
    url = env_db(request.getfixturevalue("sqlite_url" if db == "sqlite" else "clean_pg"))
    load_documents(url, "inbox", sentiment_rows(2))
    for argv, says in ((["--collection", "ghost", "--model", "senti"], "unknown collection 'ghost'"),
                       (["--collection", "inbox", "--model", "senti"], "unknown model 'senti'"),
                       (["--collection", "inbox", "--model", "senti@production"],
                        "drift compares the runs of a model name, any version: give 'senti', not 'senti@production'"),
                       (["--collection", "inbox", "--model", "senti", "--runs", "0"], "--runs must be at least 1, got 0")):
        assert main(["drift", *argv]) == 2
        assert capsys.readouterr().err == f"error: {says}\n"
    _seed_production(url, [0.9])
    assert json.loads(_out(capsys, ["drift", "--collection", "inbox", "--model", "senti", "--json"]))["runs"] == []


# ---------------------------------------------------------------- the low-confidence threshold


def _seed_production(url: str, scores: list[float]) -> None:
    """senti:1 as production, with one prediction per score on the collection `inbox` (written as a job would)."""
    from sqlalchemy import select

    from db.models import Document, utcnow

    with session_factory_for(url).begin() as s:
        mv = repo.register_model_version(s, name="senti", base_model="tiny", artifact_path="/m/senti/1",
                                         artifact_sha256="ab" * 32, labels=["neg", "pos"], hyperparameters={},
                                         metrics={}, lineage={})
        repo.set_alias(s, mv, "production")
        docs = s.scalars(select(Document.id).where(Document.collection == "inbox").order_by(Document.id)).all()
        repo.upsert_predictions(s, [{"document_id": d, "model_version_id": mv.id, "label": "pos", "score": score,
                                     "scores": {"neg": 1 - score, "pos": score}, "created_at": utcnow()}
                                    for d, score in zip(docs, scores)])


def _low_confidence(url: str) -> list[float]:
    with session_factory_for(url).begin() as s:
        return sorted(s.scalars(text("SELECT score FROM low_confidence_predictions WHERE collection = 'inbox'")))


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_the_low_confidence_view_cuts_at_the_threshold_db_upgrade_writes(db, request, env_db, capsys):
    url = env_db(request.getfixturevalue("sqlite_url" if db == "sqlite" else "clean_pg"))
    load_documents(url, "inbox", [*sentiment_rows(3)])
    _seed_production(url, [0.55, 0.65, 0.95])
    assert _low_confidence(url) == [0.55]  # the default, 0.6, before any upgrade wrote a setting

    env_db(url, low_confidence_threshold="0.7")
    assert "top scores below 0.7 (BERTJOBS_LOW_CONFIDENCE_THRESHOLD)" in _out(capsys, ["db", "upgrade"])
    assert _low_confidence(url) == [0.55, 0.65]
    assert json.loads(_out(capsys, ["db", "settings", "--json"])) == \
        {"low_confidence_threshold": {"database": 0.7, "setting": 0.7}}

    env_db(url, low_confidence_threshold="0.99")
    assert "run `bertjobs db upgrade` to write it" in _out(capsys, ["db", "settings"])
    assert _low_confidence(url) == [0.55, 0.65]  # the view reads what the database holds
    _out(capsys, ["db", "upgrade"])
    assert _low_confidence(url) == [0.55, 0.65, 0.95]

    env_db(url, low_confidence_threshold="1")
    assert main(["db", "upgrade"]) == 2
    assert capsys.readouterr().err == "error: BERTJOBS_LOW_CONFIDENCE_THRESHOLD: Input should be less than 1\n"
    assert _low_confidence(url) == [0.55, 0.65, 0.95]
