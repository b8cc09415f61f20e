"""Test data and small utilities shared by the test modules."""
from __future__ import annotations

import os
import socket
from pathlib import Path

POSITIVE = ["great", "wonderful", "excellent", "superb", "delightful", "brilliant", "lovely", "fantastic"]
NEGATIVE = ["awful", "terrible", "dreadful", "horrible", "boring", "poor", "bad", "miserable"]


# The PostgreSQL the tests create their databases beside (trust auth on loopback by default).
PG_ADMIN_URL = os.environ.get("BERTJOBS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def sentiment_rows(n: int, prefix: str = "doc") -> list[dict]:
    """A trivially separable two-class corpus."""
    rows = []
    for i in range(n):
        words = POSITIVE if i % 2 == 0 else NEGATIVE
        k = i // 2  # the k-th text of its class: the first 64 of each class are distinct
        text = f"a {words[k % 8]} and {words[(k // 8) % 8]} film, truly {words[(k + 3) % 8]}"
        rows.append({"external_id": f"{prefix}-{i}", "text": text, "label": "pos" if i % 2 == 0 else "neg"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"id": r["external_id"], "text": r["text"], "label": r.get("label")}) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Training options under which the tiny BERT learns sentiment_rows(48) in about a second.
TINY_OPTIONS = {"epochs": 6, "batch_size": 4, "learning_rate": 2e-3, "max_length": 32, "seed": 7}


def load_documents(url: str, collection: str, rows: list[dict]) -> None:
    """Upsert document rows (external_id, text, label) straight into the database at ``url``."""
    from db import repo
    from db.session import session_factory_for

    with session_factory_for(url).begin() as s:
        repo.upsert_documents(s, collection, rows)


TOPICS = {"action": ["explosion", "chase", "fight", "gunfire"], "comedy": ["joke", "laugh", "funny", "silly"],
          "romance": ["love", "kiss", "wedding", "romantic"]}
COMBOS = [["action"], ["comedy"], ["romance"], ["action", "comedy"], ["comedy", "romance"], ["action", "romance"]]


def topic_corpus(n: int) -> tuple[list[str], list[list[str]]]:
    """Multi-label texts: one or two topics per text, each named by one of its words."""
    texts, label_sets = [], []
    for i in range(n):
        combo = COMBOS[i % len(COMBOS)]
        words = [TOPICS[t][(i // 6 + k) % 4] for k, t in enumerate(combo)]
        texts.append(" ".join(["the", "film", *words, "scene", str(i)]))
        label_sets.append(combo)
    return texts, label_sets


def sentiment_text(words: list[str], i: int, filler: int) -> str:
    """Three sentiment words, ``filler`` neutral words and a scene number that makes every text distinct
    (duplicates would be dropped from validation): lengths vary, the label is in the words."""
    return " ".join([words[i % 8], words[(i + 3) % 8], words[(i + 5) % 8]] + ["film"] * filler + [f"scene {i}"])


def sentiment_corpus(n: int) -> tuple[list[str], list[str]]:
    """``n`` texts, alternating positive ("pos") and negative ("neg"): trivially separable."""
    texts, labels = [], []
    for i in range(n // 2):
        texts.append(sentiment_text(POSITIVE, i, i % 4))
        labels.append("pos")
        texts.append(sentiment_text(NEGATIVE, i, i % 3))
        labels.append("neg")
    return texts, labels


def insert_job(url: str, kind: str, params: dict) -> int:
    """A queued job row written as another application writes one with SQL: no submit-time checks."""
    from db import repo
    from db.session import session_factory_for

    with session_factory_for(url).begin() as s:
        return repo.create_job(s, kind, params, max_attempts=3)[0].id


def train_with_scripted_scores(texts, labels, config, scores):
    """fine_tune's pieces with the real evaluation, but these selection scores (macro-F1) reported epoch by epoch.

    The predictions are dropped: they do not belong to the scripted scores, so the near-tie test cannot use them
    and the epoch choice is the first best score (worker/ml/trainer.py's ``_choose``)."""
    from worker.ml.train import prepare

    prepared, it = prepare(texts, labels, config), iter(scores)

    def scripted(model):
        metrics = prepared.evaluate(model)
        metrics["macro_f1"] = next(it)
        metrics.pop("predictions")
        return metrics

    trainer = prepared.trainer(evaluate=scripted)
    trainer.run()
    return prepared.result(trainer)


def late_sentiment(n: int) -> tuple[list[str], list[str]]:
    """Long texts whose only signal comes after 60 neutral words: truncation at 32 tokens never sees it."""
    texts, labels = [], []
    for i in range(n):
        words, label = (POSITIVE, "pos") if i % 2 == 0 else (NEGATIVE, "neg")
        texts.append(" ".join(["film"] * 60 + [f"scene {i}", words[i % 8], words[(i + 3) % 8]]))
        labels.append(label)
    return texts, labels
