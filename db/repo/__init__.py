"""Data access, one module per kind of row. Every function takes a Session and never commits: the caller owns
the transaction. Callers use the package (``from db import repo; repo.claim_job(...)``):

- ``documents``: the import's upsert, the document filter, keyset pages, labelled sets;
- ``jobs``: the job state machine (create, claim, fence, heartbeat, progress, finish, requeue, cancel);
- ``shards``: the child jobs of a bulk classification and the end of their parent;
- ``reaper``: expired leases, cancels that raced a re-queue, queued jobs whose message may be lost;
- ``registry``: model versions, aliases and their history, evaluations;
- ``predictions``: the bulk upsert of predictions and the reads of results;
- ``runs``: what a classification job wrote, counted when it finished (label drift between runs);
- ``view_settings``: the one row of settings the SQL views read.
"""
from db.names import parse_model_ref
from db.repo._common import clock, database_now, short_lock_timeout
from db.repo.documents import (
    FILTER_KEYS,
    LabelledSet,
    UpsertCounts,
    collection_exists,
    count_documents,
    count_labelled,
    document_filter,
    id_ranges,
    load_labelled,
    max_document_id,
    read_documents,
    upsert_documents,
)
from db.repo.jobs import (
    active_jobs,
    attempts_without_progress,
    claim_job,
    create_job,
    fence,
    finish_job,
    get_job,
    heartbeat,
    job_by_dedupe_key,
    job_kind,
    list_jobs,
    mark_progress,
    request_cancel,
    requeue_job,
    set_progress,
    set_progress_detail,
)
from db.repo.predictions import (
    analyze_if_stale,
    list_predictions,
    prediction_counts,
    unpredicted_filter,
    upsert_predictions,
)
from db.repo.reaper import (
    ExpiredJob,
    cancel_pending_queued,
    expired_job_ids,
    lock_expired,
    release_expired,
    touch_stale_queued_jobs,
)
from db.repo.registry import (
    add_evaluation,
    alias_history,
    alias_holder,
    alias_stack,
    aliases_by_version,
    list_evaluations,
    list_model_versions,
    model_name_exists,
    next_model_version,
    register_model_version,
    resolve_model_version,
    rollback_alias,
    set_alias,
    set_lineage_fields,
)
from db.repo.runs import (
    LabelTally,
    RunRow,
    Tally,
    classification_runs,
    record_run,
    run_series,
    tally_predictions,
)
from db.repo.view_settings import read_view_settings, write_view_settings
from db.repo.shards import (
    Aggregate,
    ParentOutcome,
    ShardRow,
    add_progress,
    create_shards,
    finalize_parent,
    finalize_parent_of,
)

__all__ = [
    # documents
    "FILTER_KEYS", "LabelledSet", "UpsertCounts", "collection_exists", "count_documents", "count_labelled",
    "document_filter", "id_ranges", "load_labelled", "max_document_id", "read_documents", "upsert_documents",
    # jobs
    "active_jobs", "attempts_without_progress", "claim_job", "create_job", "fence", "finish_job", "get_job", "heartbeat", "job_by_dedupe_key",
    "job_kind", "list_jobs", "mark_progress", "request_cancel", "requeue_job", "set_progress", "set_progress_detail",
    # shards
    "Aggregate", "ParentOutcome", "ShardRow", "add_progress", "create_shards", "finalize_parent",
    "finalize_parent_of",
    # reaper
    "ExpiredJob", "cancel_pending_queued", "short_lock_timeout", "clock", "database_now", "expired_job_ids", "lock_expired", "release_expired", "touch_stale_queued_jobs",
    # registry
    "add_evaluation", "alias_history", "alias_holder", "alias_stack", "aliases_by_version", "list_evaluations",
    "list_model_versions", "model_name_exists", "next_model_version", "parse_model_ref", "register_model_version",
    "resolve_model_version", "rollback_alias", "set_alias", "set_lineage_fields",
    # predictions
    "analyze_if_stale", "list_predictions", "prediction_counts", "unpredicted_filter", "upsert_predictions",
    # runs
    "LabelTally", "RunRow", "Tally", "classification_runs", "record_run", "run_series", "tally_predictions",
    # view settings
    "read_view_settings", "write_view_settings",
]
