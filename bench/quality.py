"""The quality bar: all-MiniLM-L6-v2 on the whole Rotten Tomatoes corpus, stratified 80/20, default recipe.

    python bench/quality.py                    # the default recipe, about 30 minutes on 2 CPU cores
    python bench/quality.py --option epochs=2  # any training option, as the client takes them

It runs the real training job (import into a fresh SQLite database, a job row, the same function a worker
runs) so the figure includes the data check and the split a user gets. It prints the validation accuracy,
macro-F1, wall time, the data-check summary, what the job recorded beside them (the TF-IDF + logistic-regression
baseline on the same split and whether the model is clearly better, the calibration, the trust warnings) and
a JSON line.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import emit_json  # noqa: I001  (sets up the path and offline mode)

from db import migrate
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_training
from worker.config import Settings
from worker.demo import _write_jsonl, base_model_path, load_corpus, show_job_log
from worker.importer import import_file

def print_scorecard(metrics: dict, wall: float) -> None:
    """What the job recorded beside the scores: the TF-IDF+LR baseline on the same split, calibration, warnings."""
    baseline = metrics.get("tfidf_baseline") or {}
    if "accuracy" in baseline:
        print(f"TF-IDF+LR (same split): validation accuracy {baseline['accuracy']:.4f}  "
              f"macro-F1 {baseline['macro_f1']:.4f}  fit {baseline['fit_seconds']:.1f} s "
              f"({100 * baseline['fit_seconds'] / wall:.1f}% of the job's wall time)")
    print("baseline: " + (metrics.get("tfidf_comparison") or {}).get("line", "not recorded"))
    calibration = metrics.get("calibration")
    if calibration:
        print(f"calibration: temperature {calibration['temperature']:.3f}, ECE {calibration['ece_before']:.4f} -> "
              f"{calibration['ece_after']:.4f} (on the validation split it was fitted on)")
    for warning in metrics.get("trust_warnings") or []:
        print(f"trust: {warning}")


def _option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    return name, json.loads(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="base model (default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--docs", type=int, default=0, help="use only the first N texts (0: all 12,808)")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="NAME=JSON",
                        help="a training option, e.g. epochs=2 or learning_rate=3e-5 (repeatable)")
    parser.add_argument("--long-docs", action="store_true",
                        help="then the long-document section: TF-IDF+LR, truncation and the recommended setting "
                             "side by side (bench/quality_long.py)")
    args = parser.parse_args()

    show_job_log()
    rows = load_corpus()
    rows = rows[: args.docs] if args.docs else rows
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/quality.db")
        url = settings.resolved_database_url
        migrate.upgrade(url)
        sessions = session_factory_for(url)
        path = Path(tmp) / "rt.jsonl"
        _write_jsonl(path, rows)
        import_file(sessions, path, "rt", max_chars=100_000)
        options = dict(args.option)
        started = time.perf_counter()
        handle = submit_training("rt", args.model or base_model_path(), model_name="rt-quality", options=options,
                                 enqueue=False, settings=settings)
        jobs.run_inline(handle.id, "train", settings=settings)
        wall = time.perf_counter() - started
        snap = handle.snapshot()
        if snap.status != "succeeded":
            raise SystemExit(f"training job {snap.status}: {snap.error}")
        with sessions.begin() as s:
            from db.models import ModelVersion

            mv = s.get(ModelVersion, snap.result["model_version_id"])
            metrics, lineage, hyper = mv.metrics, mv.lineage, mv.hyperparameters
    check = lineage["data_check"]
    print(f"texts {len(rows)}  train {lineage['train_size']}  validation {lineage['val_size']}")
    print(f"recipe {json.dumps(hyper, sort_keys=True)}")
    for h in metrics["history"]:
        print(f"  epoch {h['epoch']}: train loss {h['train_loss']:.4f}  validation accuracy {h['accuracy']:.4f}  "
              f"macro-F1 {h['macro_f1']:.4f}  ({h['seconds']:.0f} s)")
    print(f"validation accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
          f"best epoch {metrics['best_epoch']}  wall {wall:.0f} s")
    print_scorecard(metrics, wall)
    print("data check: " + "; ".join(check.get("warnings") or ["no warnings"]))
    emit_json("quality", {"texts": len(rows), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                          "best_epoch": metrics["best_epoch"], "wall_seconds": wall, "hyperparameters": hyper,
                          "data_check": {k: v for k, v in check.items() if k != "warnings"},
                          "data_check_warnings": check.get("warnings"),
                          "tfidf_baseline": metrics.get("tfidf_baseline"),
                          "calibration": {k: v for k, v in (metrics.get("calibration") or {}).items()
                                          if not k.startswith("bins")},
                          "trust_warnings": metrics.get("trust_warnings")})
    if args.long_docs:
        from quality_long import long_docs_section

        emit_json("quality_long", long_docs_section())


if __name__ == "__main__":
    main()
