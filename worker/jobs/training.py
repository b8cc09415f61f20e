"""The training job: load the labelled collection, check it, fine-tune (or search), save the artifact, then
register the model version and finish the job in one fenced transaction.

Every attempt of a job shares one checkpoint folder, so a new attempt resumes after the last finished epoch.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from db import repo
from db.models import JobKind, JobStatus
from worker.config import Settings
from worker.errors import InvalidJob, LeaseLost
from worker.jobs.runtime import JobContext, Outcome, Publish, ReportProgress, run_attempt
from worker.jobs.params import TrainParams, check_allowed_base_model, check_local_base_model
from worker.ops.report import write_model_report
from worker.jobs.shards import parent_outcome


def run_training(job_id: int, *, settings: Settings | None = None, owner: str | None = None,
                 publish: Publish | None = None, report: ReportProgress | None = None) -> Outcome:
    return run_attempt(job_id, JobKind.train, _train, settings, owner, publish, report)


def content_hash(ids, texts, labels) -> str:
    """The sha256 of a labelled set (ids, texts and labels, in order): what a model was trained or evaluated on."""
    digest = hashlib.sha256()
    for i, t, label in zip(ids, texts, labels):
        digest.update(f"{i}\0{label}\0{t}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def _data_check(base_model: str, texts, labels, config) -> dict:
    from worker.ml.datacheck import check_training_data

    return check_training_data(base_model, texts, labels, config)


def _train(ctx: JobContext) -> None:
    from worker.ml.artifact import save_artifact
    from worker.ml.ddp_rank import fine_tune_parallel
    from worker.ml.distributed import world_size
    from worker.ml.quantize import calibration_file
    from worker.ml.search import search
    from worker.ops.quantize import after_training, discard

    params = TrainParams.from_dict(ctx.params)
    check_allowed_base_model(params.base_model, ctx.settings.allowed_base_models)  # a job row is SQL anyone may write
    check_local_base_model(params.base_model)
    config = params.train_config()
    data, data_check = _load_checked(ctx, params, config)
    config, epochs_note = _epochs_decided(ctx, config, len(data.texts))
    store = ctx.settings.resolved_model_store.resolve()
    checkpoints = store / ".checkpoints" / f"job{ctx.job_id}"  # shared by all attempts of this job
    train = search if config.trials else fine_tune_parallel
    processes = world_size(ctx.settings.train_processes, config.device)  # this worker's GPUs, or 1
    if processes > 1:
        ctx.log.info("training over %d processes (DistributedDataParallel)", processes)
    result = train(data.texts, data.labels, config, _callbacks(ctx, config), checkpoint_dir=checkpoints,
                   processes=processes)
    ctx.check()
    if config.refit:
        result = _refit(ctx, data, result, checkpoints, processes)
    if result.resumed_from_epoch:
        ctx.log.info("resumed from the checkpoint of epoch %d", result.resumed_from_epoch)

    card = _score_card(ctx, data, result)
    destination = store / params.model_name / f"job{ctx.job_id}-attempt{ctx.attempt}"
    metadata = {**result.inference_metadata(), "base_model": params.base_model, "job_id": ctx.job_id,
                **_temperature(card)}
    sha = save_artifact(result.model, result.tokenizer, metadata, destination, extra_files=calibration_file(
        data.texts, data.labels, result.config.val_fraction, result.config.seed))
    metrics = {**_metrics(result), **card}
    metrics.update(after_training(ctx.settings, ctx.log, destination, sha, data.texts, data.labels,
                                  result.config.val_fraction, result.config.seed))  # OpenVINO int8, if it is used
    lineage = {**_lineage(params, config, data, result, data_check), "train_processes": processes,
               "epochs_decided": epochs_note}
    try:
        mv = _register(ctx, params, sha, destination, list(result.label_map.labels), _hyperparameters(result, config),
                       metrics, lineage)
    except LeaseLost:
        shutil.rmtree(destination, ignore_errors=True)
        discard(destination)
        raise
    shutil.rmtree(checkpoints, ignore_errors=True)
    try:
        write_model_report(mv)
    except OSError as exc:  # the model is registered; `bertjobs models report` can write it again
        ctx.log.warning("could not write the training report: %s", exc)
    ctx.log.extra["model"] = mv.ref
    ctx.log.info("registered %s:%s (accuracy %.4f, macro-F1 %.4f)", mv.name, mv.version,
                 result.metrics["accuracy"], result.metrics["macro_f1"])


def _epochs_decided(ctx: JobContext, config, documents: int):
    """(``config`` with unset epochs decided for this many documents (TrainConfig.for_documents), and the sentence
    that says why, where a small set raised them, else None); the sentence goes to the log too."""
    from worker.ml.config import DEFAULT_EPOCHS, MIN_STEPS

    decided = config.for_documents(documents)
    if config.epochs is not None or decided.epochs == DEFAULT_EPOCHS:
        return decided, None
    why = (f"{decided.epochs} (unset: {DEFAULT_EPOCHS} passes over this training split take "
           f"{DEFAULT_EPOCHS * config.steps_per_epoch(documents)} optimizer steps, fewer than {MIN_STEPS}; "
           "the validation split picks the epoch kept)")
    ctx.log.info("epochs: %s", why)
    return decided, why


def _refit(ctx: JobContext, data, selected, checkpoints: Path, processes: int):
    """Train the chosen recipe again on all the labelled documents (worker/ml/refit.py), over the selection run's
    ``processes``; the scores, temperature and thresholds stay the selection run's."""
    from worker.ml.refit import refit, refit_config

    config = refit_config(selected.config, selected.best_epoch)
    ctx.log.info("refit: %d epoch(s) on all %d labelled documents (the validation split chose the epochs)",
                 config.epochs, len(data.texts))
    result = refit(data.texts, data.labels, selected, _callbacks(ctx, config, phase="refit"), checkpoints / "refit",
                   processes)
    ctx.check()
    return result


def _score_card(ctx: JobContext, data, result) -> dict:
    """Baselines, intervals, trust warnings and calibration on the validation split (worker/ml/scorecard.py);
    every warning goes to the job's log."""
    from worker.ml.scorecard import score_card

    card = score_card(data.texts, data.labels, result)
    for warning in card["trust_warnings"]:
        ctx.log.warning("trust: %s", warning)
    if (result.metrics.get("selection") or {}).get("warning"):
        ctx.log.warning("epoch selection: %s", result.metrics["selection"]["warning"])
    comparison = card["tfidf_comparison"]
    (ctx.log.info if comparison.get("clearly_better") else ctx.log.warning)("baseline: %s", comparison["line"])
    return card


def _temperature(card: dict) -> dict:
    """The artifact metadata's calibration: every prediction path divides the logits by this temperature."""
    from worker.ml.scorecard import temperature_of

    temperature = temperature_of(card)
    return {} if temperature is None else {"temperature": temperature}


def _load_checked(ctx: JobContext, params: TrainParams, config):
    """The labelled documents and the data check's report; a set that cannot train fails the job here."""
    from worker.ml.preflight import check_base_model, validate_multilabel_set, validate_training_set

    with ctx.sessions.begin() as s:
        data = repo.load_labelled(s, params.collection, params.filter, multi_label=config.multi_label)
    if not data.ids:
        extra = f" ({data.unlabelled} unlabelled)" if data.unlabelled else ""
        raise InvalidJob(f"collection {params.collection!r} has no labelled documents{extra}")
    if data.unlabelled and not params.skip_unlabelled:
        raise InvalidJob(f"{data.unlabelled} documents of collection {params.collection!r} have no label; "
                         "label them or train with skip_unlabelled")
    (validate_multilabel_set if config.multi_label else validate_training_set)(data.texts, data.labels)
    check_base_model(params.base_model)
    data_check = _data_check(params.base_model, data.texts, data.labels, config)
    for warning in data_check["warnings"]:
        ctx.log.warning("data check: %s", warning)
    return data, data_check


def _callbacks(ctx: JobContext, config, phase: str | None = None):
    """Progress in steps (with the epoch and running loss for display), a log line per epoch, the stop signal.
    ``phase`` ("refit") is shown with the progress and starts each log line."""
    from worker.ml.train import Callbacks

    shown: dict[str, Any] = {"unit": "steps", "epoch": 1, "epochs": config.epochs}
    if phase:
        shown["phase"] = phase

    def on_batch(epoch: int, loss: float) -> None:
        shown["epoch"], shown["loss"] = epoch, round(loss, 6)

    def on_step(step: int, total: int) -> None:
        ctx.progress(step, total, every=2.0, detail=dict(shown))

    def on_epoch(record: dict) -> None:
        if "trial" in record:
            shown["trial"], shown["trials"] = record["trial"], config.trials
        shown.setdefault("history", []).append(  # the web view's job page shows epochs as they come
            {k: record[k] for k in ("epoch", "train_loss", "val_loss", "accuracy", "macro_f1", "trial") if k in record})
        if "val_loss" not in record:  # a refit: nothing held out, nothing scored
            ctx.log.info("%s epoch %d/%d: train loss %.4f (%.0f s)", phase, record["epoch"], config.epochs,
                         record["train_loss"], record["seconds"])
            return
        ctx.log.info(("trial %d/%d, " % (record["trial"], config.trials) if "trial" in record else "")
                     + "epoch %d/%d: train loss %.4f, validation loss %.4f, accuracy %.4f, macro-F1 %.4f (%.0f s)",
                     record["epoch"], config.epochs, record["train_loss"], record["val_loss"],
                     record["accuracy"], record["macro_f1"], record["seconds"])

    def commit_checkpoint(rename) -> None:
        """The checkpoint goes in place only while this attempt owns the job (the row locked), and counts as
        durable progress (the attempt budget starts again, runtime.py)."""
        with ctx.sessions.begin() as s:
            ctx.fenced(s)
            rename()
            repo.mark_progress(s, ctx.job_id, ctx.attempt)

    return Callbacks(on_step=on_step, on_epoch=on_epoch, on_batch=on_batch, should_stop=ctx.should_stop,
                     commit_checkpoint=commit_checkpoint)


def _hyperparameters(result, config) -> dict:
    """What trained the registered model (a search's winning trial), and the search that chose it."""
    hyper = {**result.config.to_dict(), "trials": config.trials, "search_space": config.search_space}
    hyper.pop("base_model")
    if result.config.long_documents == "windows":  # the pooling used, also when the default chose it
        hyper["window_pooling"] = result.config.window_settings()["pooling"]
    if result.config.long_documents == "head_tail":  # the head's share of each input, as inference repeats it
        hyper["head_fraction"] = result.config.window_settings()["head_fraction"]
    return hyper


def _metrics(result) -> dict:
    return {**result.metrics, "history": result.history,
            "train_examples_per_second": result.examples_per_second, "train_seconds": result.seconds,
            "resumed_from_epoch": result.resumed_from_epoch, "stopped_early": result.stopped_early,
            "class_weights": result.class_weights, "trials": result.trials, "refit": result.refit}


def _lineage(params: TrainParams, config, data, result, data_check: dict) -> dict:
    return {
        "collection": params.collection,
        "filter": params.filter,
        "row_count": len(data.ids),
        "unlabelled_skipped": data.unlabelled,
        "content_sha256": content_hash(data.ids, data.texts, data.labels),
        "label_counts": result.label_counts,
        "train_size": result.train_size,
        "val_size": result.val_size,
        "validation_removed": result.validation_removed,
        "seed": config.seed,
        "libraries": _library_versions(),
        "data_check": data_check,
        "description": params.description,
        "tags": dict(params.tags or {}),
        "refit": {k: result.refit[k] for k in ("epochs", "train_size")} if result.refit else None,
    }


def _baseline_line(metrics: dict) -> str | None:
    """The one line `train` prints when the model is not clearly better than the TF-IDF baseline (None if it is)."""
    comparison = metrics.get("tfidf_comparison") or {}
    return None if comparison.get("clearly_better") else comparison.get("line")


def _register(ctx: JobContext, params: TrainParams, sha: str, destination: Path, labels: list[str],
              hyper: dict, metrics: dict, lineage: dict):
    """Register the model version and finish the job in one transaction (retried on a version-number race)."""
    for attempt in range(5):
        try:
            with ctx.sessions.begin() as s:
                ctx.fenced(s)
                mv = repo.register_model_version(
                    s, name=params.model_name, base_model=params.base_model, status="ready",
                    artifact_path=str(destination), artifact_sha256=sha, labels=labels,
                    hyperparameters=hyper, metrics=metrics, lineage=lineage, training_job_id=ctx.job_id,
                )
                repo.finish_job(s, ctx.job_id, ctx.attempt, JobStatus.succeeded, result={
                    "model": mv.ref, "model_version_id": mv.id,
                    "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                    "best_epoch": metrics["best_epoch"],
                    "train_examples_per_second": round(metrics["train_examples_per_second"], 2),
                    "train_seconds": round(metrics["train_seconds"], 2),
                    "resumed_from_epoch": metrics["resumed_from_epoch"],
                    "warnings": metrics["trust_warnings"], "baseline": _baseline_line(metrics),
                    "selection_warning": (metrics.get("selection") or {}).get("warning"),
                    "refit": lineage.get("refit"), "epochs": hyper["epochs"],
                    "epochs_decided": lineage.get("epochs_decided"),
                }, aggregate=parent_outcome)
                return mv
        except IntegrityError:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")
