"""Refit: after the validation split chose the number of epochs, train again on all labelled documents.

The selection run holds out ``val_fraction`` of the documents to choose the epoch (and, with a search, the
trial). Once chosen, those documents are only lost training data, so a refit trains the same recipe (same seed,
same options, ``epochs`` = the chosen epoch, no early stopping) on training + validation, and that model is kept.
On a test split neither saw (bench/quality.py), it scored 0.8316-0.8422 on Rotten Tomatoes (six runs) against its
selection model's 0.8237-0.8335, and on the 2016 debates 0.7157-0.7563 against 0.6548-0.7107 (three seeds).
Averaging its weights with the selection model's (the default for one session) gained nothing on Rotten Tomatoes
(-0.04 points, mean of six) and lost 0.5-4.1 points on the debates, where the selection model trained on 20% fewer
of 897 documents: the refit model is kept alone (bench/README.md, "Small sets").

What the refit model keeps from the selection run, and why:

- its scores (accuracy, macro-F1, intervals, baselines): the refit model saw the validation documents, so its
  own validation scores would flatter it. The recorded scores are the selection run's, an estimate for a model
  trained on 20% less data;
- its temperature (and, multi-label, its thresholds): fitted on held-out logits of a model trained the same way.
  Fitting them again on the validation documents the refit model trained on would make it look sure of itself
  (a temperature below the honest one). bench/quality.py checks the kept temperature on a test split.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from worker.ml.config import TrainConfig
from worker.ml.ddp_rank import fine_tune_parallel
from worker.ml.train import Callbacks, TrainResult


def refit_config(selected: TrainConfig, epochs: int) -> TrainConfig:
    """The selection run's recipe for ``epochs`` epochs on all the data: no search, no early stopping."""
    return replace(selected, epochs=epochs, early_stopping_patience=0, trials=0, search_space=None, refit=False)


def refit(texts: Sequence[str], labels: Sequence, selected: TrainResult, callbacks: Callbacks | None = None,
          checkpoint_dir: Path | None = None, processes: int = 1) -> TrainResult:
    """``selected`` with its model replaced by one trained on every document for ``selected.best_epoch`` epochs,
    over ``processes`` processes like the selection run (``fine_tune_parallel``).

    Everything else (scores, history, split, validation logits, thresholds, configuration) stays the selection
    run's; ``result.refit`` records the refit: {"epochs", "train_size", "seconds", "history", "resumed_from_epoch"}."""
    config = refit_config(selected.config, selected.best_epoch)
    again = fine_tune_parallel(texts, labels, config, callbacks, checkpoint_dir, processes, all_data=True)
    record = {"epochs": config.epochs, "train_size": again.train_size, "seconds": again.seconds,
              "history": again.history, "resumed_from_epoch": again.resumed_from_epoch}
    return replace(selected, model=again.model, tokenizer=again.tokenizer, refit=record,
                   seconds=selected.seconds + again.seconds)
