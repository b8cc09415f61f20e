"""A job as the pages show it: the CLI's JSON (worker/present.py) plus duration, rate and display strings.

The strings are made here once, so the template's first render and the script's live updates agree.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from db.models import FINISHED_STATUSES, utcnow
from worker.present import job_json

FINISHED = {status.value for status in FINISHED_STATUSES}


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; bertjobs stores UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def elapsed(start: datetime | None, end: datetime | None, now: datetime | None = None) -> float | None:
    start, end = _aware(start), _aware(end) or now or utcnow()
    return max(0.0, (end - start).total_seconds()) if start else None


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def first_line(error: str | None, width: int = 160) -> str | None:
    if not error:
        return None
    line = error.strip().splitlines()[0] if error.strip() else error
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def unit_of(job) -> str:
    detail = (job.result or {}).get("progress") if isinstance(job.result, dict) else None
    if isinstance(detail, dict) and detail.get("unit"):
        return str(detail["unit"])
    return "steps" if job.kind == "train" else "documents"


def detail_text(job) -> str | None:
    """What a running job publishes for display: its epoch and loss, or the documents of the page in flight."""
    detail = (job.result or {}).get("progress") if isinstance(job.result, dict) else None
    if job.status != "running" or not isinstance(detail, dict):
        return None
    parts = []
    if detail.get("trial"):
        parts.append(f"trial {detail['trial']}/{detail.get('trials', '?')}")
    if detail.get("epoch"):
        parts.append((f"{detail['phase']} " if detail.get("phase") else "") + f"epoch {detail['epoch']}/{detail.get('epochs', '?')}")
    if detail.get("loss") is not None:
        parts.append(f"loss {float(detail['loss']):.4f}")
    if detail.get("inflight"):
        parts.append(f"{detail['inflight']} documents of the next page done")
    return ", ".join(parts) or None


def job_item(job, now: datetime | None = None) -> dict[str, Any]:
    """``job_json`` plus ``collection`` and ``model`` (from its params), ``seconds`` (ran for), ``rate`` (units
    per second), ``unit``, ``error_line``, ``finished`` and ``shown`` (the display strings)."""
    item = job_json(job)
    seconds = elapsed(job.started_at, job.finished_at, now)
    unit = unit_of(job)
    done, total = job.progress_done or 0, job.progress_total
    rate = done / seconds if seconds and done else None
    percent = min(100.0, 100.0 * done / total) if total else (100.0 if job.status == "succeeded" else None)
    progress = f"{done:,} / {total:,} {unit}" if total else f"{done:,} {unit}"
    if percent is not None and total:
        progress += f" ({percent:.0f}%)"
    params = job.params if isinstance(job.params, dict) else {}
    item.update({
        "collection": params.get("collection"), "model": params.get("model") or params.get("model_name"),
        "seconds": seconds, "rate": rate, "unit": unit, "error_line": first_line(job.error),
        "finished": job.status in FINISHED,
        "shown": {"progress": progress, "percent": percent, "duration": duration_text(seconds),
                  "rate": f"{rate:,.1f} {unit}/s" if rate else "-", "detail": detail_text(job),
                  "attempts": f"{job.attempt}/{job.max_attempts}"},
    })
    return item
