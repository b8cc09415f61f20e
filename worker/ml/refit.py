"""Refit: after the validation split chose the number of epochs, train again on all labelled documents.

The selection run holds out ``val_fraction`` of the documents to choose the epoch (and, with a search, the
trial). Once chosen, those documents are only lost training data, so a refit trains the same recipe (same seed,
same options, ``epochs`` = the chosen epoch, no early stopping) on training + validation, and the model kept is
the average of its weights and the selection model's: two fine-tunings of one base model from one head
initialisation lie in one basin, and on a test split that neither saw their average scored 0.8371 and 0.8355
(two seeds) against the selection model's 0.8320 and 0.8327 and the refit model's 0.8316 and 0.8359
(bench/quality.py; bench/README.md). The average is kept only if it scores on the validation split at least as well
as the selection model did (it saw those documents through its refit half, so a lower score means the two did
not average well); otherwise the refit model alone is kept. ``result.refit["averaged"]`` says which.

What the refit model keeps from the selection run, and why:

- its scores (accuracy, macro-F1, intervals, baselines): the refit model saw the validation documents, so its
  own validation scores would flatter it. The recorded scores are the selection run's, an estimate for a model
  trained on 20% less data;
- its temperature (and, multi-label, its thresholds): fitted on held-out logits of a model trained the same way.
  Fitting them again on the validation documents the refit model trained on would make it look sure of itself
  (a temperature below the honest one). bench/quality.py checks the kept temperature on a test split.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from worker.ml.config import TrainConfig
from worker.ml.ddp_rank import fine_tune_parallel
from worker.ml.train import Callbacks, TrainResult, validation_scores


def refit_config(selected: TrainConfig, epochs: int) -> TrainConfig:
    """The selection run's recipe for ``epochs`` epochs on all the data: no search, no early stopping."""
    return replace(selected, epochs=epochs, early_stopping_patience=0, trials=0, search_space=None, refit=False)


def refit(texts: Sequence[str], labels: Sequence, selected: TrainResult, callbacks: Callbacks | None = None,
          checkpoint_dir: Path | None = None, processes: int = 1) -> TrainResult:
    """``selected`` with its model replaced by the average of itself and one trained on every document for
    ``selected.best_epoch`` epochs, over ``processes`` processes like the selection run (``fine_tune_parallel``),
    or by the refit model alone where the average scores below the selection model on validation.

    Everything else (scores, history, split, validation logits, thresholds, configuration) stays the selection
    run's; ``result.refit`` records the refit: {"epochs", "train_size", "seconds", "history", "averaged",
    "average_validation"} (the average's validation scores, which decided: flattering, it saw those documents)."""
    config = refit_config(selected.config, selected.best_epoch)
    again = fine_tune_parallel(texts, labels, config, callbacks, checkpoint_dir, processes, all_data=True)
    model, averaged, scores = kept_model(selected, again.model)
    record = {"epochs": config.epochs, "train_size": again.train_size, "seconds": again.seconds,
              "history": again.history, "resumed_from_epoch": again.resumed_from_epoch, "averaged": averaged,
              "average_validation": scores}
    return replace(selected, model=model, tokenizer=again.tokenizer, refit=record,
                   seconds=selected.seconds + again.seconds)


def average_weights(models: Sequence) -> dict:
    """The element-wise mean of the models' floating-point weights (integer buffers: the first model's)."""
    states = [m.state_dict() for m in models]
    return {name: torch.stack([s[name].float() for s in states]).mean(0).to(value.dtype)
            if value.is_floating_point() else value for name, value in states[0].items()}


def kept_model(selected: TrainResult, refitted) -> tuple[object, bool, dict]:
    """(model, averaged, the average's validation accuracy and macro-F1): the average of the selection and refit
    models if it scores on validation at least as well as the selection model did by the selection metric, else
    the refit model."""
    metric = selected.config.select_metric
    average = copy.deepcopy(refitted)
    average.load_state_dict(average_weights([selected.model, refitted]))
    metrics = validation_scores(average, selected)
    scores = {k: metrics[k] for k in ("accuracy", "macro_f1")}
    return (average, True, scores) if scores[metric] >= selected.metrics[metric] else (refitted, False, scores)
