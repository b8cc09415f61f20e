"""Hyperparameter search: a few trials over a small space, each a full fine-tuning run; the best one is kept.

Trials are drawn by ``TrainConfig.trial_configs`` (seeded, without repeats) and ranked by the validation metric
the configuration selects on (macro-F1 by default). Every trial is recorded. With a checkpoint folder, the
finished trials survive a killed worker: a new attempt skips them and, if the best one was trained by an
earlier attempt, trains it again (same seed and data, so the same model) instead of keeping every model.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from worker.ml.checkpoint import load_checkpoint, save_checkpoint
from worker.ml.config import SEARCH_SPACE, TrainConfig
from worker.ml.ddp_rank import fine_tune_parallel
from worker.ml.train import Callbacks, TrainResult, checkpoint_key


def _trial_callbacks(callbacks: Callbacks, index: int, count: int) -> Callbacks:
    """Progress across all trials: trial ``index`` of ``count`` fills its share of the bar."""
    def on_step(step: int, total: int) -> None:
        if callbacks.on_step:
            callbacks.on_step(index * total + step, count * total)

    def on_epoch(record: dict) -> None:
        if callbacks.on_epoch:
            callbacks.on_epoch({**record, "trial": index + 1})

    return replace(callbacks, on_step=on_step, on_epoch=on_epoch)


def search(texts: Sequence[str], labels: Sequence[str], config: TrainConfig, callbacks: Callbacks | None = None,
           checkpoint_dir: Path | None = None, processes: int = 1) -> TrainResult:
    """Run ``config.trials`` trials (each over ``processes`` processes: ``fine_tune_parallel``); the best trial's result,
    with every trial in ``result.trials``."""
    callbacks = callbacks or Callbacks()
    config.validate()
    configs = config.trial_configs()
    varied = list(config.search_space or SEARCH_SPACE)
    state_dir = Path(checkpoint_dir) / "search" if checkpoint_dir is not None else None
    key = checkpoint_key(texts, labels, config)
    saved = load_checkpoint(state_dir, key)
    trials: list[dict] = saved["trials"] if saved else []
    best: tuple[int, TrainResult] | None = None
    for index, trial_config in enumerate(configs):
        if index < len(trials):  # finished by an earlier attempt
            continue
        started = time.perf_counter()
        trial_dir = _trial_dir(checkpoint_dir, index)
        result = fine_tune_parallel(texts, labels, trial_config, _trial_callbacks(callbacks, index, len(configs)),
                                    trial_dir, processes)
        trials.append({"trial": index + 1, "options": {name: getattr(trial_config, name) for name in varied},
                       "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"],
                       "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                       "seconds": time.perf_counter() - started})
        if best is None or _score(trials[index], config) > _score(trials[best[0]], config):
            best = (index, result)
        if state_dir is not None:
            save_checkpoint(state_dir, {"key": key, "trials": trials})
    winner = max(range(len(trials)), key=lambda i: (_score(trials[i], config), -i))
    if best is None or best[0] != winner:  # the best trial ran in an earlier attempt: train it again. Its run left
        # the checkpoint of its second-to-last epoch (none after one epoch): only its last epoch runs again, from the
        # saved weights and generator states, so the model is the same.
        best = (winner, fine_tune_parallel(texts, labels, configs[winner],
                                           _trial_callbacks(callbacks, winner, len(configs)),
                                           _trial_dir(checkpoint_dir, winner), processes))
    result = best[1]
    for record in trials:
        record["selected"] = record["trial"] == winner + 1
    result.trials = trials
    return result


def _trial_dir(checkpoint_dir: Path | None, index: int) -> Path | None:
    return Path(checkpoint_dir) / f"trial{index + 1}" if checkpoint_dir is not None else None


def _score(trial: dict, config: TrainConfig) -> float:
    return trial[config.select_metric]
