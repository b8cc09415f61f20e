"""Job execution: plain functions that claim a job, run it and record its outcome, callable without Celery.

They own the transaction boundaries: reads in short transactions, results committed together with the job's
progress in one fenced transaction per page (classification) or at the end (training, evaluation).

- runtime.py: the claim, the heartbeat, the JobContext a job body gets, and how an error ends an attempt;
- training.py, classification.py, evaluation.py: one job kind each; paging.py: keyset pages of documents;
- inline.py: the embedded runner (a job and its shards in this process).
"""
from worker.jobs.classification import run_classification
from worker.jobs.evaluation import run_evaluation
from worker.jobs.inline import run_inline
from worker.jobs.paging import walk_pages
from worker.jobs.runtime import (JobContext, Outcome, Publish, ReportProgress, default_owner, log, one_line,
                                 retry_countdown)
from worker.jobs.training import run_training

__all__ = ["JobContext", "Outcome", "Publish", "ReportProgress", "default_owner", "log", "one_line", "retry_countdown",
           "run_classification",
           "run_evaluation", "run_inline", "run_training", "walk_pages"]
