"""Fine-tuning: prepare the data and the model, run the Trainer's loop (worker/ml/trainer.py), assemble the result.

``fine_tune`` is the whole of it in one call. Its pieces are the seams a caller or a test can use on their own:
``prepare`` (checks, split, seed, model, encoded inputs) returns a ``Prepared`` whose ``trainer()`` runs the loop,
with its own evaluation if given one, and whose ``result()`` turns a finished trainer into a ``TrainResult``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from worker.ml.batching import encode
from worker.ml.checkpoint import load_checkpoint, save_checkpoint
from worker.ml.config import TrainConfig
from worker.ml.device import resolve_device, resolve_precision
from worker.ml.errors import InvalidTrainingData
from worker.ml.hf import quiet_transformers
from worker.ml.labels import LabelMap
from worker.ml.longdocs import reading
from worker.ml.preflight import check_base_model, validate_multilabel_set, validate_training_set
from worker.ml.split import split_without_leaks, strata
from worker.ml.trainer import Callbacks, Evaluate, Trainer, TrainInputs
from worker.ml.validation import multilabel_validation_metrics, validation_metrics

__all__ = ["Callbacks", "Prepared", "TrainResult", "class_weights", "checkpoint_key", "fine_tune", "prepare"]


@dataclass
class TrainResult:
    model: object
    tokenizer: object
    label_map: LabelMap
    metrics: dict
    history: list[dict]
    best_epoch: int
    max_length: int
    train_size: int
    val_size: int
    examples_per_second: float
    seconds: float  # the loop's wall time, evaluations included
    label_counts: dict[str, int] = field(default_factory=dict)
    resumed_from_epoch: int | None = None
    validation_removed: int = 0  # validation texts dropped because training has the same text
    stopped_early: bool = False
    class_weights: dict[str, float] | None = None
    config: TrainConfig | None = None  # the configuration that trained this model (a search's winning trial)
    trials: list[dict] | None = None  # a hyperparameter search's trials, best marked "selected"
    thresholds: dict[str, float] | None = None  # multi-label: the decision threshold per label
    # The kept epoch on the validation split (documents in ``split.val_idx`` order): its logits and predictions
    # (class ids, or 0/1 rows for multi-label), for calibration, intervals and baselines (worker/ml/scorecard.py).
    val_logits: list | None = None
    val_predictions: list | None = None
    split: "SplitData | None" = None
    train_seconds: float = 0.0  # the optimisation steps only, every epoch (resumed runs: the earlier ones too)
    # With ``refit``: the selection run chose the epochs, then this model trained on all the labelled documents
    # for that many epochs ({"epochs", "train_size", "seconds", "history"}); the scores above are the selection run's.
    refit: dict | None = None

    def inference_metadata(self) -> dict:
        """What inference needs to read documents and decide labels the way training did."""
        meta = {"labels": list(self.label_map.labels), "max_length": self.max_length,
                "windows": self.config.window_settings(), "multi_label": self.config.multi_label}
        if self.thresholds is not None:
            meta["thresholds"] = self.thresholds
        return meta


def fine_tune(texts: Sequence[str], labels: Sequence[str] | Sequence[Sequence[str]], config: TrainConfig,
              callbacks: Callbacks | None = None, checkpoint_dir: Path | None = None, *,
              all_data: bool = False) -> TrainResult:
    """Fine-tune ``config.base_model`` on (texts, labels); return the best epoch's model and its metrics.

    ``labels`` holds a label per text, or with ``config.multi_label`` a list of labels per text.

    With ``checkpoint_dir``, the state after every epoch is saved there, and a run that finds a checkpoint of
    the same data and configuration resumes after its epoch instead of starting over.

    With ``all_data``, every document trains and nothing is held out or scored: all ``config.epochs`` run and
    the last one is the model (a refit, worker/ml/refit.py).

    The same run over several processes (DistributedDataParallel): ``worker.ml.ddp_rank.fine_tune_parallel``.
    """
    prepared, trainer = prepare_run(texts, labels, config, callbacks, checkpoint_dir, all_data=all_data)
    trainer.run()
    return prepared.result(trainer)


def prepare_run(texts: Sequence[str], labels: Sequence, config: TrainConfig, callbacks: Callbacks | None,
                checkpoint_dir: Path | None, parallel=None, key: str | None = None,
                all_data: bool = False) -> tuple["Prepared", Trainer]:
    """A run ready to start: prepared data and model, and a trainer that checkpoints into ``checkpoint_dir``
    (rank 0 only, in a parallel run) after resuming from the checkpoint found there, if any (``key``: the
    checkpoint's, where the caller computed it)."""
    prepared = prepare(texts, labels, config, device=str(parallel.device) if parallel else None, all_data=all_data)
    config = prepared.config  # unset epochs decided
    key = key or checkpoint_key(texts, labels, config, all_data=all_data)
    if parallel:
        parallel.reseed(config.seed)
    writes = parallel is None or parallel.main
    trainer = prepared.trainer(_checkpointing(callbacks or Callbacks(), checkpoint_dir if writes else None, key),
                               parallel=parallel)
    resumed = load_checkpoint(checkpoint_dir, key)
    if resumed is not None:
        trainer.load_state_dict(resumed)
    if parallel:
        parallel.same(trainer.epoch, "epoch to resume after")
    return prepared, trainer


def _checkpointing(callbacks: Callbacks, directory: Path | None, key: str) -> Callbacks:
    """``callbacks``, saving the trainer's state after every epoch that training goes on from."""
    if directory is None:
        return callbacks
    given = callbacks.on_epoch_end

    def on_epoch_end(trainer: Trainer) -> None:
        if given:
            given(trainer)
        if not trainer.finished:
            save_checkpoint(directory, {"key": key, **trainer.state_dict()}, commit=callbacks.commit_checkpoint)

    return replace(callbacks, on_epoch_end=on_epoch_end)


def checkpoint_key(texts: Sequence[str], labels: Sequence, config: TrainConfig, *, all_data: bool = False) -> str:
    """What a checkpoint belongs to: the data, the configuration and whether it trains on all of the data (another
    key means starting over)."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for t, label in zip(texts, labels):
        digest.update(f"{label}\0{t}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest() + ("-all" if all_data else "")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


@dataclass
class SplitData:
    """A checked training set: its label map, a target per document (a label id or a multi-hot row), and the
    stratified train/validation split without the validation texts training also has."""

    texts: Sequence[str]
    labels: Sequence
    label_map: LabelMap
    y: list
    train_idx: list[int]
    val_idx: list[int]
    removed: list[int]

    def label_counts(self, multi: bool) -> dict[str, int]:
        if multi:
            return dict(sorted(Counter(label for s in self.labels for label in set(s)).items()))
        return dict(sorted(Counter(self.labels).items()))


def split_data(texts: Sequence[str], labels: Sequence, config: TrainConfig) -> SplitData:
    """Check the configuration, the set and the base model (before anything is loaded), then map and split."""
    config.validate()
    multi = config.multi_label
    (validate_multilabel_set if multi else validate_training_set)(texts, labels)
    check_base_model(config.base_model)
    if multi:  # a multi-hot row per document; the split is stratified on the label set
        label_map = LabelMap.from_labels(label for s in labels for label in s)
        y = [[int(label in present) for label in label_map.labels] for present in map(set, labels)]
    else:
        label_map = LabelMap.from_labels(labels)
        y = label_map.encode(labels)
    train_idx, val_idx, removed = split_without_leaks(texts, strata(labels), config.val_fraction, config.seed)
    if not val_idx:
        raise InvalidTrainingData(f"all {len(removed)} validation texts also appear in training; "
                                  "deduplicate the collection or raise val_fraction")
    return SplitData(texts, labels, label_map, y, train_idx, val_idx, removed)


def class_weights(config: TrainConfig, label_map: LabelMap, train_y: Sequence) -> dict[str, float] | None:
    """Per-class loss weights by label: None, inverse frequency over the training split ("auto"), or as given.
    Multi-label "auto" gives each label its negatives per positive (BCE's pos_weight)."""
    if config.class_weights is None:
        return None
    if config.class_weights == "auto" and config.multi_label:  # pos_weight: negatives per positive, per label
        positives = [sum(row[i] for row in train_y) for i in range(len(label_map))]
        # A label on every training document has no negatives: weight 1, not 0 (0 would switch its loss off).
        return {label: (len(train_y) - p) / p if p < len(train_y) else 1.0
                for label, p in zip(label_map.labels, positives)}
    if config.class_weights == "auto":
        counts = Counter(train_y)
        return {label: len(train_y) / (len(label_map) * counts[i]) for i, label in enumerate(label_map.labels)}
    unknown = sorted(set(config.class_weights) - set(label_map.labels))
    if unknown:
        raise InvalidTrainingData(f"class_weights names labels that are not in the data: {', '.join(unknown[:10])}")
    return {label: float(config.class_weights.get(label, 1.0)) for label in label_map.labels}


@dataclass
class Prepared:
    """One fine-tuning run before its loop: the split data, the seeded model and its tokenizer, the encoded inputs."""

    config: TrainConfig
    data: SplitData
    model: object
    tokenizer: object
    device: torch.device
    precision: str
    max_length: int
    train: TrainInputs
    val_ids: list
    val_owner: list[int]
    weights: dict[str, float] | None

    def evaluate(self, model) -> dict:
        """Validation metrics of ``model`` over the validation documents."""
        return score_validation(model, self.config, self.data, self.val_ids, self.val_owner, self.train.pad_id,
                                self.device, self.precision)

    def trainer(self, callbacks: Callbacks | None = None, evaluate: Evaluate | None = None,
                parallel=None) -> Trainer:
        weight = torch.as_tensor(list(self.weights.values()), device=self.device) if self.weights else None
        evaluate = evaluate or (self.evaluate if self.data.val_idx else None)  # nothing held out: nothing scored
        return Trainer(self.model, self.config, self.train, evaluate, device=self.device,
                       precision=self.precision, loss_weight=weight, callbacks=callbacks,
                       val_targets=[self.data.y[i] for i in self.data.val_idx], n_labels=len(self.data.label_map),
                       parallel=parallel)

    def result(self, trainer: Trainer) -> TrainResult:
        """The finished run: the best epoch's model (on the CPU, in eval mode), its metrics and the run's record."""
        self.model.to("cpu").eval()
        metrics = {**copy.deepcopy(trainer.best_metrics), "best_epoch": trainer.best_epoch,
                   "selection": copy.deepcopy(trainer.selection)}
        val_logits, val_predictions = metrics.pop("logits", None), metrics.pop("predictions", None)
        history, train_seconds = trainer.history, trainer.train_seconds
        return TrainResult(
            model=self.model, tokenizer=self.tokenizer, label_map=self.data.label_map, metrics=metrics,
            history=history, best_epoch=trainer.best_epoch, max_length=self.max_length,
            train_size=len(self.data.train_idx), val_size=len(self.data.val_idx),
            examples_per_second=trainer.inputs_per_epoch * len(history) / train_seconds if train_seconds else 0.0,
            train_seconds=train_seconds,
            resumed_from_epoch=trainer.resumed_from_epoch, seconds=trainer.seconds,
            label_counts=self.data.label_counts(self.config.multi_label), validation_removed=len(self.data.removed),
            stopped_early=len(history) < self.config.epochs, class_weights=self.weights, config=self.config,
            thresholds=metrics.get("thresholds"), val_logits=val_logits, val_predictions=val_predictions,
            split=self.data,
        )


def score_validation(model, config: TrainConfig, data: SplitData, ids, owners, pad_id: int, device,
                     precision: str) -> dict:
    """Validation metrics of ``model`` on ``data``'s validation documents, encoded as ``ids`` (inputs) of ``owners``."""
    score = multilabel_validation_metrics if config.multi_label else validation_metrics
    pooling = config.window_settings().get("pooling", "mean")
    return score(model, ids, [data.y[i] for i in data.val_idx], data.label_map, pad_id, device, precision,
                 owners=owners, pooling=pooling)


def prepare(texts: Sequence[str], labels: Sequence, config: TrainConfig, device: str | None = None, *,
            all_data: bool = False) -> Prepared:
    """Check and split the data, seed every generator, load the tokenizer and the model, encode the inputs
    (on ``device`` if given, a parallel run's rank's, else on ``config.device``). ``all_data``: the same checks
    and label map, but every document trains and none is held out. Unset epochs are decided from the set's size
    (``TrainConfig.for_documents``)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    config = config.for_documents(len(texts))
    data = split_data(texts, labels, config)
    if all_data:
        data = replace(data, train_idx=list(range(len(texts))), val_idx=[], removed=[])
    device = resolve_device(device or config.device)
    precision = resolve_precision(device, config.precision, training=True)
    seed_everything(config.seed)  # before the model is built: its new head is drawn from torch's generator
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    max_length = min(config.max_length, tokenizer.model_max_length or config.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(
        config.base_model, num_labels=len(data.label_map), id2label=data.label_map.id2label,
        label2id=data.label_map.label2id, use_safetensors=True, trust_remote_code=False,
        problem_type="multi_label_classification" if config.multi_label else "single_label_classification",
    ).to(device)
    windows, _ = reading(config.window_settings())
    train_ids, train_owner = encode(tokenizer, [texts[i] for i in data.train_idx], max_length, **windows)
    train_y = [data.y[data.train_idx[o]] for o in train_owner]  # a window carries its document's label
    val_ids, val_owner = encode(tokenizer, [texts[i] for i in data.val_idx], max_length, **windows)
    weights = class_weights(config, data.label_map, [data.y[i] for i in data.train_idx])
    return Prepared(config, data, model, tokenizer, device, precision, max_length,
                    TrainInputs(train_ids, train_y, tokenizer.pad_token_id or 0, train_owner), val_ids, val_owner,
                    weights)
