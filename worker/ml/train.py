"""Fine-tuning: a plain loop with callbacks, AdamW with linear warm-up, evaluation every epoch, best epoch kept."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from worker.ml.batching import (
    average_by_owner,
    batch_logits,
    encode,
    iter_batches,
    length_grouped_batches,
    sorted_batches,
)
from worker.ml.checkpoint import load_checkpoint, save_checkpoint
from worker.ml.config import TrainConfig
from worker.ml.device import autocast, resolve_device, resolve_precision
from worker.ml.errors import Cancelled, InvalidTrainingData, ModelNotFound
from worker.ml.hf import quiet_transformers
from worker.ml.labels import LabelMap
from worker.ml.metrics import classification_metrics, multilabel_metrics, tune_thresholds
from worker.ml.split import split_without_leaks, strata


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
    seconds: float
    label_counts: dict[str, int] = field(default_factory=dict)
    resumed_from_epoch: int | None = None
    validation_removed: int = 0  # validation texts dropped because training has the same text
    stopped_early: bool = False
    class_weights: dict[str, float] | None = None
    config: TrainConfig | None = None  # the configuration that trained this model (a search's winning trial)
    trials: list[dict] | None = None  # a hyperparameter search's trials, best marked "selected"
    thresholds: dict[str, float] | None = None  # multi-label: the decision threshold per label

    def inference_metadata(self) -> dict:
        """What inference needs to read documents and decide labels the way training did."""
        meta = {"labels": list(self.label_map.labels), "max_length": self.max_length,
                "windows": self.config.window_settings(), "multi_label": self.config.multi_label}
        if self.thresholds is not None:
            meta["thresholds"] = self.thresholds
        return meta


@dataclass
class Callbacks:
    """Hooks the caller (a job) passes in: progress per step, a record per epoch, a stop signal."""

    on_step: Callable[[int, int], None] | None = None  # (steps done, steps total)
    on_epoch: Callable[[dict], None] | None = None
    # (epoch, mean training loss of the epoch so far), after each batch: what a progress display shows
    on_batch: Callable[[int, float], None] | None = None
    should_stop: Callable[[], bool] | None = None


def validate_training_set(texts: Sequence[str], labels: Sequence[str | None]) -> None:
    """Refuse, before any model is loaded, a set that cannot train and validate a classifier."""
    if len(texts) != len(labels):
        raise InvalidTrainingData(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise InvalidTrainingData("no labelled documents to train on")
    missing = sum(1 for label in labels if label is None or str(label).strip() == "")
    if missing:
        raise InvalidTrainingData(f"{missing} of {len(labels)} documents have no label")
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts))
        raise InvalidTrainingData(f"only one class ({only!r}) in {len(texts)} documents; need at least two")
    single = sorted(label for label, n in counts.items() if n < 2)
    if single:
        raise InvalidTrainingData(
            f"class{'es' if len(single) > 1 else ''} with a single example cannot be split for validation: "
            + ", ".join(repr(s) for s in single[:10])
        )


def validate_multilabel_set(texts: Sequence[str], label_sets: Sequence[Sequence[str]]) -> None:
    """Multi-label sets: every document has at least one label, every label at least two documents."""
    if len(texts) != len(label_sets):
        raise InvalidTrainingData(f"{len(texts)} texts but {len(label_sets)} label sets")
    if not texts:
        raise InvalidTrainingData("no labelled documents to train on")
    if any(isinstance(s, str) or not s for s in label_sets):
        raise InvalidTrainingData("a multi-label training set needs a non-empty list of labels per document")
    counts = Counter(label for s in label_sets for label in set(s))
    if len(counts) < 2:
        raise InvalidTrainingData(f"only {len(counts)} distinct label in {len(texts)} documents; need at least two")
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise InvalidTrainingData("labels on a single document cannot be validated: "
                                  + ", ".join(repr(s) for s in rare[:10]))


def check_base_model(name_or_path: str) -> None:
    """Fail fast when the base model cannot be found (a missing folder, an unknown hub name, offline)."""
    from transformers import AutoConfig

    quiet_transformers()
    local = Path(name_or_path).expanduser()
    if local.exists() or name_or_path.startswith((".", "/", "~")):
        if not (local / "config.json").is_file():
            raise ModelNotFound(f"base model folder {name_or_path!r} does not exist or has no config.json")
        return
    try:
        AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        reason = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else "not found locally or on the Hugging Face hub"
        raise ModelNotFound(f"base model {name_or_path!r}: {reason}") from exc


def _checkpoint_key(texts: Sequence[str], labels: Sequence[str], config: TrainConfig) -> str:
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for t, label in zip(texts, labels):
        digest.update(f"{label}\0{t}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def document_logits(model, token_ids, n_documents: int, n_labels: int, pad_id: int, device, precision: str,
                    batch_size: int = 64, owners: Sequence[int] | None = None) -> torch.Tensor:
    """Logits per document (on the CPU); with ``owners`` (windows), a document's logits are its windows' mean."""
    model.eval()
    logits = batch_logits(model, token_ids, sorted_batches([len(t) for t in token_ids], batch_size), n_labels,
                          pad_id, device, precision)
    return average_by_owner(logits, owners, n_documents) if owners is not None else logits


def evaluate(model, token_ids, y_true: Sequence[int], label_map: LabelMap, pad_id: int, device, precision: str,
             batch_size: int = 64, owners: Sequence[int] | None = None) -> dict:
    """Validation metrics over documents."""
    logits = document_logits(model, token_ids, len(y_true), len(label_map), pad_id, device, precision, batch_size,
                             owners)
    target = torch.as_tensor(list(y_true))
    metrics = classification_metrics(y_true, logits.argmax(-1).tolist(), label_map.labels)
    metrics["loss"] = torch.nn.functional.cross_entropy(logits, target).item() if len(y_true) else 0.0
    return metrics


def evaluate_multilabel(model, token_ids, y_true: Sequence[Sequence[int]], label_map: LabelMap, pad_id: int, device,
                        precision: str, batch_size: int = 64, owners: Sequence[int] | None = None) -> dict:
    """Multi-label validation: sigmoid probabilities, a threshold per label tuned here, per-label metrics."""
    logits = document_logits(model, token_ids, len(y_true), len(label_map), pad_id, device, precision, batch_size,
                             owners)
    target = torch.as_tensor([list(row) for row in y_true], dtype=torch.float32)
    probs = torch.sigmoid(logits).tolist()
    metrics = multilabel_metrics(y_true, probs, label_map.labels, tune_thresholds(y_true, probs))
    metrics["loss"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, target).item() if len(y_true) else 0.0
    return metrics


def class_weight_tensor(config: TrainConfig, label_map: LabelMap, train_y: Sequence[int]) -> dict[str, float] | None:
    """Per-class loss weights: None, inverse frequency over the training split ("auto"), or as given."""
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


def _scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def fine_tune(texts: Sequence[str], labels: Sequence[str] | Sequence[Sequence[str]], config: TrainConfig,
              callbacks: Callbacks | None = None, checkpoint_dir: Path | None = None) -> TrainResult:
    """Fine-tune ``config.base_model`` on (texts, labels); return the best epoch's model and its metrics.

    ``labels`` holds a label per text, or with ``config.multi_label`` a list of labels per text.

    With ``checkpoint_dir``, the state after every epoch is saved there, and a run that finds a checkpoint of
    the same data and configuration resumes after its epoch instead of starting over.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    callbacks = callbacks or Callbacks()
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

    device = resolve_device(config.device)
    precision = resolve_precision(device, config.precision, training=True)
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    max_length = min(config.max_length, tokenizer.model_max_length or config.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(
        config.base_model,
        num_labels=len(label_map),
        id2label=label_map.id2label,
        label2id=label_map.label2id,
        problem_type="multi_label_classification" if multi else "single_label_classification",
        use_safetensors=True,
        trust_remote_code=False,
    ).to(device)

    windows = config.window_settings()
    train_ids, train_owner = encode(tokenizer, [texts[i] for i in train_idx], max_length, **windows)
    train_y = [y[train_idx[o]] for o in train_owner]  # a window carries its document's label
    val_ids, val_owner = encode(tokenizer, [texts[i] for i in val_idx], max_length, **windows)
    val_y = [y[i] for i in val_idx]
    pad_id = tokenizer.pad_token_id or 0
    weights = class_weight_tensor(config, label_map, [y[i] for i in train_idx])
    weight = torch.as_tensor(list(weights.values()), device=device) if weights else None

    batches_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_batches = batches_per_epoch * config.epochs
    total_steps = math.ceil(batches_per_epoch / config.gradient_accumulation) * config.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.learning_rate,
                                  fused=device.type == "cuda")
    scheduler = _scheduler(optimizer, config, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    history: list[dict] = []
    best_state, best_epoch, best_score, best_metrics = None, 0, -1.0, {}
    step, start_epoch, train_seconds, stale = 0, 1, 0.0, 0
    key = _checkpoint_key(texts, labels, config)
    resumed = load_checkpoint(checkpoint_dir, key)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        torch.set_rng_state(resumed["torch_rng"])
        history, step, train_seconds = resumed["history"], resumed["step"], resumed["train_seconds"]
        best_state, best_epoch = resumed["best_state"], resumed["best_epoch"]
        best_score, best_metrics = resumed["best_score"], resumed["best_metrics"]
        start_epoch, stale = resumed["epoch"] + 1, resumed.get("stale", 0)
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        rng = random.Random(config.seed * 1_000_003 + epoch)  # the same batches whether resumed or not
        epoch_batches = length_grouped_batches([len(t) for t in train_ids], config.batch_size, rng)
        for n, (batch, tensors) in enumerate(iter_batches(train_ids, epoch_batches, pad_id, device), 1):
            if callbacks.should_stop and callbacks.should_stop():
                raise Cancelled("training stopped on request")
            with autocast(device, precision):
                logits = model(**tensors).logits
            if multi:
                target = torch.as_tensor([train_y[i] for i in batch], dtype=torch.float32, device=device)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=weight)
            else:
                target = torch.as_tensor([train_y[i] for i in batch], device=device)
                loss = torch.nn.functional.cross_entropy(logits.float(), target, weight=weight)
            group_start = (n - 1) // config.gradient_accumulation * config.gradient_accumulation
            group = min(config.gradient_accumulation, len(epoch_batches) - group_start)  # the last may be short
            scaler.scale(loss / group).backward()
            if n % config.gradient_accumulation == 0 or n == len(epoch_batches):
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() * len(batch)
            seen += len(batch)
            step += 1
            if callbacks.on_batch:
                callbacks.on_batch(epoch, loss_sum / seen)
            if callbacks.on_step:
                callbacks.on_step(step, total_batches)
        train_seconds += time.perf_counter() - epoch_start
        metrics = (evaluate_multilabel if multi else evaluate)(model, val_ids, val_y, label_map, pad_id, device,
                                                               precision, owners=val_owner)
        record = {"epoch": epoch, "train_loss": loss_sum / len(train_ids), "val_loss": metrics["loss"],
                  "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                  "seconds": time.perf_counter() - epoch_start}
        history.append(record)
        if callbacks.on_epoch:
            callbacks.on_epoch(record)
        score = metrics[config.select_metric]
        if score > best_score:
            best_score, best_epoch, best_metrics, stale = score, epoch, metrics, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
        if config.early_stopping_patience and stale >= config.early_stopping_patience:
            break
        if checkpoint_dir is not None and epoch < config.epochs:
            save_checkpoint(checkpoint_dir, {
                "key": key, "epoch": epoch, "step": step, "stale": stale, "train_seconds": train_seconds,
                "history": history,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(), "best_state": best_state, "best_epoch": best_epoch,
                "best_score": best_score, "best_metrics": best_metrics,
            })

    if best_state is not None and best_epoch != history[-1]["epoch"]:
        model.load_state_dict(best_state)
    model.to("cpu").eval()
    best_metrics = copy.deepcopy(best_metrics)
    best_metrics["best_epoch"] = best_epoch
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        label_map=label_map,
        metrics=best_metrics,
        history=history,
        best_epoch=best_epoch,
        max_length=max_length,
        train_size=len(train_idx),
        val_size=len(val_idx),
        examples_per_second=len(train_ids) * len(history) / train_seconds if train_seconds else 0.0,
        resumed_from_epoch=resumed["epoch"] if resumed is not None else None,
        seconds=time.perf_counter() - started,
        label_counts=dict(sorted(Counter(label for s in labels for label in set(s)).items()) if multi
                          else sorted(Counter(labels).items())),
        validation_removed=len(removed),
        stopped_early=len(history) < config.epochs,
        class_weights=weights,
        config=config,
        thresholds=best_metrics.get("thresholds"),
    )
