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

from worker.ml.batching import iter_batches, length_grouped_batches, sorted_batches, tokenize
from worker.ml.checkpoint import load_checkpoint, save_checkpoint
from worker.ml.config import TrainConfig
from worker.ml.device import autocast, resolve_device, resolve_precision
from worker.ml.errors import Cancelled, InvalidTrainingData, ModelNotFound
from worker.ml.hf import quiet_transformers
from worker.ml.labels import LabelMap
from worker.ml.metrics import classification_metrics
from worker.ml.split import stratified_split


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


@dataclass
class Callbacks:
    """Hooks the caller (a job) passes in: progress per step, a record per epoch, a stop signal."""

    on_step: Callable[[int, int], None] | None = None  # (steps done, steps total)
    on_epoch: Callable[[dict], None] | None = None
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


@torch.inference_mode()
def evaluate(model, token_ids, y_true: Sequence[int], label_map: LabelMap, pad_id: int, device, precision: str,
             batch_size: int = 64) -> dict:
    model.eval()
    preds = [0] * len(token_ids)
    loss_sum = 0.0
    batches = sorted_batches([len(t) for t in token_ids], batch_size)
    for batch, tensors in iter_batches(token_ids, batches, pad_id, device):
        with autocast(device, precision):
            logits = model(**tensors).logits.float()
        target = torch.as_tensor([y_true[i] for i in batch], device=device)
        loss_sum += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        for i, p in zip(batch, logits.argmax(-1).tolist()):
            preds[i] = p
    metrics = classification_metrics(y_true, preds, label_map.labels)
    metrics["loss"] = loss_sum / max(len(token_ids), 1)
    return metrics


def fine_tune(texts: Sequence[str], labels: Sequence[str], config: TrainConfig,
              callbacks: Callbacks | None = None, checkpoint_dir: Path | None = None) -> TrainResult:
    """Fine-tune ``config.base_model`` on (texts, labels); return the best epoch's model and its metrics.

    With ``checkpoint_dir``, the state after every epoch is saved there, and a run that finds a checkpoint of
    the same data and configuration resumes after its epoch instead of starting over.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    quiet_transformers()
    callbacks = callbacks or Callbacks()
    config.validate()
    validate_training_set(texts, labels)
    check_base_model(config.base_model)

    label_map = LabelMap.from_labels(labels)
    y = label_map.encode(labels)
    train_idx, val_idx = stratified_split(labels, config.val_fraction, config.seed)

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
        use_safetensors=True,
        trust_remote_code=False,
    ).to(device)

    token_ids = tokenize(tokenizer, texts, max_length)
    train_ids = [token_ids[i] for i in train_idx]
    train_y = [y[i] for i in train_idx]
    val_ids = [token_ids[i] for i in val_idx]
    val_y = [y[i] for i in val_idx]
    pad_id = tokenizer.pad_token_id or 0

    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.learning_rate,
                                  fused=device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    history: list[dict] = []
    best_state, best_epoch, best_score, best_metrics = None, 0, -1.0, {}
    step, start_epoch, train_seconds = 0, 1, 0.0
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
        start_epoch = resumed["epoch"] + 1
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum = 0.0
        rng = random.Random(config.seed * 1_000_003 + epoch)  # the same batches whether resumed or not
        for batch, tensors in iter_batches(train_ids, length_grouped_batches([len(t) for t in train_ids],
                                                                             config.batch_size, rng), pad_id, device):
            if callbacks.should_stop and callbacks.should_stop():
                raise Cancelled("training stopped on request")
            target = torch.as_tensor([train_y[i] for i in batch], device=device)
            with autocast(device, precision):
                logits = model(**tensors).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() * len(batch)
            step += 1
            if callbacks.on_step:
                callbacks.on_step(step, total_steps)
        train_seconds += time.perf_counter() - epoch_start
        metrics = evaluate(model, val_ids, val_y, label_map, pad_id, device, precision)
        record = {"epoch": epoch, "train_loss": loss_sum / len(train_ids), "val_loss": metrics["loss"],
                  "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                  "seconds": time.perf_counter() - epoch_start}
        history.append(record)
        if callbacks.on_epoch:
            callbacks.on_epoch(record)
        score = metrics[config.select_metric]
        if score > best_score:
            best_score, best_epoch, best_metrics = score, epoch, metrics
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if checkpoint_dir is not None and epoch < config.epochs:
            save_checkpoint(checkpoint_dir, {
                "key": key, "epoch": epoch, "step": step, "train_seconds": train_seconds, "history": history,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(), "best_state": best_state, "best_epoch": best_epoch,
                "best_score": best_score, "best_metrics": best_metrics,
            })

    if best_state is not None and best_epoch != config.epochs:
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
        train_size=len(train_ids),
        val_size=len(val_ids),
        examples_per_second=len(train_ids) * config.epochs / train_seconds if train_seconds else 0.0,
        resumed_from_epoch=resumed["epoch"] if resumed is not None else None,
        seconds=time.perf_counter() - started,
        label_counts=dict(sorted(Counter(labels).items())),
    )
