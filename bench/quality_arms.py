"""The arms of bench/quality.py: the real training job (and its selection model, captured before the refit replaces
it), a saved model's test logits, and a plain transformers.Trainer on the same texts."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import common  # noqa: F401,I001  (sets up the path and offline mode)

from db import migrate
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_training
from worker.config import Settings
from worker.demo import _write_jsonl
from worker.importer import import_file

TRAINER_RECIPE = {"learning_rate": 5e-5, "batch_size": 32, "epochs": 3, "warmup_ratio": 0.1, "weight_decay": 0.01,
                  "max_length": 128, "seed": 42}


def run_product(train_rows: list[dict], base_model: str, options: dict, tmp: Path) -> dict:
    """The real training job on ``train_rows``: {"artifact", "metrics", "lineage", "hyperparameters", "wall"}."""
    from db.models import ModelVersion

    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp}/quality.db")
    url = settings.resolved_database_url
    migrate.upgrade(url)
    sessions = session_factory_for(url)
    path = tmp / "rt.jsonl"
    _write_jsonl(path, train_rows)
    import_file(sessions, path, "rt", max_chars=100_000)
    started = time.perf_counter()
    handle = submit_training("rt", base_model, model_name="rt-quality", options=options, enqueue=False,
                             settings=settings)
    jobs.run_inline(handle.id, "train", settings=settings)
    wall = time.perf_counter() - started
    snap = handle.snapshot()
    if snap.status != "succeeded":
        raise SystemExit(f"training job {snap.status}: {snap.error}")
    with sessions.begin() as s:
        mv = s.get(ModelVersion, snap.result["model_version_id"])
        return {"artifact": mv.artifact_path, "metrics": mv.metrics, "lineage": mv.lineage,
                "hyperparameters": mv.hyperparameters, "wall": wall}


def model_logits(model, tokenizer, max_length: int, windows: dict, texts: list[str]) -> list[list[float]]:
    """Logits per text on the CPU in fp32, texts read as training read them (truncated, or windows averaged)."""
    import torch

    from worker.ml.batching import encode
    from worker.ml.validation import document_logits

    ids, owners = encode(tokenizer, texts, max_length, **windows)
    return document_logits(model, ids, len(texts), model.config.num_labels, tokenizer.pad_token_id or 0,
                           torch.device("cpu"), "fp32", owners=owners).tolist()


def artifact_logits(artifact: str, texts: list[str]) -> tuple[list[list[float]], list[str], float]:
    """(logits per text, labels, temperature) of a saved model, read the way every prediction path reads it."""
    from worker.ml.predict import Classifier

    clf = Classifier.from_artifact(artifact, device="cpu", precision="fp32")
    return model_logits(clf.model, clf.tokenizer, clf.max_length, clf.windows, texts), clf.labels, clf.temperature


def capture_parts(test_texts: list[str], sink: dict):
    """Score a refitting job's selection model on the test texts before the refit replaces it (``sink["no-refit"]``:
    the very model a ``--no-refit`` job registers, same data, seed and code up to the refit), so one job gives two
    arms. Returns the undo."""
    import worker.ml.refit as module

    original_refit = module.refit

    def refit(texts, labels, selected, *args, **kwargs):
        sink["no-refit"] = {"logits": _logits_of(selected, selected.model, test_texts), "seconds": selected.seconds,
                            "val_logits": [list(map(float, row)) for row in selected.val_logits],
                            "val_truth": [int(selected.split.y[i]) for i in selected.split.val_idx]}
        return original_refit(texts, labels, selected, *args, **kwargs)

    module.refit = refit
    return lambda: setattr(module, "refit", original_refit)


def _logits_of(selected, model, texts: list[str]) -> list[list[float]]:
    return model_logits(model, selected.tokenizer, selected.max_length, selected.config.window_settings(), texts)


def set_grouping_window(batches: int) -> None:
    """Train the product arms on batches sorted by length inside windows of ``batches`` batches (the product's
    own is 50; 1 gives random batches, each sorted inside, as the plain Trainer draws them)."""
    import functools

    import worker.ml.trainer as trainer
    from worker.ml.batching import length_grouped_batches

    trainer.length_grouped_batches = functools.partial(length_grouped_batches, window_batches=batches)


def run_trainer(train_rows: list[dict], test_texts: list[str], labels: list[str], base_model: str,
                seed: int = TRAINER_RECIPE["seed"], epochs: int = TRAINER_RECIPE["epochs"]) -> dict:
    """A plain transformers.Trainer on all of ``train_rows`` (TRAINER_RECIPE with ``seed`` and ``epochs``):
    {"logits", "wall", "seed"}."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from worker.ml.validation import document_logits

    r = {**TRAINER_RECIPE, "seed": seed, "epochs": epochs}
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    label2id = {label: i for i, label in enumerate(labels)}
    enc = tokenizer([row["text"] for row in train_rows], truncation=True, max_length=r["max_length"])
    data = [{"input_ids": ids, "attention_mask": mask, "labels": label2id[row["category"]]}
            for ids, mask, row in zip(enc["input_ids"], enc["attention_mask"], train_rows)]
    torch.manual_seed(r["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-quality-trainer-"), per_device_train_batch_size=r["batch_size"],
        num_train_epochs=r["epochs"], learning_rate=r["learning_rate"], warmup_steps=r["warmup_ratio"],  # a ratio below 1
        weight_decay=r["weight_decay"], seed=r["seed"], report_to="none", save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True)
    started = time.perf_counter()
    Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)).train()
    wall = time.perf_counter() - started
    test_ids = tokenizer(test_texts, truncation=True, max_length=r["max_length"])["input_ids"]
    logits = document_logits(model.to("cpu"), test_ids, len(test_texts), len(labels), tokenizer.pad_token_id or 0,
                             torch.device("cpu"), "fp32")
    return {"logits": logits.tolist(), "wall": wall, "seed": r["seed"]}
