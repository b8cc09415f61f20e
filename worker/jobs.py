"""Job functions: claim a job, run it, record the outcome. Plain functions, callable without Celery.

They own the transaction boundaries: reads in short transactions, results committed together with the
job's progress in one fenced transaction per batch (classification) or at the end (training).
"""
from __future__ import annotations

import enum
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import repo
from db.models import JobKind, JobStatus, utcnow
from db.session import session_factory_for
from worker.config import Settings, get_settings
from worker.errors import PERMANENT_ERRORS, Cancelled, InvalidJob, LeaseLost
from worker.params import ClassifyParams, TrainParams, check_local_base_model
from worker.report import write_report

log = logging.getLogger("bertjobs.jobs")

# How a job hands new jobs (shards) to the queue: the Celery task passes client.publish; the embedded
# runner collects them to run in-process. Jobs never import Celery.
Publish = Callable[[int, str], None]
# How a job reports progress outside the database (the Celery task state, for Flower): (done, total).
ReportProgress = Callable[[int, "int | None"], None]


class Outcome(str, enum.Enum):
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    retry = "retry"  # put back in the queue after an unexpected error; publish it again
    skipped = "skipped"  # not claimable: finished, owned by someone else, cancelled or out of attempts
    lost = "lost"  # another attempt took the job over while this one ran; nothing was written
    dead = "dead"  # unexpected errors on every attempt


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


class JobLog(logging.LoggerAdapter):
    """Every line of a running job carries its id, attempt, kind and (once known) model version."""

    def process(self, msg, kwargs):
        fields = " ".join(f"{k}={v}" for k, v in self.extra.items() if v is not None)
        return f"[{fields}] {msg}", kwargs


class Heartbeat(threading.Thread):
    """Extends the lease in the background and notices cancellation or a lost lease."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, attempt: int, lease_seconds: int,
                 interval: float):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.sessions, self.job_id, self.attempt = sessions, job_id, attempt
        self.lease_seconds, self.interval = lease_seconds, interval
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            with self.sessions.begin() as s:
                state = repo.heartbeat(s, self.job_id, self.attempt, self.lease_seconds)
        except Exception as exc:  # noqa: BLE001 - a database hiccup; the next beat tries again
            log.warning("job %s: heartbeat failed: %s", self.job_id, one_line(exc))
            return
        if state is None:
            self.lost.set()
        elif state:
            self.cancelled.set()

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class JobContext:
    """What a running job needs: its ids, parameters, sessions, settings and stop signals."""

    job_id: int
    attempt: int
    params: dict[str, Any]
    sessions: sessionmaker[Session]
    settings: Settings
    heartbeat: Heartbeat
    publish: Publish | None = None
    report: ReportProgress | None = None
    log: JobLog = field(default_factory=lambda: JobLog(log, {}))
    _last_progress: float = field(default=0.0)

    def should_stop(self) -> bool:
        return self.heartbeat.cancelled.is_set() or self.heartbeat.lost.is_set()

    def check(self) -> None:
        if self.heartbeat.lost.is_set():
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} lost its lease")
        if self.heartbeat.cancelled.is_set():
            raise Cancelled("cancelled on request")

    def fenced(self, s: Session) -> None:
        """Start of every writing transaction: lock the job row if this attempt still owns it."""
        if not repo.fence(s, self.job_id, self.attempt):
            self.heartbeat.lost.set()
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} no longer owns the job")

    def progress(self, done: int, total: int | None = None, *, every: float = 0.0, **extra: Any) -> None:
        now = time.monotonic()
        if every and now - self._last_progress < every and (total is None or done < total):
            return
        self._last_progress = now
        with self.sessions.begin() as s:
            self.fenced(s)
            repo.set_progress(s, self.job_id, self.attempt, done=done, total=total, **extra)
        self.report_progress(done, total)

    def report_progress(self, done: int, total: int | None) -> None:
        """Tell the outside world (best effort: a broker hiccup never fails the job)."""
        if self.report is None:
            return
        try:
            self.report(done, total)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("progress report failed: %s", exc)

    def end(self, status: JobStatus, *, error: str | None = None, result: dict | None = None) -> bool:
        with self.sessions.begin() as s:
            return repo.finish_job(s, self.job_id, self.attempt, status, error=error, result=result)


def _run(job_id: int, kind: JobKind, body: Callable[[JobContext], None], settings: Settings | None,
         owner: str | None, publish: Publish | None = None, report: ReportProgress | None = None) -> Outcome:
    settings = settings or get_settings()
    sessions = session_factory_for(settings.resolved_database_url)
    owner = owner or default_owner()
    try:
        with sessions.begin() as s:
            repo.get_job(s, job_id)
    except ValueError as exc:  # params that are not JSON at all (SQLite stores any text): fail on this claim
        return _fail_unreadable(sessions, job_id, kind, owner, settings, f"job parameters are not JSON: {one_line(exc)}")
    with sessions.begin() as s:
        job = repo.get_job(s, job_id)
        if job is None or job.kind != kind.value:
            log.error("job %s: no %s job with this id", job_id, kind.value)
            return Outcome.skipped
        attempt = repo.claim_job(s, job_id, owner, settings.lease_seconds)
        # Copied if it is an object; anything else (a SQL row's [1, 2], "abc", null) stays as it is and fails
        # the job on this claim when the body parses it (TrainParams/ClassifyParams.from_dict).
        params = dict(job.params) if isinstance(job.params, dict) else job.params
        max_attempts, status = job.max_attempts, job.status
    if attempt is None:
        log.info("job %s: not claimable (status %s); leaving it", job_id, status)
        return Outcome.skipped

    heartbeat = Heartbeat(sessions, job_id, attempt, settings.lease_seconds, settings.heartbeat_seconds)
    heartbeat.start()
    jlog = JobLog(log, {"job": job_id, "attempt": attempt, "kind": kind.value, "model": None})
    ctx = JobContext(job_id, attempt, params, sessions, settings, heartbeat, publish, report, jlog)
    jlog.info("%s started by %s", kind.value, owner)
    try:
        body(ctx)
        return Outcome.succeeded
    except LeaseLost as exc:
        jlog.warning("%s", exc)
        return Outcome.lost
    except Cancelled:
        if heartbeat.lost.is_set():
            return Outcome.lost
        ctx.end(JobStatus.cancelled, error="cancelled on request")
        jlog.info("cancelled")
        return Outcome.cancelled
    except PERMANENT_ERRORS as exc:
        ctx.end(JobStatus.failed, error=one_line(exc))
        jlog.info("failed: %s", one_line(exc))
        return Outcome.failed
    except Exception as exc:
        jlog.exception("unexpected error")
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        if attempt < max_attempts:
            with sessions.begin() as s:
                repo.requeue_job(s, job_id, attempt, f"attempt {attempt} failed, will retry: {reason}")
            return Outcome.retry
        ctx.end(JobStatus.dead, error=f"dead after {attempt} attempts; last error: {reason}")
        return Outcome.dead
    finally:
        heartbeat.stop()


def _fail_unreadable(sessions: sessionmaker[Session], job_id: int, kind: JobKind, owner: str, settings: Settings,
                     reason: str) -> Outcome:
    with sessions.begin() as s:
        if repo.job_kind(s, job_id) != kind.value:
            log.error("job %s: no %s job with this id", job_id, kind.value)
            return Outcome.skipped
        attempt = repo.claim_job(s, job_id, owner, settings.lease_seconds)
        if attempt is None:
            return Outcome.skipped
        repo.finish_job(s, job_id, attempt, JobStatus.failed, error=reason)
    log.info("job %s failed: %s", job_id, reason)
    return Outcome.failed


def run_inline(job_id: int, kind: str, *, settings: Settings | None = None) -> Outcome:
    """The embedded runner: run a job (and any shards it spawns) in this process, retrying here as asked."""
    pending: list[tuple[int, str]] = [(job_id, kind)]
    first: Outcome | None = None
    while pending:
        current, current_kind = pending.pop(0)
        if current_kind == JobKind.evaluate.value:
            from worker.evaluate import run_evaluation as runner
        else:
            runner = run_training if current_kind == JobKind.train.value else run_classification
        spawned: list[tuple[int, str]] = []

        def collect(new_id: int, new_kind: str) -> None:
            spawned.append((new_id, new_kind))

        outcome = runner(current, settings=settings, publish=collect)
        while outcome is Outcome.retry:
            outcome = runner(current, settings=settings, publish=collect)
        pending.extend(spawned)
        first = first or outcome
    return first


# ---------------------------------------------------------------- training


def run_training(job_id: int, *, settings: Settings | None = None, owner: str | None = None,
                 publish: Publish | None = None, report: ReportProgress | None = None) -> Outcome:
    return _run(job_id, JobKind.train, _train, settings, owner, publish, report)


def _content_hash(ids, texts, labels) -> str:
    digest = hashlib.sha256()
    for i, t, label in zip(ids, texts, labels):
        digest.update(f"{i}\0{label}\0{t}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def _data_check(base_model: str, texts, labels, config) -> dict:
    from transformers import AutoTokenizer

    from worker.ml.datacheck import training_data_check

    return training_data_check(texts, labels, tokenizer=AutoTokenizer.from_pretrained(base_model),
                               max_length=config.max_length, val_fraction=config.val_fraction, seed=config.seed)


def _train(ctx: JobContext) -> None:
    from worker.ml.artifact import save_artifact
    from worker.ml.quantize import calibration_file
    from worker.ml.search import search
    from worker.ml.train import Callbacks, check_base_model, fine_tune, validate_multilabel_set, validate_training_set
    from worker.quantize import after_training, discard

    params = TrainParams.from_dict(ctx.params)
    check_local_base_model(params.base_model)
    config = params.train_config()
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

    shown: dict[str, Any] = {"unit": "steps", "epoch": 1, "epochs": config.epochs}

    def on_batch(epoch: int, loss: float) -> None:
        shown["epoch"], shown["loss"] = epoch, round(loss, 6)

    def on_step(step: int, total: int) -> None:
        ctx.progress(step, total, every=2.0, detail=dict(shown))

    def on_epoch(record: dict) -> None:
        if "trial" in record:
            shown["trial"], shown["trials"] = record["trial"], config.trials
        ctx.log.info(("trial %d/%d, " % (record["trial"], config.trials) if "trial" in record else "")
                     + "epoch %d/%d: train loss %.4f, validation loss %.4f, accuracy %.4f, macro-F1 %.4f (%.0f s)",
                     record["epoch"], config.epochs, record["train_loss"], record["val_loss"],
                     record["accuracy"], record["macro_f1"], record["seconds"])

    store = ctx.settings.resolved_model_store.resolve()
    checkpoints = store / ".checkpoints" / f"job{ctx.job_id}"  # shared by all attempts of this job
    train = search if config.trials else fine_tune
    result = train(data.texts, data.labels, config,
                   Callbacks(on_step=on_step, on_epoch=on_epoch, on_batch=on_batch, should_stop=ctx.should_stop),
                   checkpoint_dir=checkpoints)
    ctx.check()
    if result.resumed_from_epoch:
        ctx.log.info("resumed from the checkpoint of epoch %d", result.resumed_from_epoch)

    # What trained the registered model (a search's winning trial), and the search that chose it.
    hyper = {**result.config.to_dict(), "trials": config.trials, "search_space": config.search_space}
    hyper.pop("base_model")
    lineage = {
        "collection": params.collection,
        "filter": params.filter,
        "row_count": len(data.ids),
        "unlabelled_skipped": data.unlabelled,
        "content_sha256": _content_hash(data.ids, data.texts, data.labels),
        "label_counts": result.label_counts,
        "train_size": result.train_size,
        "val_size": result.val_size,
        "validation_removed": result.validation_removed,
        "seed": config.seed,
        "libraries": _library_versions(),
        "data_check": data_check,
    }
    metrics = {**result.metrics, "history": result.history,
               "train_examples_per_second": result.examples_per_second, "train_seconds": result.seconds,
               "resumed_from_epoch": result.resumed_from_epoch, "stopped_early": result.stopped_early,
               "class_weights": result.class_weights, "trials": result.trials}
    destination = store / params.model_name / f"job{ctx.job_id}-attempt{ctx.attempt}"
    metadata = {**result.inference_metadata(),
                "base_model": params.base_model, "job_id": ctx.job_id}
    sha = save_artifact(result.model, result.tokenizer, metadata, destination, extra_files=calibration_file(
        data.texts, data.labels, result.config.val_fraction, result.config.seed))
    metrics.update(after_training(ctx.settings, ctx.log, destination, sha, data.texts, data.labels,
                                  result.config.val_fraction, result.config.seed))  # OpenVINO int8, if it is used
    try:
        version = _register(ctx, params, sha, destination, list(result.label_map.labels), hyper, metrics, lineage)
    except LeaseLost:
        shutil.rmtree(destination, ignore_errors=True)
        discard(destination)
        raise
    shutil.rmtree(checkpoints, ignore_errors=True)
    try:
        write_report({"name": params.model_name, "version": version, "base_model": params.base_model,
                      "metrics": metrics, "hyperparameters": hyper, "lineage": lineage}, destination)
    except OSError as exc:  # the model is registered; `bertjobs models report` can write it again
        ctx.log.warning("could not write the training report: %s", exc)
    ctx.log.extra["model"] = f"{params.model_name}:{version}"
    ctx.log.info("registered %s:%s (accuracy %.4f, macro-F1 %.4f)", params.model_name, version,
             result.metrics["accuracy"], result.metrics["macro_f1"])


def _register(ctx: JobContext, params: TrainParams, sha: str, destination: Path, labels: list[str],
              hyper: dict, metrics: dict, lineage: dict) -> int:
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
                    "model": f"{mv.name}:{mv.version}", "model_version_id": mv.id,
                    "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                    "best_epoch": metrics["best_epoch"],
                    "train_examples_per_second": round(metrics["train_examples_per_second"], 2),
                    "train_seconds": round(metrics["train_seconds"], 2),
                    "resumed_from_epoch": metrics["resumed_from_epoch"],
                })
                return mv.version
        except IntegrityError:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- classification


def run_classification(job_id: int, *, settings: Settings | None = None, owner: str | None = None,
                       publish: Publish | None = None, report: ReportProgress | None = None) -> Outcome:
    return _run(job_id, JobKind.classify, _classify, settings, owner, publish, report)


def _classify(ctx: JobContext) -> None:
    params = ClassifyParams.from_dict(ctx.params)
    with ctx.sessions.begin() as s:
        in_collection = repo.count_documents(s, params.collection)
        repo.analyze_if_stale(s, "documents", in_collection)
        selected = repo.count_documents(s, params.collection, where=params.filter) if params.filter else in_collection
        if selected == 0:
            which = " matching the filter" if params.filter else ""
            raise InvalidJob(f"collection {params.collection!r} has no documents{which}")
        mv = repo.resolve_model_version(s, params.model)
        if mv is None:
            raise InvalidJob(f"no ready model version matches {params.model!r}")
        job = repo.get_job(s, ctx.job_id)
        skip = mv.id if params.only_missing else None
        if params.is_shard:
            cursor = job.cursor if job.cursor is not None else params.id_min - 1
        else:
            cursor = job.cursor
        done = job.progress_done if job.cursor is not None else 0
        remaining = repo.count_documents(s, params.collection, after_id=cursor, unpredicted_by=skip,
                                         up_to_id=params.id_max, where=params.filter)
        target = _Target(mv.id, f"{mv.name}:{mv.version}", mv.artifact_path, mv.artifact_sha256, job.parent_id)
    ctx.log.extra["model"] = target.ref
    shards = params.shards or -(-remaining // ctx.settings.classify_shard_size)
    if not params.is_shard and job.cursor is None and shards > 1 and remaining > shards:
        _split(ctx, params, target, shards, selected, remaining)
        return
    _classify_range(ctx, params, target, cursor, done, done + remaining, skip)


@dataclass(frozen=True)
class _Target:
    model_version_id: int
    ref: str
    path: str
    sha256: str
    parent_id: int | None


def _split(ctx: JobContext, params: ClassifyParams, target: _Target, shards: int, selected: int, total: int) -> None:
    """Split into shards by id range, commit them with the parent parked, then publish them."""
    with ctx.sessions.begin() as s:
        ranges = repo.id_ranges(s, params.collection, -(-selected // shards), where=params.filter)
        ctx.fenced(s)
        if repo.get_job(s, ctx.job_id).cancel_requested:  # read under the row lock the fence took
            raise Cancelled("cancelled before the job was split")
        children = [ClassifyParams(collection=params.collection, model=target.ref, only_missing=params.only_missing,
                                   id_min=lo, id_max=hi, filter=params.filter).to_dict() for lo, hi in ranges]
        ids = repo.create_shards(s, ctx.job_id, ctx.attempt, children, ctx.settings.max_attempts, total)
    ctx.log.info("split into %d shards: %s", len(ids), ids)
    if ctx.publish is None:
        ctx.log.warning("no publisher; its shards stay queued for the reaper")
        return
    for shard_id in ids:
        try:
            ctx.publish(shard_id, JobKind.classify.value)
        except Exception as exc:  # noqa: BLE001 - committed as queued: the reaper publishes them again
            ctx.log.warning("could not publish shard %s: %s", shard_id, exc)


def walk_pages(sessions: sessionmaker[Session], collection: str, cursor: int | None, limit: int, *,
               unpredicted_by: int | None = None, up_to_id: int | None = None, where: dict | None = None):
    """Yield (page, scanned_to, read_at): keyset pages of (id, text) in id order, each read in its own short transaction.

    Each page is read inside a bounded id window, so no plan (however stale the planner's statistics) reads more
    than the window: the window doubles while pages come back sparse and halves when one fills early. The
    caller stores ``scanned_to`` as its cursor: every id up to it has been looked at. ``read_at`` is taken before
    the read, so a prediction stamped with it is never newer than the text it was made from.
    """
    with sessions.begin() as s:
        last = repo.max_document_id(s, collection)
    if up_to_id is not None:
        last = min(last, up_to_id) if last is not None else None
    if last is None:
        return
    cursor = cursor if cursor is not None else 0
    span = limit * 4
    while cursor < last:
        window_end = min(cursor + span, last)
        read_at = utcnow()
        with sessions.begin() as s:
            page = repo.read_documents(s, collection, cursor, limit, unpredicted_by=unpredicted_by,
                                       up_to_id=window_end, where=where)
        if len(page) == limit:
            scanned_to = page[-1][0]
            if scanned_to - cursor < span // 4:
                span = max(limit, span // 2)
        else:
            scanned_to = window_end
            if len(page) < limit // 2:
                span *= 2
        yield page, scanned_to, read_at
        cursor = scanned_to


# How often the documents of the page in flight are published for display, and how long one piece of a page runs.
INFLIGHT_EVERY_SECONDS = 2.0
PIECE_SECONDS = 1.0


def _predict_page(ctx: JobContext, classifier, texts: list[str], piece: int) -> tuple[list, int]:
    """Predict a page in pieces of about a second each; every INFLIGHT_EVERY_SECONDS the documents done so far
    go to the job's display detail (``inflight``). Display only: progress_done, the cursor and the page's
    predictions still commit together, after the whole page. Returns the predictions and the next piece size."""
    settings = ctx.settings
    out: list = []
    shown = time.monotonic()
    while len(out) < len(texts):
        chunk = texts[len(out):len(out) + piece]
        started = time.perf_counter()
        out.extend(classifier.predict_or_fail(chunk, settings.classify_batch_size, settings.max_text_chars))
        elapsed = time.perf_counter() - started
        if elapsed > 0:
            piece = max(settings.classify_batch_size, min(len(texts), int(len(chunk) * PIECE_SECONDS / elapsed)))
        if len(out) < len(texts) and time.monotonic() - shown >= INFLIGHT_EVERY_SECONDS:
            shown = time.monotonic()
            with ctx.sessions.begin() as s:
                ctx.fenced(s)
                repo.set_progress_detail(s, ctx.job_id, ctx.attempt, {"unit": "documents", "inflight": len(out)})
    return out, piece


def _classify_range(ctx: JobContext, params: ClassifyParams, target: _Target, cursor: int | None, done: int,
                    total: int, skip: int | None) -> None:
    from worker.ml.predict import load_classifier

    settings = ctx.settings
    ctx.progress(done, total, detail={"unit": "documents"})
    classifier = load_classifier(target.path, sha256=target.sha256, device=settings.device,
                                 precision=settings.classify_precision, engine=settings.classify_engine)
    started = time.perf_counter()
    this_attempt = 0
    piece = settings.classify_batch_size
    pages = walk_pages(ctx.sessions, params.collection, cursor, settings.classify_chunk_size, unpredicted_by=skip,
                       up_to_id=params.id_max, where=params.filter)
    for page, scanned_to, read_at in pages:
        ctx.check()
        if not page:
            continue
        predictions, piece = _predict_page(ctx, classifier, [text for _, text in page], piece)
        rows = [
            {"document_id": doc_id, "model_version_id": target.model_version_id, "label": p.label,
             "labels": p.labels, "score": p.score, "scores": p.scores, "error": p.error, "job_id": ctx.job_id,
             "created_at": read_at}
            for (doc_id, _), p in zip(page, predictions)
        ]
        cursor = scanned_to
        with ctx.sessions.begin() as s:
            ctx.fenced(s)
            repo.upsert_predictions(s, rows)
            repo.set_progress(s, ctx.job_id, ctx.attempt, done=done + len(page), cursor=cursor,
                              detail={"unit": "documents"})
            if target.parent_id is not None:
                repo.add_progress(s, target.parent_id, len(page))
        done += len(page)
        ctx.report_progress(done, total)
        this_attempt += len(page)

    seconds = time.perf_counter() - started
    with ctx.sessions.begin() as s:
        ctx.fenced(s)
        counts = repo.prediction_counts(s, target.model_version_id, job_id=ctx.job_id)
        repo.finish_job(s, ctx.job_id, ctx.attempt, JobStatus.succeeded, result={
            "model": target.ref, "model_version_id": target.model_version_id, "collection": params.collection,
            "documents": done, **counts, "seconds": round(seconds, 3),
            "documents_per_second": round(this_attempt / seconds, 2) if seconds > 0 else None,
            "engine": classifier.engine, "precision": classifier.precision,
        })
