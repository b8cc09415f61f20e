"""Long-document options as users reach them: `train` flags, their one-line errors, the model version's record,
and the bulk job, `predict` and `evaluate` reading documents (head+tail, or windows pooled) the way the version
recorded."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from db.models import Document, Job, Prediction
from db.session import session_factory_for
from helpers import late_sentiment, load_documents
from worker.cli import main


def _rows(n: int, prefix: str) -> list[dict]:
    texts, labels = late_sentiment(n)
    return [{"external_id": f"{prefix}{i}", "text": t, "label": label} for i, (t, label) in enumerate(zip(texts, labels))]


@pytest.mark.parametrize(("flags", "message"), [
    (["--window-pooling", "max"], "error: window_pooling applies to long_documents windows only; add --long-documents "
                                  "windows\n"),
    (["--windows-per-epoch", "2"], "error: windows_per_epoch applies to long_documents windows only; add "
                                   "--long-documents windows\n"),
    (["--long-documents", "windows", "--windows-per-epoch", "some"],
     "error: windows_per_epoch must be \"all\" or a whole number of at least 1, got 'some'\n"),
    (["--long-documents", "windows", "--window-pooling", "attention"],
     "error: window_pooling must be one of mean, max, confidence, got 'attention'\n"),
    (["--long-documents", "head_tail", "--window-pooling", "max"],
     "error: window_pooling applies to long_documents windows only; add --long-documents windows\n"),
    (["--long-documents", "middle"], "error: long_documents must be one of truncate, head_tail, windows\n"),
])
def test_pooling_or_sampling_without_windows_or_with_a_bad_value_is_one_line_and_enqueues_nothing(
        any_db_url, env_db, capsys, flags, message):
    env_db(any_db_url)
    load_documents(any_db_url, "long", _rows(8, "d"))
    assert main(["train", "--collection", "long", "--base-model", "x", "--inline", *flags]) == 2
    assert capsys.readouterr().err == message
    with session_factory_for(any_db_url).begin() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def _trained(db_url: str, env_db, base_model: str, capsys, name: str, flags: list[str]) -> dict:
    """Train ``name`` with ``flags`` on 120 late-sentiment texts through the CLI (16 more in collection holdout);
    what `models show` prints of its first version."""
    env_db(db_url)
    load_documents(db_url, "long", _rows(120, "d"))
    load_documents(db_url, "holdout", _rows(136, "h")[120:])
    assert main(["train", "--collection", "long", "--base-model", base_model, "--name", name, "--batch-size", "8",
                 "--learning-rate", "3e-3", "--max-length", "32", *flags, "--inline"]) == 0
    capsys.readouterr()
    assert main(["models", "show", f"{name}:1", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _every_path_predicts(db_url: str, capsys, model: str, holdout: list[dict], expected: list) -> None:
    """`predict`, the bulk job (`classify`) and `evaluate` of ``model`` on the holdout collection give the
    predictions ``expected`` (the loaded classifier's)."""
    capsys.readouterr()
    assert main(["predict", model, *[r["text"] for r in holdout[:4]], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["scores"]["pos"] for p in printed] == pytest.approx([p.scores["pos"] for p in expected[:4]], abs=1e-5)

    assert main(["classify", "--collection", "holdout", "--model", model, "--inline"]) == 0
    with session_factory_for(db_url).begin() as s:
        stored = dict(s.execute(select(Document.external_id, Prediction.scores["pos"].as_float())
                                .join(Document, Document.id == Prediction.document_id)).all())
    assert [stored[r["external_id"]] for r in holdout] == pytest.approx([p.scores["pos"] for p in expected], abs=1e-5)

    capsys.readouterr()
    assert main(["evaluate", model, "--collection", "holdout", "--inline", "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    right = sum(p.label == r["label"] for p, r in zip(expected, holdout))
    assert evaluation["accuracy"] == pytest.approx(right / len(holdout))


@pytest.mark.slow
def test_a_windowed_model_records_its_pooling_and_sampling_and_every_predictor_pools_that_way(
        any_db_url, env_db, tiny_base_model, capsys):
    from worker.ml.loader import load_classifier

    shown = _trained(any_db_url, env_db, tiny_base_model, capsys, "longs", [
        "--epochs", "4", "--long-documents", "windows", "--window-overlap", "8", "--window-pooling", "confidence",
        "--windows-per-epoch", "3", "--no-refit"])  # the refit model, trained on all 120, is sure of every holdout
    # text (scores within 1e-7 of 0 or 1), where no pooling could show
    assert shown["hyperparameters"]["window_pooling"] == "confidence"
    assert shown["hyperparameters"]["windows_per_epoch"] == 3  # these texts make 3 windows: the sampling path, all
    classifier = load_classifier(shown["artifact"], sha256=shown["sha256"], device="cpu")
    assert classifier.pooling == "confidence" and classifier.windows["long_documents"] == "windows"
    holdout = _rows(136, "h")[120:]
    expected = classifier.predict([r["text"] for r in holdout])
    classifier.pooling = "mean"
    averaged = classifier.predict([r["text"] for r in holdout])
    classifier.pooling = "confidence"
    assert max(abs(a.scores["pos"] - b.scores["pos"]) for a, b in zip(expected, averaged)) > 1e-3  # pooling shows

    _every_path_predicts(any_db_url, capsys, "longs", holdout, expected)


@pytest.mark.slow
def test_a_head_tail_model_records_it_and_predict_classify_and_evaluate_read_the_head_and_tail(
        any_db_url, env_db, tiny_base_model, capsys):
    from worker.ml.batching import encode
    from worker.ml.loader import load_classifier

    shown = _trained(any_db_url, env_db, tiny_base_model, capsys, "ends", ["--epochs", "6", "--long-documents",
                                                                           "head_tail"])
    assert shown["hyperparameters"]["long_documents"] == "head_tail"
    assert shown["hyperparameters"]["head_fraction"] == 0.25
    classifier = load_classifier(shown["artifact"], sha256=shown["sha256"], device="cpu")
    assert classifier.windows["long_documents"] == "head_tail"
    holdout = _rows(136, "h")[120:]
    texts = [r["text"] for r in holdout]
    ids, _ = encode(classifier.tokenizer, texts, 32, "head_tail")
    assert all(len(x) == 32 and classifier.tokenizer.decode(x[-4:-1]) == " ".join(t.split()[-3:])
               for x, t in zip(ids, texts))  # each input ends with its text's last words, where the label is
    expected = classifier._predict_encoded(ids, list(range(len(ids))), len(ids), 64)
    assert [p.scores["pos"] for p in classifier.predict(texts)] == pytest.approx(
        [p.scores["pos"] for p in expected], abs=1e-6)
    assert sum(p.label == r["label"] for p, r in zip(expected, holdout)) >= 14  # of 16: the label is at the end
    _every_path_predicts(any_db_url, capsys, "ends", holdout, expected)
