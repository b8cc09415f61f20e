"""Bulk classification: resolve the model, split a large job into shards by id range, then classify page by page.

Each page's predictions commit together with the cursor and progress that cover them, in one fenced transaction;
an attempt resumes after the last committed page. Cancellation is read every heartbeat and checked once per page.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from db import repo
from db.models import JobKind, JobStatus
from worker.config import Settings
from worker.errors import Cancelled, InvalidJob
from worker.jobs.paging import walk_pages
from worker.jobs.pipeline import run_pipeline
from worker.jobs.runtime import JobContext, Outcome, Publish, ReportProgress, one_line, run_attempt
from worker.jobs.params import ClassifyParams
from worker.jobs.runs import record_finished_run
from worker.jobs.shards import parent_outcome
from worker.jobs.systemic import check_systemic

# How often the documents of the page in flight are published for display, and how long one piece of a page runs.
INFLIGHT_EVERY_SECONDS = 2.0
PIECE_SECONDS = 1.0
# Pages tokenized ahead of the model, and finished pages waiting for their commit (worker/jobs/pipeline.py).
PIPELINE_DEPTH = 2
# A page write that raced another application's writes is tried again: a foreign-key violation (a document
# deleted at that very moment), a deadlock, a serialization failure (PostgreSQL SQLSTATEs).
RACED_A_WRITER = {"23503", "40P01", "40001"}
PAGE_WRITE_TRIES = 3


def run_classification(job_id: int, *, settings: Settings | None = None, owner: str | None = None,
                       publish: Publish | None = None, report: ReportProgress | None = None) -> Outcome:
    return run_attempt(job_id, JobKind.classify, _classify, settings, owner, publish, report)


@dataclass(frozen=True)
class _Target:
    model_version_id: int
    ref: str
    path: str
    sha256: str
    parent_id: int | None


@dataclass(frozen=True)
class _Range:
    """What is left of this job's documents: after ``cursor``, ``done`` of ``total`` already classified."""

    cursor: int | None
    done: int
    total: int
    skip: int | None  # only_missing: the model version whose fresh predictions are skipped


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
        target = _Target(mv.id, mv.ref, mv.artifact_path, mv.artifact_sha256, job.parent_id)
    ctx.log.extra["model"] = target.ref
    shards = params.shards or -(-remaining // ctx.settings.classify_shard_size)
    if not params.is_shard and job.cursor is None and shards > 1 and remaining > shards:
        _split(ctx, params, target, shards, selected, remaining)
        return
    _classify_range(ctx, params, target, _Range(cursor, done, done + remaining, skip))


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


def _predict_page(ctx: JobContext, predict, size: int, piece: int) -> tuple[list, int]:
    """Predict a page of ``size`` documents in pieces of about a second each (``predict(lo, hi)`` predicts
    positions lo to hi); every INFLIGHT_EVERY_SECONDS the documents done so far go to the job's display detail
    (``inflight``). Display only: progress_done, the cursor and the page's predictions still commit together,
    after the whole page. Returns the predictions and the next piece size."""
    settings = ctx.settings
    out: list = []
    shown = time.monotonic()
    while len(out) < size:
        started = time.perf_counter()
        chunk = check_systemic(predict(len(out), min(size, len(out) + piece)))
        out.extend(chunk)
        elapsed = time.perf_counter() - started
        if elapsed > 0:
            piece = max(settings.classify_batch_size, min(size, int(len(chunk) * PIECE_SECONDS / elapsed)))
        if len(out) < size and time.monotonic() - shown >= INFLIGHT_EVERY_SECONDS:
            shown = time.monotonic()
            with ctx.sessions.begin() as s:
                ctx.fenced(s)
                repo.set_progress_detail(s, ctx.job_id, ctx.attempt, {"unit": "documents", "inflight": len(out)})
    return out, piece


def _classify_range(ctx: JobContext, params: ClassifyParams, target: _Target, todo: _Range) -> None:
    from worker.ml.loader import load_classifier

    settings = ctx.settings
    ctx.progress(todo.done, todo.total, detail={"unit": "documents"})
    classifier = load_classifier(target.path, sha256=target.sha256, device=settings.device,
                                 precision=settings.classify_precision, engine=settings.classify_engine)
    started = time.perf_counter()
    pages = walk_pages(ctx.sessions, params.collection, todo.cursor, settings.classify_chunk_size,
                       unpredicted_by=todo.skip, up_to_id=params.id_max, where=params.filter)
    loop = _pipelined_pages if settings.classify_pipeline else _serial_pages
    done = loop(ctx, target, classifier, pages, todo)
    _finish(ctx, params, target, done, this_attempt=done - todo.done, seconds=time.perf_counter() - started,
            made_by={"engine": classifier.engine, "precision": classifier.precision})


def _serial_pages(ctx: JobContext, target: _Target, classifier, pages, todo: _Range) -> int:
    """Read, predict and commit one page after another (BERTJOBS_CLASSIFY_PIPELINE=off); returns the done count."""
    settings = ctx.settings
    done, piece = todo.done, settings.classify_batch_size
    for page, scanned_to, read_at in pages:
        ctx.check()
        if not page:
            continue
        texts = [text for _, text in page]
        predictions, piece = _predict_page(ctx, lambda lo, hi: classifier.predict_or_fail(
            texts[lo:hi], settings.classify_batch_size, settings.max_text_chars), len(texts), piece)
        _commit_page(ctx, target, page, predictions, read_at, scanned_to, done)
        done += len(page)
        ctx.report_progress(done, todo.total)
    return done


def _pipelined_pages(ctx: JobContext, target: _Target, classifier, pages, todo: _Range) -> int:
    """The same pages, overlapped (worker/jobs/pipeline.py): a reader thread reads and tokenizes the next pages, the
    model runs here, a writer thread commits finished pages in order; returns the done count."""
    settings = ctx.settings
    state = {"done": todo.done, "piece": settings.classify_batch_size}

    def prepare(page):
        return classifier.prepare([text for _, text in page], settings.max_text_chars, tokenizer)

    def forward(_item, encoded):
        ctx.check()
        ctx.report_progress(state["done"], todo.total)  # from this thread: Celery's task state is per thread
        predictions, state["piece"] = _predict_page(ctx, lambda lo, hi: classifier.run(
            encoded.piece(lo, hi), settings.classify_batch_size), encoded.size, state["piece"])
        return predictions

    def commit(item, predictions):
        ctx.check()
        page, scanned_to, read_at = item
        _commit_page(ctx, target, page, predictions, read_at, scanned_to, state["done"])
        state["done"] += len(page)

    with classifier.own_tokenizer() as tokenizer:  # the reader's own: a fast tokenizer is not shared across threads
        run_pipeline(pages, prepare, forward, commit, depth=PIPELINE_DEPTH)
    ctx.report_progress(state["done"], todo.total)
    return state["done"]


def _commit_page(ctx: JobContext, target: _Target, page: list, predictions: list, read_at, cursor: int,
                 done: int) -> None:
    """A page's predictions, the cursor that covers them and the progress, in one fenced transaction. A page
    that raced another application's writes (a document deleted at that moment, a deadlock) is written again."""
    rows = [
        {"document_id": doc_id, "model_version_id": target.model_version_id, "label": p.label,
         "labels": p.labels, "score": p.score, "scores": p.scores, "error": p.error, "job_id": ctx.job_id,
         "created_at": read_at}
        for (doc_id, _), p in zip(page, predictions)
    ]
    for tries in range(1, PAGE_WRITE_TRIES + 1):
        try:
            with ctx.sessions.begin() as s:  # the fence records the page's progress and cursor in the same UPDATE
                ctx.fenced(s, done=done + len(page), cursor=cursor, detail={"unit": "documents"})
                repo.upsert_predictions(s, rows)  # a document deleted meanwhile gets no row
                if target.parent_id is not None:
                    repo.add_progress(s, target.parent_id, len(page))
            return
        except DBAPIError as exc:
            if tries == PAGE_WRITE_TRIES or getattr(exc.orig, "sqlstate", None) not in RACED_A_WRITER:
                raise
            ctx.log.warning("page up to id %s raced another writer, writing it again: %s", cursor, one_line(exc))


def _finish(ctx: JobContext, params: ClassifyParams, target: _Target, done: int, *, this_attempt: int,
            seconds: float, made_by: dict) -> None:
    with ctx.sessions.begin() as s:
        ctx.fenced(s)
        tally = repo.tally_predictions(s, ctx.job_id)  # classified, failed and label counts (worker/jobs/runs.py)
        repo.finish_job(s, ctx.job_id, ctx.attempt, JobStatus.succeeded, result={
            "model": target.ref, "model_version_id": target.model_version_id, "collection": params.collection,
            "documents": done, **tally.to_json(), "seconds": round(seconds, 3),
            "documents_per_second": round(this_attempt / seconds, 2) if seconds > 0 else None, **made_by,
        }, aggregate=parent_outcome)
        record_finished_run(s, target.parent_id if target.parent_id is not None else ctx.job_id)
