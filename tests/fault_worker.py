"""A real Celery worker with two faults planted, for the fault-injection tests (never used in production).

- a classification of the collection ``kills-its-worker`` SIGKILLs the process running it, every attempt;
- a text containing ``POISON`` makes the model's forward pass raise, as a corrupt input might;
- with ``BERTJOBS_FAULT_KILL_IN=read|forward|commit`` the process SIGKILLs itself in that stage of a pipelined bulk
  job, once ``BERTJOBS_FAULT_KILL_AFTER`` pages went through it, while other pages are in flight; only once per
  ``BERTJOBS_FAULT_KILL_ONCE`` (a file it creates first), so the next attempt runs clean.
- a classification of the collection ``preempted`` SIGKILLs its process after every second page it commits
  (a spot instance lost again and again, with progress in between);
- with ``BERTJOBS_TEST_BROKEN_MODEL`` set, every forward pass raises RuntimeError with that message (a broken
  model, a poisoned CUDA context);
- once the file named by ``BERTJOBS_TEST_FREEZE_FLAG`` exists, the next page write removes it and SIGSTOPs its
  process inside the page transaction, holding the job's row lock (a frozen VM, a long GC pause).

Run as ``python tests/fault_worker.py [celery worker options]``; the prefork children inherit the patches.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import repo  # noqa: E402
from worker.jobs import classification  # noqa: E402
from worker.ml import predict  # noqa: E402

_classify = classification._classify
_commit_page = classification._commit_page
_upsert_predictions = repo.upsert_predictions
_logits = predict.Classifier._logits


def classify_or_die(ctx):
    if ctx.params.get("collection") == "kills-its-worker":
        os.kill(os.getpid(), signal.SIGKILL)
    return _classify(ctx)


def commit_then_die_every_second_page(ctx, *args, **kwargs):
    _commit_page(ctx, *args, **kwargs)
    if ctx.params.get("collection") == "preempted":
        ctx.pages_committed = getattr(ctx, "pages_committed", 0) + 1
        if ctx.pages_committed == 2:
            os.kill(os.getpid(), signal.SIGKILL)


def upsert_then_freeze(session, rows):
    written = _upsert_predictions(session, rows)
    flag = os.environ.get("BERTJOBS_TEST_FREEZE_FLAG")
    if flag and os.path.exists(flag):
        os.remove(flag)
        os.kill(os.getpid(), signal.SIGSTOP)
    return written


def logits_or_raise(self, token_ids, batches):
    if os.environ.get("BERTJOBS_TEST_BROKEN_MODEL"):
        raise RuntimeError(os.environ["BERTJOBS_TEST_BROKEN_MODEL"])
    for batch in batches:
        for i in batch:
            if "poison" in self.tokenizer.decode(token_ids[i]):
                raise RuntimeError("the model choked on this input")
    return _logits(self, token_ids, batches)


def _kill_in(stage: str, real):
    """``real``, wrapped to SIGKILL the process on the call after BERTJOBS_FAULT_KILL_AFTER calls in ``stage``."""
    calls = []

    def wrapped(*args, **kwargs):
        flag = Path(os.environ["BERTJOBS_FAULT_KILL_ONCE"])
        if len(calls) >= int(os.environ.get("BERTJOBS_FAULT_KILL_AFTER", "3")) and not flag.exists():
            flag.write_text(stage)
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(1)
        return real(*args, **kwargs)

    return wrapped


classification._classify = classify_or_die
classification._commit_page = commit_then_die_every_second_page
repo.upsert_predictions = upsert_then_freeze
predict.Classifier._logits = logits_or_raise
_stage = os.environ.get("BERTJOBS_FAULT_KILL_IN")
if _stage == "read":
    predict.Classifier.prepare = _kill_in(_stage, predict.Classifier.prepare)
elif _stage == "forward":
    predict.Classifier.run = _kill_in(_stage, predict.Classifier.run)
elif _stage == "commit":
    classification._commit_page = _kill_in(_stage, classification._commit_page)

if __name__ == "__main__":
    from worker.celery_app import app

    app.worker_main(["worker", *sys.argv[1:]])
