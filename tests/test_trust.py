"""Honest numbers as users meet them (issues #15, #18): a model that predicts one class for everything is
flagged by `train`, `models list/show` and the report, and becomes production only with --force; every version
carries the TF-IDF baseline, its calibration, and the description and tags it was trained with."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker.cli import main


def _noise_rows(n: int) -> list[dict]:
    """Texts that say nothing about their label, 3 of 5 of them 'pos': the model can only learn the prior."""
    return [{"external_id": f"n-{i}", "text": f"an ordinary film, review number {i}",
             "label": "pos" if i % 5 < 3 else "neg"} for i in range(n)]


def _train(tiny_base_model: str, name: str, *extra: str, options: dict | None = None) -> int:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in (options or TINY_OPTIONS).items()]
    return main(["train", "--collection", name, "--base-model", tiny_base_model, "--name", name, "--inline",
                 *flags, *extra])


@pytest.fixture
def store(env_db, tmp_path, monkeypatch):
    monkeypatch.setenv("BERTJOBS_MODEL_STORE", str(tmp_path / "models"))
    return tmp_path / "models"


def _version(url: str, ref: str):
    with session_factory_for(url).begin() as s:
        mv = repo.resolve_model_version(s, ref)
        s.expunge(mv)
        return mv


def test_a_one_class_model_is_flagged_everywhere_and_needs_force_for_production(any_db_url, env_db, store,
                                                                               tiny_base_model, capsys):
    url = env_db(any_db_url)
    load_documents(url, "noise", _noise_rows(300))
    options = {**TINY_OPTIONS, "epochs": 1, "learning_rate": 1e-3}
    assert _train(tiny_base_model, "noise", "--description", "a model that learns nothing", "--tag", "team=qa",
                  options=options) == 0
    out = capsys.readouterr().out
    mv = _version(url, "noise:1")
    warnings = mv.metrics["trust_warnings"]
    assert any("not clearly above the majority-class baseline" in w for w in warnings), warnings
    assert any(w.startswith("never predicts 'neg'") for w in warnings), warnings
    for w in warnings:
        assert f"warning: {w}" in out  # `train` prints them
    assert mv.metrics["majority_baseline"]["label"] == "pos"
    assert mv.metrics["tfidf_baseline"]["method"] == "tfidf+logreg" and "fit_seconds" in mv.metrics["tfidf_baseline"]

    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:3] == ["model", "aliases", "flags"]
    assert listed[1].split()[2] == f"!{len(warnings)}" and "a model that learns nothing [team=qa]" in listed[1]
    assert any(line.startswith("! noise:1: ") for line in listed)

    assert main(["models", "show", "noise:1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["warnings"] == warnings and shown["tags"] == {"team": "qa"}
    assert shown["description"] == "a model that learns nothing"

    report = (store / "noise" / f"job{mv.training_job_id}-attempt1.report.html").read_text()
    assert report.index("Warnings") < report.index("Learning curves")
    assert "never predicts &#x27;neg&#x27;" in report and "a model that learns nothing" in report

    assert main(["models", "promote", "noise:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: noise:1 is flagged: ") and err.endswith("with --force if you must\n")
    assert len(err.splitlines()) == 1
    assert main(["models", "promote", "noise:1", "--alias", "staging"]) == 0  # only production is guarded
    assert main(["models", "promote", "noise:1", "--force"]) == 0
    assert _version(url, "noise@production").version == 1


def test_a_learned_model_is_calibrated_and_compared_with_tfidf_and_can_be_described_again(sqlite_url, env_db,
                                                                                        store, tiny_base_model,
                                                                                        capsys):
    url = env_db(sqlite_url)
    load_documents(url, "senti", sentiment_rows(120))
    assert _train(tiny_base_model, "senti", "--tag", "source=test") == 0
    capsys.readouterr()
    mv = _version(url, "senti:1")
    calibration = mv.metrics["calibration"]
    assert calibration["temperature"] > 0 and calibration["ece_after"] <= calibration["ece_before"] + 1e-9
    meta = json.loads((Path(mv.artifact_path) / "bertjobs.json").read_text())
    assert meta["temperature"] == pytest.approx(calibration["temperature"])
    comparison = mv.metrics["tfidf_comparison"]
    assert "TF-IDF+LR" in comparison["line"] and comparison["clearly_better"] in (True, False)
    assert mv.metrics["intervals"]["macro_f1"]["low"] <= mv.metrics["macro_f1"] <= mv.metrics["intervals"]["macro_f1"]["high"]
    report = (store / "senti" / f"job{mv.training_job_id}-attempt1.report.html").read_text()
    assert "Calibration" in report and 'aria-label="reliability diagram"' in report and "TF-IDF" in report

    # Scores are softmax(logits / T) in every prediction path: predict shows the calibrated score.
    from worker.ml.predict import Classifier

    text = "a wonderful and superb film"
    assert main(["predict", "senti:1", text, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["predictions"]
    clf = Classifier.from_artifact(mv.artifact_path)
    assert clf.temperature == pytest.approx(calibration["temperature"])
    assert row["score"] == pytest.approx(clf.predict([text])[0].score)
    clf.temperature = 1.0
    raw = clf.predict([text])[0].score
    assert abs(raw - row["score"]) > 1e-6 or abs(calibration["temperature"] - 1) < 1e-3

    assert main(["models", "describe", "senti:1", "sentiment of film reviews"]) == 0
    assert capsys.readouterr().out == "senti:1: sentiment of film reviews\n"
    mv = _version(url, "senti:1")
    assert mv.lineage["description"] == "sentiment of film reviews" and mv.lineage["tags"] == {"source": "test"}
    assert main(["models", "describe", "ghost:1", "x"]) == 2
    assert capsys.readouterr().err == "error: no ready model version matches 'ghost:1'\n"
    assert _train(tiny_base_model, "senti", "--tag", "novalue") == 2
    assert capsys.readouterr().err == "error: --tag takes key=value, got 'novalue'\n"
