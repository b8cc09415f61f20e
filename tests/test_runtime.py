"""The job runtime ends an attempt by the kind of error its body raised (worker/errors.py), on both databases."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from db import repo
from db.models import JobKind
from db.names import InvalidName
from db.session import session_factory_for
from helpers import insert_job
from worker.errors import (
    ErrorKind,
    InvalidJob,
    JobFailed,
    PermanentError,
    SystemicError,
    TransientError,
    kind_of,
)
from worker.jobs import Outcome
from worker.jobs.runtime import run_attempt
from worker.ml.errors import CorruptArtifact, InvalidTrainingData


def _dropped_connection() -> DBAPIError:
    return DBAPIError("SELECT 1", {}, ConnectionResetError("server closed the connection"), connection_invalidated=True)


@pytest.mark.parametrize("exc, kind", [
    (InvalidJob("no such model"), ErrorKind.permanent),
    (InvalidName("bad name"), ErrorKind.permanent),
    (InvalidTrainingData("one class"), ErrorKind.permanent),
    (CorruptArtifact("hash mismatch"), ErrorKind.permanent),
    (JobFailed("job 1 failed"), ErrorKind.permanent),
    (TransientError("broker away"), ErrorKind.transient),
    (OperationalError("SELECT 1", {}, Exception("could not connect")), ErrorKind.transient),
    (_dropped_connection(), ErrorKind.transient),
    (SystemicError("every document failed the same way"), ErrorKind.systemic),
    (RuntimeError("CUDA error: an illegal memory access"), ErrorKind.unexpected),
    (ValueError("connection refused"), ErrorKind.unexpected),  # the message never decides
])
def test_an_errors_kind_is_read_from_its_type(exc, kind):
    assert kind_of(exc) is kind


def test_every_kind_has_one_base_class_under_bertjobs_error():
    assert issubclass(InvalidJob, PermanentError) and issubclass(JobFailed, PermanentError)
    assert not issubclass(TransientError, PermanentError) and not issubclass(SystemicError, TransientError)


def _attempt(url, make_settings, job_id, exc):
    def body(ctx):
        raise exc

    return run_attempt(job_id, JobKind.classify, body, make_settings(url), "test-owner")


def test_a_permanent_error_fails_the_job_at_once_with_its_message(any_db_url, make_settings):
    job_id = insert_job(any_db_url, "classify", {"collection": "c", "model": "m"})

    assert _attempt(any_db_url, make_settings, job_id, InvalidTrainingData("only one class")) is Outcome.failed

    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.attempt, job.error) == ("failed", 1, "only one class")


def test_a_transient_error_puts_the_job_back_until_its_attempts_are_spent(any_db_url, make_settings):
    job_id = insert_job(any_db_url, "classify", {"collection": "c", "model": "m"})
    error = OperationalError("UPDATE jobs", {}, Exception("server closed the connection"))

    outcomes = [_attempt(any_db_url, make_settings, job_id, error) for _ in range(3)]

    assert outcomes == [Outcome.retry, Outcome.retry, Outcome.dead]
    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.attempt) == ("dead", 3)
        assert job.error.startswith("dead after 3 attempts in a row without progress (3 in all); "
                                    "last error: OperationalError")


def test_attempts_that_made_progress_do_not_spend_the_budget(any_db_url, make_settings):
    """Interrupted 6 times with a committed page in between (max_attempts 3): still queued; then 3 attempts in a
    row without progress end it dead, and the retry delay grows with them."""
    from worker.jobs.runtime import retry_countdown

    job_id = insert_job(any_db_url, "classify", {"collection": "c", "model": "m"})
    settings = make_settings(any_db_url, retry_delay_seconds=2)
    error = OperationalError("UPDATE jobs", {}, Exception("terminating connection due to administrator command"))

    def page_then_error(ctx):
        with ctx.sessions.begin() as s:
            ctx.fenced(s)
            repo.set_progress(s, ctx.job_id, ctx.attempt, done=ctx.attempt * 10, cursor=ctx.attempt * 10)
        raise error

    def error_only(ctx):
        raise error

    progress = [run_attempt(job_id, JobKind.classify, page_then_error, settings, "w") for _ in range(6)]
    assert progress == [Outcome.retry] * 6
    assert retry_countdown(job_id, settings) == 2
    stuck = [run_attempt(job_id, JobKind.classify, error_only, settings, "w") for _ in range(2)]
    assert stuck == [Outcome.retry, Outcome.retry]
    assert retry_countdown(job_id, settings) == 4
    assert run_attempt(job_id, JobKind.classify, error_only, settings, "w") is Outcome.dead
    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.attempt, job.progress_done) == ("dead", 9, 60)
        assert job.error.startswith("dead after 3 attempts in a row without progress (9 in all)")


def test_a_requeued_job_says_which_attempt_failed_and_why(any_db_url, make_settings):
    job_id = insert_job(any_db_url, "classify", {"collection": "c", "model": "m"})

    assert _attempt(any_db_url, make_settings, job_id, SystemicError("all 64 documents failed")) is Outcome.retry

    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.error) == ("queued", "attempt 1 failed, will retry: SystemicError: all 64 documents failed")


def test_a_storage_hiccup_while_reading_an_artifact_is_transient_but_a_bad_hash_or_missing_file_is_not(
        minilm_artifact, monkeypatch, tmp_path):
    import builtins
    import errno

    from worker.ml.artifact import verify_artifact
    from worker.ml.errors import StorageUnavailable

    path, sha = minilm_artifact
    with pytest.raises(CorruptArtifact) as bad_hash:
        verify_artifact(path, "0" * 64)
    with pytest.raises(CorruptArtifact) as missing:
        verify_artifact(tmp_path, sha)
    assert kind_of(bad_hash.value) is kind_of(missing.value) is ErrorKind.permanent
    real_open = builtins.open

    def nfs_hiccup(file, *args, **kwargs):
        if str(file).endswith("model.safetensors"):
            raise OSError(errno.EIO, "Input/output error", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", nfs_hiccup)
    with pytest.raises(StorageUnavailable) as hiccup:
        verify_artifact(path, sha)
    assert kind_of(hiccup.value) is ErrorKind.transient and "Input/output error" in str(hiccup.value)
