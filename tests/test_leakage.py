"""Leakage across collections (issue #16): `data check --against` and `evaluate` find the test texts that the
training collection has too, verbatim or near-exactly, and evaluate scores with and without them."""
from __future__ import annotations

import json

from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker.cli import main


def _test_rows() -> list[dict]:
    """Ten texts: two verbatim from sentiment_rows(48), one with its case and punctuation changed, seven new."""
    train = sentiment_rows(48)
    rows = [dict(train[0], external_id="t-0"), dict(train[1], external_id="t-1"),
            dict(train[2], external_id="t-2", text=train[2]["text"].upper().replace(",", " ;"))]
    fresh = sentiment_rows(10, prefix="t-new")[3:]
    for i, r in enumerate(fresh):
        r["text"] = f"never seen before {i}: " + r["text"]
    return rows + fresh


def test_data_check_against_a_test_collection_reports_exact_and_near_exact_overlap(any_db_url, env_db, capsys):
    url = env_db(any_db_url)
    load_documents(url, "train", sentiment_rows(48))
    load_documents(url, "test", _test_rows())
    assert main(["data", "check", "--collection", "train", "--against", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    against = report["against"]
    assert (against["collection"], against["texts"], against["exact"], against["near_exact"]) == ("test", 10, 2, 1)
    assert [e["match"] for e in against["examples"]] == ["exact", "exact", "near-exact"]
    assert any("3 of 10 texts of 'test' are also in 'train'" in w for w in report["warnings"])

    assert main(["data", "check", "--collection", "train", "--against", "ghost"]) == 2
    assert capsys.readouterr().err == "error: unknown collection 'ghost'\n"


def test_evaluate_counts_texts_from_the_versions_training_data_and_scores_without_them(sqlite_url, env_db, tmp_path,
                                                                                      monkeypatch, tiny_base_model,
                                                                                      capsys):
    url = env_db(sqlite_url)
    monkeypatch.setenv("BERTJOBS_MODEL_STORE", str(tmp_path / "models"))
    load_documents(url, "train", sentiment_rows(48))
    load_documents(url, "test", _test_rows())
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_OPTIONS.items()]
    assert main(["train", "--collection", "train", "--base-model", tiny_base_model, "--name", "m", "--inline",
                 *flags]) == 0
    capsys.readouterr()
    assert main(["evaluate", "m:1", "--collection", "test", "--inline", "--json"]) == 0
    leakage = json.loads(capsys.readouterr().out.splitlines()[-1])["leakage"]
    assert (leakage["training_collection"], leakage["in_training"], leakage["exact"], leakage["near_exact"]) == \
        ("train", 3, 2, 1)
    assert leakage["without"]["documents"] == 7 and 0 <= leakage["without"]["accuracy"] <= 1
    assert "3 of 10 texts of the evaluated collection are also in m:1's training data" in leakage["warning"]

    assert main(["evaluate", "m:1", "--collection", "test", "--inline"]) == 0
    out = capsys.readouterr().out
    assert "  warning    3 of 10 texts" in out and "on the 7 documents not in training" in out
    assert main(["models", "compare", "m:1", "m:1", "--collection", "test"]) == 0
    assert "  warning: m:1: 3 of 10 texts" in capsys.readouterr().out
