"""Prometheus metrics in the text exposition format: jobs by status, queue depth, throughput, label drift.

``bertjobs metrics --textfile /var/lib/node_exporter/bertjobs.prom`` from cron (or a sidecar loop) feeds
node_exporter's textfile collector; without --textfile it prints, for a quick look or a scrape wrapper.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from db.models import Job, JobStatus, utcnow
from db.session import session_factory_for
from worker.config import Settings
from worker.ops.drift import RunDrift, latest_drifts

# kombu's Redis transport keeps a queue at its name and, per priority step, at name + "\x06\x16" + step.
_PRIORITY_SUFFIXES = ["", *("\x06\x16" + str(step) for step in (3, 6, 9))]


def _queue_depths(settings: Settings) -> dict[str, int] | None:
    import redis

    from worker.celery_app import QUEUES

    try:
        client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)
        return {q: sum(client.llen(q + suffix) for suffix in _PRIORITY_SUFFIXES) for q in sorted(set(QUEUES.values()))}
    except Exception:  # noqa: BLE001 - an unreachable broker is itself a metric
        return None


def prometheus_text(settings: Settings) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")

    with session_factory_for(settings.resolved_database_url).begin() as s:
        counts = {(k, st): n for k, st, n in s.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))}
        since = utcnow() - timedelta(hours=1)
        docs, seconds = s.execute(
            select(func.coalesce(func.sum(Job.progress_done), 0),
                   func.coalesce(func.sum(func.coalesce(Job.result["seconds"].as_float(), 0.0)), 0.0))
            .where(Job.kind == "classify", Job.parent_id.is_(None), Job.status == JobStatus.succeeded.value,
                   Job.finished_at >= since)).one()
        classified_total = s.scalar(select(func.coalesce(func.sum(Job.progress_done), 0)).where(
            Job.kind == "classify", Job.parent_id.is_(None), Job.status == JobStatus.succeeded.value))
        running = s.execute(select(Job.id, Job.kind, Job.progress_done, Job.progress_total)
                            .where(Job.status == JobStatus.running.value)).all()
        drifts = latest_drifts(s, settings)
    # PostgreSQL sums integers to numeric (Decimal), and Decimal / float raises: plain numbers from here on.
    docs, seconds, classified_total = float(docs or 0), float(seconds or 0), int(classified_total or 0)

    metric("bertjobs_jobs", "gauge", "Jobs by kind and status.",
           [({"kind": kind, "status": st.value}, counts.get((kind, st.value), 0))
            for kind in ("train", "classify") for st in JobStatus])
    depths = _queue_depths(settings)
    metric("bertjobs_broker_up", "gauge", "1 when the broker answered.", [({}, 0 if depths is None else 1)])
    if depths is not None:
        metric("bertjobs_queue_depth", "gauge", "Messages waiting per queue.",
               [({"queue": q}, n) for q, n in depths.items()])
    metric("bertjobs_classify_documents_per_second", "gauge",
           "Documents per second of bulk jobs that finished in the last hour.",
           [({}, round(docs / seconds, 3) if seconds else 0.0)])
    metric("bertjobs_documents_classified_total", "counter", "Documents classified by finished bulk jobs.",
           [({}, classified_total)])
    metric("bertjobs_job_progress_ratio", "gauge", "Progress of running jobs.",
           [({"job": str(i), "kind": kind}, round(done / total, 4) if total else 0.0)
            for i, kind, done, total in running])
    _drift_metrics(metric, drifts)
    return "\n".join(lines) + "\n"


def _escape(value: object) -> str:
    """A label value in the exposition format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _drift_metrics(metric, drifts: list[RunDrift]) -> None:
    """The latest run of each model over each collection: label shares, mean top score, its PSI (worker/ops/drift.py)."""
    series = [({"collection": d.run.collection, "model": d.run.model_name}, d) for d in drifts]
    metric("bertjobs_label_share", "gauge", "Share of each predicted label in the latest run of a model over a collection.",
           [({**key, "label": "(none)" if t.label is None else t.label}, round(t.documents / d.run.tally.classified, 6))
            for key, d in series if d.run.tally.classified for t in d.run.tally.labels])
    metric("bertjobs_run_mean_top_score", "gauge", "Mean top score of the latest run of a model over a collection.",
           [(key, round(d.run.tally.mean_score, 6)) for key, d in series if d.run.tally.mean_score is not None])
    metric("bertjobs_run_model_version", "gauge", "Model version of the latest run of a model over a collection.",
           [(key, d.run.model_version) for key, d in series])
    metric("bertjobs_label_drift_psi", "gauge", "Population-stability index of the latest run's label shares against "
           "the mean of the runs before it (absent for a first run).",
           [(key, round(d.drift.psi, 6)) for key, d in series if d.drift.psi is not None])
    metric("bertjobs_label_drift_shifted", "gauge", "1 when the latest run's PSI is at or above "
           "BERTJOBS_DRIFT_PSI_THRESHOLD.", [(key, int(d.drift.shifted)) for key, d in series])
