"""The training loop (after minGPT's Trainer): epochs of length-grouped batches, AdamW with warm-up, gradient
accumulation, an evaluation after every epoch, the best epoch's weights kept, early stopping, callbacks.

What the loop knows of the task is injected: the model, the encoded inputs with their targets, and ``evaluate``
(model -> validation metrics with ``loss`` and the selection metric). ``state_dict()`` holds everything a resumed
run needs to continue exactly where it stopped, every random number generator included. With ``parallel`` (a rank
of a DistributedDataParallel run, worker/ml/distributed.py) it trains on its slice of every global batch.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from worker.ml.batching import iter_batches, length_grouped_batches
from worker.ml.config import TrainConfig
from worker.ml.device import autocast
from worker.ml.errors import Cancelled
from worker.ml.longdocs import sample_windows

Evaluate = Callable[[Any], dict]  # model -> validation metrics: "loss", "accuracy", "macro_f1", ...


@dataclass
class Callbacks:
    """Hooks the caller (a job, a search, checkpointing) passes in."""

    on_step: Callable[[int, int], None] | None = None  # (steps done, steps total), after each batch
    on_epoch: Callable[[dict], None] | None = None  # the epoch's record, as the history keeps it
    # (epoch, mean training loss of the epoch so far), after each batch: what a progress display shows
    on_batch: Callable[[int, float], None] | None = None
    on_epoch_end: Callable[["Trainer"], None] | None = None  # after each epoch's bookkeeping: checkpoints
    should_stop: Callable[[], bool] | None = None  # asked before every batch; True raises Cancelled
    # Runs the rename that puts an epoch's checkpoint in place (a job: under its fence, recording the progress, so a
    # stale attempt never replaces the current one's checkpoint); None: the rename just runs.
    commit_checkpoint: Callable[[Callable[[], None]], None] | None = None


@dataclass
class TrainInputs:
    """Model inputs (a document, or one window of a long one) with their targets: a label id, or a multi-hot row."""

    token_ids: Sequence[Sequence[int]]
    targets: Sequence[Any]
    pad_id: int
    owners: Sequence[int] | None = None  # the document of each input (windows); None: one input per document


def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on the weight matrices only (not on biases and LayerNorm), as BERT fine-tuning does."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """Linear warm-up over ``warmup_ratio`` of the steps, then ``config.lr_schedule``."""
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


class Trainer:
    def __init__(self, model, config: TrainConfig, inputs: TrainInputs, evaluate: Evaluate | None, *,
                 device: torch.device, precision: str, loss_weight: torch.Tensor | None = None,
                 callbacks: Callbacks | None = None, val_targets: Sequence | None = None, n_labels: int | None = None,
                 parallel=None):
        self.model, self.config, self.inputs, self.evaluate = model, config, inputs, evaluate
        self.parallel = parallel  # a worker.ml.distributed.Parallel, or None: one process
        self.net = parallel.wrap(model) if parallel else model  # what the training steps run
        # The validation targets (class ids or 0/1 rows) let the epoch choice test near-ties (worker/ml/selection.py)
        # on the predictions ``evaluate`` returns; without them, or without predictions, the best score wins.
        self.val_targets, self.n_labels = val_targets, n_labels
        self.epoch_predictions: list = []
        self.selection: dict | None = None
        self.device, self.precision, self.loss_weight = device, precision, loss_weight
        self.callbacks = callbacks or Callbacks()
        self.sampled = config.sampled_windows if inputs.owners is not None else None
        # Sampled windows: the same number train every epoch (k per document, or all of a shorter one's).
        self.inputs_per_epoch = (len(sample_windows(inputs.owners, self.sampled, random.Random(0))) if self.sampled
                                 else len(inputs.token_ids))
        self.batches_per_epoch = math.ceil(self.inputs_per_epoch / config.batch_size)
        self.total_batches = self.batches_per_epoch * config.epochs
        self.total_steps = math.ceil(self.batches_per_epoch / config.gradient_accumulation) * config.epochs
        self.optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.learning_rate,
                                           fused=device.type == "cuda")
        self.scheduler = make_scheduler(self.optimizer, config, self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.epoch, self.step, self.stale, self.train_seconds = 0, 0, 0, 0.0
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_epoch, self.best_score, self.best_metrics = 0, -1.0, {}
        self.resumed_from_epoch: int | None = None
        self.seconds = 0.0  # wall-clock time of the last run()

    @property
    def stopping_early(self) -> bool:
        patience = self.config.early_stopping_patience
        return bool(patience) and self.stale >= patience

    @property
    def finished(self) -> bool:
        """No epoch follows: the last one ran, or early stopping ended training."""
        return self.epoch >= self.config.epochs or self.stopping_early

    def run(self) -> None:
        """Train the remaining epochs; the model holds the best epoch's weights when it returns."""
        started = time.perf_counter()
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            loss_sum, epoch_start = self._train_epoch(epoch)
            self._end_epoch(epoch, loss_sum, epoch_start)
            if self.callbacks.on_epoch_end:
                self.callbacks.on_epoch_end(self)
            if self.stopping_early:
                break
        if self.best_state is not None and self.best_epoch != self.history[-1]["epoch"]:
            self.model.load_state_dict(self.best_state)
        self.seconds = time.perf_counter() - started

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.model.train()
        epoch_start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        token_ids = self.inputs.token_ids
        batches = self.epoch_batches(epoch)
        mine = [self.parallel.shard(b) for b in batches] if self.parallel else batches
        for n, (batch, tensors) in enumerate(iter_batches(token_ids, mine, self.inputs.pad_id, self.device), 1):
            if not self.parallel and self._stop_requested():
                raise Cancelled("training stopped on request")
            loss = self._loss(batch, tensors, batches[n - 1])
            self._backward(loss, n, len(batches))
            loss_sum += self._batch_loss(loss) * len(batches[n - 1])
            seen += len(batches[n - 1])
            self.step += 1
            if self.callbacks.on_batch:
                self.callbacks.on_batch(epoch, loss_sum / seen)
            if self.callbacks.on_step:
                self.callbacks.on_step(self.step, self.total_batches)
        self.train_seconds += time.perf_counter() - epoch_start
        return loss_sum, epoch_start

    def _stop_requested(self) -> bool:
        return bool(self.callbacks.should_stop and self.callbacks.should_stop())

    def _batch_loss(self, loss: torch.Tensor) -> float:
        """The global batch's mean loss; in a parallel run, after asking every rank whether to stop (together)."""
        if not self.parallel:
            return loss.item()
        stop, mean = self.parallel.step(loss, self._stop_requested())
        if stop:
            raise Cancelled("training stopped on request")
        return mean

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches of input indices, drawn from a generator seeded by the seed and the epoch alone, so
        a resumed run trains the same windows in the same batches as one that never stopped."""
        rng = random.Random(self.config.seed * 1_000_003 + epoch)
        lengths = [len(t) for t in self.inputs.token_ids]
        if not self.sampled:
            return length_grouped_batches(lengths, self.config.batch_size, rng)
        chosen = sample_windows(self.inputs.owners, self.sampled, rng)
        grouped = length_grouped_batches([lengths[i] for i in chosen], self.config.batch_size, rng)
        return [[chosen[j] for j in batch] for batch in grouped]

    def _loss(self, batch: Sequence[int], tensors: dict, whole: Sequence[int]) -> torch.Tensor:
        with autocast(self.device, self.precision):
            logits = self.net(**tensors).logits
        targets = [self.inputs.targets[i] for i in batch]
        if self.parallel:
            return self.parallel.loss(logits.float(), targets, [self.inputs.targets[i] for i in whole],
                                      self.loss_weight, self.config.multi_label)
        if self.config.multi_label:
            target = torch.as_tensor(targets, dtype=torch.float32, device=self.device)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target,
                                                                        pos_weight=self.loss_weight)
        target = torch.as_tensor(targets, device=self.device)
        return torch.nn.functional.cross_entropy(logits.float(), target, weight=self.loss_weight)

    def _backward(self, loss: torch.Tensor, n: int, n_batches: int) -> None:
        """Accumulate the gradient of batch ``n``; every ``gradient_accumulation`` batches (and at the epoch's end)
        clip it and take an optimizer and scheduler step."""
        every = self.config.gradient_accumulation
        group_start = (n - 1) // every * every
        group = min(every, n_batches - group_start)  # the last group of an epoch may be short
        stepping = n % every == 0 or n == n_batches
        with self.parallel.no_sync(self.net, stepping) if self.parallel else contextlib.nullcontext():
            self.scaler.scale(loss / group).backward()
        if stepping:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

    def _end_epoch(self, epoch: int, loss_sum: float, epoch_start: float) -> None:
        """Evaluate, record the epoch, and keep its weights if it is the best so far. Without ``evaluate`` (a refit
        on all the data, worker/ml/refit.py) nothing is scored and the last epoch is the model."""
        if self.evaluate is None:
            metrics = None
        else:
            metrics = self.parallel.evaluated(self.evaluate, self.model) if self.parallel else self.evaluate(self.model)
        record = {"epoch": epoch, "train_loss": loss_sum / self.inputs_per_epoch}
        if metrics is not None:
            record.update(val_loss=metrics["loss"], accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"])
        record["seconds"] = time.perf_counter() - epoch_start
        self.history.append(record)
        self.epoch_predictions.append(metrics.get("predictions") if metrics is not None else None)
        self.epoch = epoch
        if self.callbacks.on_epoch:
            self.callbacks.on_epoch(record)
        if metrics is None:
            self.best_epoch, self.selection = epoch, {"epoch": epoch, "rule": "last", "warning": None}
        else:
            self._keep_if_chosen(epoch, metrics)
        if self.parallel:  # every epoch, scored or not: a checkpoint resumes each rank's own generators
            self.parallel.gather_rng(rng_state(self.device))

    def _keep_if_chosen(self, epoch: int, metrics: dict) -> None:
        """Early-stopping count, the epoch choice, and the chosen epoch's metrics and weights."""
        score = metrics[self.config.select_metric]
        self.stale = 0 if score > self.best_score else self.stale + 1  # early stopping: epochs without a new best
        self.best_score = max(score, self.best_score)
        self.selection = self._choose()
        if self.selection["epoch"] == epoch:  # the choice is this epoch or stays where it was (see _choose)
            self.best_epoch, self.best_metrics = epoch, metrics
            if not self.parallel or self.parallel.main:  # only rank 0 returns a model
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _choose(self) -> dict:
        """The kept epoch: the best by the selection metric, or a later one that cannot be told apart from it on
        the validation split (paired bootstrap; ``choose_epoch(prefer="later")``). The choice only ever moves to
        the newest epoch, so keeping that epoch's weights when chosen is enough. Without validation targets or
        per-epoch predictions: the first best score."""
        from worker.ml.selection import choose_epoch

        metric = self.config.select_metric
        if self.val_targets is None or any(p is None for p in self.epoch_predictions):
            best = max(range(len(self.history)), key=lambda i: (self.history[i][metric], -i))
            return {"epoch": self.history[best]["epoch"], "rule": "best", "best_epoch": self.history[best]["epoch"],
                    "metric": metric, "warning": None}
        history = [{**h, "predictions": p} for h, p in zip(self.history, self.epoch_predictions)]
        return choose_epoch(history, self.val_targets, self.n_labels, metric, prefer="later", seed=self.config.seed)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimizer, schedule, loss scaler, progress, the best epoch so
        far, and the state of every random number generator the run draws from."""
        return {
            "epoch": self.epoch, "step": self.step, "stale": self.stale, "train_seconds": self.train_seconds,
            "history": self.history, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "best_state": self.best_state, "best_epoch": self.best_epoch, "best_score": self.best_score,
            "best_metrics": self.best_metrics, "epoch_predictions": self.epoch_predictions,
            "selection": self.selection, **rng_state(self.device),
            **({"rank_rng": self.parallel.rank_rngs} if self.parallel else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        own = self.parallel.own_rng(state) if self.parallel else state
        if own is not None:
            set_rng_state(own, self.device)
        self.history, self.step, self.train_seconds = state["history"], state["step"], state["train_seconds"]
        self.best_state, self.best_epoch = state["best_state"], state["best_epoch"]
        self.best_score, self.best_metrics = state["best_score"], state["best_metrics"]
        self.epoch, self.stale = state["epoch"], state.get("stale", 0)
        self.epoch_predictions = state.get("epoch_predictions") or [None] * len(self.history)
        self.selection = state.get("selection")
        self.resumed_from_epoch = state["epoch"]


def rng_state(device: torch.device) -> dict[str, Any]:
    """The generators a run draws from: Python's, NumPy's, torch's CPU one and, on CUDA, every device's.

    Plain types and tensors only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
    import numpy as np

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch_rng": torch.get_rng_state(), "python_rng": [version, list(internal), gauss],
             "numpy_rng": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what ``rng_state`` saved (a checkpoint from before a generator was saved leaves that one alone)."""
    import numpy as np

    torch.set_rng_state(state["torch_rng"])
    if "python_rng" in state:
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy_rng" in state:
        kind, keys, pos, has_gauss, cached = state["numpy_rng"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
