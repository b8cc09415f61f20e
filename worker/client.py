"""The enqueue API other applications import (no torch needed).

    from worker.client import submit_training, submit_classification
    job = submit_classification("news", "news-topics@production")
    job.wait(timeout=3600)

A submission writes the job row and commits, then publishes the job id to Celery. If the broker is down
the job stays queued in the database (``published`` is False) and the reaper publishes it again once the
broker is back (after BERTJOBS_REPUBLISH_AFTER_SECONDS). Publishing gives up within about two seconds.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from db import repo
from db.models import FINISHED_STATUSES, JobKind
from db.session import session_factory_for
from worker.config import Settings, SettingsError, check_engine, get_settings
from worker.errors import InvalidJob, JobFailed  # noqa: F401 - JobFailed is part of this API
from worker.jobs.params import (ClassifyParams, EvaluateParams, TrainParams, check_allowed_base_model,
                                check_local_base_model)
from worker.publish import publish
from worker.jobs.shards import parent_outcome

log = logging.getLogger("bertjobs.client")

_FINISHED = {s.value for s in FINISHED_STATUSES}


@dataclass(frozen=True)
class JobSnapshot:
    id: int
    kind: str
    status: str
    attempt: int
    max_attempts: int
    progress_done: int
    progress_total: int | None
    error: str | None
    result: dict[str, Any] | None
    params: dict[str, Any]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in _FINISHED


class JobHandle:
    def __init__(self, job_id: int, settings: Settings | None = None, published: bool = True, created: bool = True):
        self.id = job_id
        self.settings = settings or get_settings()
        self.published = published
        self.created = created

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id})"

    def _sessions(self):
        return session_factory_for(self.settings.resolved_database_url)

    def snapshot(self) -> JobSnapshot:
        with self._sessions().begin() as s:
            job = repo.get_job(s, self.id)
            if job is None:
                raise LookupError(f"no job {self.id}")
            return JobSnapshot(job.id, job.kind, job.status, job.attempt, job.max_attempts, job.progress_done,
                               job.progress_total, job.error, job.result, dict(job.params), job.created_at,
                               job.started_at, job.finished_at)

    def status(self) -> str:
        return self.snapshot().status

    def progress(self) -> tuple[int, int | None]:
        snap = self.snapshot()
        return snap.progress_done, snap.progress_total

    def wait(self, timeout: float | None = None, poll: float = 1.0,
             on_progress: Callable[[JobSnapshot], None] | None = None) -> JobSnapshot:
        """Block until the job finishes; raise TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if on_progress is not None:
                on_progress(snap)
            if snap.finished:
                return snap
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {snap.status} after {timeout} s")
            time.sleep(poll)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait, then return the job's result; raise JobFailed unless it succeeded."""
        snap = self.wait(timeout)
        if snap.status != "succeeded":
            raise JobFailed(f"job {self.id} {snap.status}: {snap.error}")
        return snap.result or {}

    def cancel(self) -> str:
        with self._sessions().begin() as s:
            job = repo.request_cancel(s, self.id, aggregate=parent_outcome)
            if job is None:
                raise LookupError(f"no job {self.id}")
            return job.status


def _check_documents(s, collection: str, where: dict[str, Any] | None) -> None:
    """Refuse an unknown collection, or a filter that selects none of its documents."""
    if not repo.collection_exists(s, collection):
        raise InvalidJob(f"unknown collection {collection!r} (no documents; import some first)")
    if where and repo.count_documents(s, collection, where=where) == 0:
        raise InvalidJob(f"collection {collection!r} has no documents matching the filter")


def _check_training(s, values: dict[str, Any]) -> dict[str, Any]:
    """What would fail a training job at once, checked before it is queued."""
    params = TrainParams.from_dict(values)
    _check_documents(s, params.collection, params.filter)
    selected, labelled = repo.count_labelled(s, params.collection, params.filter,
                                             multi_label=params.train_config().multi_label)
    if labelled == 0:
        which = " matching the filter" if params.filter else ""
        raise InvalidJob(f"collection {params.collection!r} has no labelled documents{which} "
                         f"({selected} unlabelled)")
    if selected > labelled and not params.skip_unlabelled:
        raise InvalidJob(f"{selected - labelled} documents of collection {params.collection!r} have no label; "
                         "label them or train with skip_unlabelled")
    check_local_base_model(params.base_model)
    return values


def _check_classification(s, values: dict[str, Any]) -> dict[str, Any]:
    """Refuse what cannot run, and pin the model reference to the version it resolves to now."""
    params = ClassifyParams.from_dict(values)
    _check_documents(s, params.collection, params.filter)
    mv = repo.resolve_model_version(s, params.model)
    if mv is None:
        raise InvalidJob(f"no ready model version matches {params.model!r}")
    return {**values, "model": mv.ref, "requested_model": params.requested_model or params.model}


def _submit(kind: JobKind, params: dict[str, Any], settings: Settings | None, idempotency_key: str | None,
            max_attempts: int | None, enqueue: bool) -> JobHandle:
    settings = settings or get_settings()
    if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
        raise InvalidJob(f"max_attempts must be a whole number of at least 1, got {max_attempts!r}")
    if kind is not JobKind.train:  # a worker would fail the job: refuse it here instead
        try:
            check_engine(settings)
        except SettingsError as exc:
            raise InvalidJob(str(exc)) from None
    check = _check_training if kind is JobKind.train else _check_classification
    with session_factory_for(settings.resolved_database_url).begin() as s:
        existing = repo.job_by_dedupe_key(s, idempotency_key) if idempotency_key is not None else None
        if existing is not None:  # the same key returns its job, whatever changed since
            job, created = existing, False
        else:
            job, created = repo.create_job(s, kind.value, check(s, params),
                                           max_attempts=max_attempts or settings.max_attempts,
                                           dedupe_key=idempotency_key)
        job_id, status = job.id, job.status
    published = False
    if enqueue and status == "queued":
        try:
            publish(job_id, kind.value, settings)
            published = True
        except Exception as exc:  # noqa: BLE001 - the job is safe in the database
            # info, not warning: the caller sees published=False (the CLI prints its own one line)
            log.info("job %s is queued in the database but could not be published: %s", job_id, exc)
    return JobHandle(job_id, settings, published=published, created=created)


def submit_training(
    collection: str,
    base_model: str,
    *,
    model_name: str | None = None,
    options: dict[str, Any] | None = None,
    skip_unlabelled: bool = False,
    filter: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    settings: Settings | None = None,
    enqueue: bool = True,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> JobHandle:
    """Queue a fine-tuning job on the labelled documents of ``collection``. Options: see TrainConfig.

    Raises InvalidJob (and queues nothing) for an unknown collection, a filter matching no document, no labelled
    documents, unlabelled ones without ``skip_unlabelled``, a local base-model folder without config and weights,
    or a base model outside BERTJOBS_ALLOWED_BASE_MODELS.
    """
    params = TrainParams(collection=collection, base_model=base_model, model_name=model_name or collection,
                         options=dict(options or {}), skip_unlabelled=skip_unlabelled, filter=filter,
                         description=description, tags=dict(tags or {}))
    settings = settings or get_settings()
    check_allowed_base_model(params.base_model, settings.allowed_base_models)
    return _submit(JobKind.train, params.to_dict(), settings, idempotency_key, max_attempts, enqueue)


def submit_classification(
    collection: str,
    model: str,
    *,
    only_missing: bool = True,
    shards: int | None = None,
    filter: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    settings: Settings | None = None,
    enqueue: bool = True,
) -> JobHandle:
    """Queue a bulk classification of ``collection`` with ``model`` (``name``, ``name:VERSION``, ``name@ALIAS``).

    The reference is resolved now: the job runs with the version it names at submit (``params["model"]``, the
    reference given is kept as ``requested_model``). An unknown collection, a filter matching no document or a
    reference to no ready version raises InvalidJob and queues nothing.

    Over BERTJOBS_CLASSIFY_SHARD_SIZE documents (or with ``shards``), the job splits into shard jobs that any
    worker can take; it finishes when the last shard does.
    """
    params = ClassifyParams(collection=collection, model=model, only_missing=only_missing, shards=shards,
                            filter=filter)
    return _submit(JobKind.classify, params.to_dict(), settings, idempotency_key, max_attempts, enqueue)


def submit_evaluation(
    collection: str,
    model: str,
    *,
    filter: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    settings: Settings | None = None,
    enqueue: bool = True,
) -> JobHandle:
    """Queue an evaluation of ``model`` on the labelled documents of ``collection`` (the classify queue).

    The job stores an evaluation record (``db.models.Evaluation``); its result carries ``evaluation_id``.
    """
    params = EvaluateParams(collection=collection, model=model, filter=filter)
    return _submit(JobKind.evaluate, params.to_dict(), settings, idempotency_key, max_attempts, enqueue)


def predict(model_ref: str, texts: list[str] | tuple[str, ...], *, settings: Settings | None = None) -> list[dict]:
    """Classify ``texts`` here, now, with the classifier a bulk job would load for ``model_ref``.

    One dict per text, in order: ``label``, ``score``, ``scores``, ``labels`` (multi-label models) and ``error``
    (a text that cannot be classified, e.g. empty, gets its reason and no label). Raises InvalidJob for an
    unknown model or no texts. Needs torch.
    """
    from worker.jobs.target import load_for, resolve

    settings = settings or get_settings()
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InvalidJob("texts must be a list of strings")
    if not texts:
        raise InvalidJob("no texts to classify")
    with session_factory_for(settings.resolved_database_url).begin() as s:
        target = resolve(s, model_ref)
    classifier = load_for(target, settings)
    out = []
    for p in classifier.predict_or_fail(list(texts), settings.classify_batch_size, settings.max_text_chars):
        out.append({"model": target.ref, "label": p.label, "score": p.score, "scores": p.scores,
                    "labels": p.labels, "error": p.error})
    return out


def cancel(job_id: int, settings: Settings | None = None) -> str:
    return JobHandle(job_id, settings).cancel()
