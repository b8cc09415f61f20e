"""The pipelined bulk path: stages overlap, pages commit in order, any stage's error stops them all within a page,
and a pipelined job writes exactly the rows the serial one does (SQLite and PostgreSQL)."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from db import repo
from db.session import session_factory_for
from helpers import TINY_OPTIONS, load_documents, sentiment_rows
from worker import jobs
from worker.client import submit_classification, submit_training
from worker.errors import Cancelled, LeaseLost
from worker.jobs.pipeline import run_pipeline


def _pages(n, log=None):
    for i in range(n):
        if log is not None:
            log.append(("read", i))
        yield [i], i, None


class Trace:
    """The stages of a run_pipeline call, recording what ran and how many pages were in flight at most."""

    def __init__(self, fail_at=None, fail_in=None, error=RuntimeError("boom"), forward_seconds=0.0):
        self.log, self.committed, self.lock = [], [], threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.fail_at, self.fail_in, self.error, self.forward_seconds = fail_at, fail_in, error, forward_seconds

    def _maybe_fail(self, stage, page):
        if stage == self.fail_in and page[0] == self.fail_at:
            raise self.error

    def prepare(self, page):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._maybe_fail("prepare", page)
        return page[0] * 10

    def forward(self, item, prepared):
        time.sleep(self.forward_seconds)
        self._maybe_fail("forward", item[0])
        self.log.append(("forward", item[0][0]))
        return prepared + 1

    def commit(self, item, result):
        time.sleep(0.001 * (item[0][0] % 3))  # uneven commits: the order must still hold
        self._maybe_fail("commit", item[0])
        self.committed.append((item[0][0], result))
        with self.lock:
            self.in_flight -= 1

    def run(self, n, depth=2, pages=None):
        run_pipeline(pages if pages is not None else _pages(n, self.log), self.prepare, self.forward, self.commit,
                     depth=depth)


def test_every_page_is_committed_once_in_order_with_the_result_of_its_own_forward_pass():
    trace = Trace()
    trace.run(50)
    assert trace.committed == [(i, i * 10 + 1) for i in range(50)]


def test_empty_pages_are_skipped_and_an_empty_walk_commits_nothing():
    trace = Trace()
    trace.run(0, pages=iter([([], 1, None), ([7], 2, None), ([], 3, None)]))
    assert trace.committed == [(7, 71)]
    trace = Trace()
    trace.run(0)
    assert trace.committed == []


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_pages_in_flight_stay_bounded_by_the_queue_depth_however_slow_the_model(depth):
    trace = Trace(forward_seconds=0.01)
    trace.run(30, depth=depth)
    # A page read but not committed: one being prepared, `depth` queued, one in the forward pass, `depth`
    # finished, one being committed.
    assert 2 <= trace.most_in_flight <= 2 * depth + 3
    assert len(trace.committed) == 30


@pytest.mark.parametrize("stage", ["prepare", "forward", "commit"])
@pytest.mark.parametrize("error", [RuntimeError("boom"), LeaseLost("job 1 attempt 1 no longer owns the job"),
                                   Cancelled("cancelled on request")])
def test_an_error_in_any_stage_stops_every_stage_within_a_page_and_is_raised_to_the_caller(stage, error):
    trace = Trace(fail_at=10, fail_in=stage, error=error, forward_seconds=0.002)
    with pytest.raises(type(error)) as raised:
        trace.run(1000)
    assert raised.value is error
    committed = [page for page, _ in trace.committed]
    assert committed == list(range(len(committed)))  # in order, no gap
    assert len(committed) <= 10 if stage != "prepare" else len(committed) < 10
    read = [i for what, i in trace.log if what == "read"]
    forwarded = [i for what, i in trace.log if what == "forward"]
    assert max(read) <= 10 + 2 * 2 + 3 and max(forwarded, default=0) <= 10 + 2 + 1
    assert not [t for t in threading.enumerate() if t.name in ("bulk-read", "bulk-write")]


@pytest.mark.parametrize("fail_in", [None, "forward"])
def test_the_objects_older_than_the_run_are_frozen_out_of_the_collector_while_it_runs_and_given_back(fail_in):
    import gc

    seen = []
    trace = Trace(fail_at=3, fail_in=fail_in)
    forward = trace.forward
    trace.forward = lambda item, prepared: seen.append(gc.get_freeze_count()) or forward(item, prepared)
    before = gc.get_freeze_count()
    try:
        trace.run(5)
    except RuntimeError:
        assert fail_in == "forward"
    assert seen and min(seen) > before == 0
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_its_objects_itself_keeps_them_frozen():
    import gc

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        Trace().run(3)
        assert gc.get_freeze_count() >= frozen > 0
    finally:
        gc.unfreeze()


def test_a_slow_stage_overlaps_the_others():
    """Reading and committing run while the forward pass sleeps (as a GPU kernel does, without the GIL)."""
    def slow_prepare(page):
        time.sleep(0.02)
        return page[0]

    def slow_commit(item, result):
        time.sleep(0.02)

    def slow_forward(item, prepared):
        time.sleep(0.02)
        return prepared

    started = time.perf_counter()
    run_pipeline(_pages(20), slow_prepare, slow_forward, slow_commit)
    assert time.perf_counter() - started < 20 * 0.06 * 0.7  # serial would take 1.2 s


def _classify_rows(url, settings, collection):
    handle = submit_classification(collection, "senti:1", settings=settings, enqueue=False)
    assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.succeeded
    assert handle.snapshot().progress_done == handle.snapshot().progress_total
    with session_factory_for(url).begin() as s:
        return handle, s.execute(text(
            "SELECT d.external_id, p.label, p.score, p.scores, p.error FROM predictions p "
            "JOIN documents d ON d.id = p.document_id WHERE p.job_id = :job ORDER BY d.external_id"),
            {"job": handle.id}).all()


def test_a_pipelined_job_writes_exactly_the_rows_of_the_serial_one(any_db_url, make_settings, tiny_base_model):
    settings = make_settings(any_db_url)
    load_documents(any_db_url, "train", sentiment_rows(48))
    handle = submit_training("train", tiny_base_model, model_name="senti", options=TINY_OPTIONS, settings=settings,
                             enqueue=False)
    assert jobs.run_training(handle.id, settings=settings) is jobs.Outcome.succeeded
    rows = sentiment_rows(70, prefix="new") + [
        {"external_id": "empty", "text": "  "}, {"external_id": "huge", "text": "x" * 3000},
        {"external_id": "long", "text": "great film " * 150}]
    for collection in ("serial", "piped"):
        load_documents(any_db_url, collection, rows)
    serial_settings = make_settings(any_db_url, max_text_chars=2000, classify_pipeline=False, classify_chunk_size=8)
    piped_settings = make_settings(any_db_url, max_text_chars=2000, classify_pipeline=True, classify_chunk_size=8)
    _, serial = _classify_rows(any_db_url, serial_settings, "serial")
    piped_job, piped = _classify_rows(any_db_url, piped_settings, "piped")
    assert len(piped) == 73 and piped == serial
    assert {r.external_id: r.error for r in piped if r.error} == {
        "empty": "text is empty or whitespace", "huge": "text is longer than 2000 characters (3000)"}
    with session_factory_for(any_db_url).begin() as s:
        job = repo.get_job(s, piped_job.id)
        assert job.result["documents"] == 73 and job.cursor is not None


def test_a_pipelined_job_whose_lease_is_taken_over_stops_and_writes_nothing_more(
        any_db_url, make_settings, tiny_base_model, monkeypatch):
    """The writer's fence fails once another attempt owns the job: the job's thread sees LeaseLost (outcome lost)."""
    from worker.jobs import classification

    settings = make_settings(any_db_url)
    load_documents(any_db_url, "train", sentiment_rows(48))
    handle = submit_training("train", tiny_base_model, model_name="senti", options=TINY_OPTIONS, settings=settings,
                             enqueue=False)
    assert jobs.run_training(handle.id, settings=settings) is jobs.Outcome.succeeded
    load_documents(any_db_url, "new", sentiment_rows(200, prefix="new"))
    job = submit_classification("new", "senti:1", settings=settings, enqueue=False)
    real_commit = classification._commit_page
    pages = []

    def commit_then_lose(ctx, *args):
        real_commit(ctx, *args)
        pages.append(args[1])
        if len(pages) == 3:  # another worker claims the job (a new attempt) after the third page
            with session_factory_for(any_db_url).begin() as s:
                s.execute(text("UPDATE jobs SET attempt = attempt + 1 WHERE id = :id"), {"id": job.id})

    monkeypatch.setattr(classification, "_commit_page", commit_then_lose)
    assert jobs.run_classification(job.id, settings=settings) is jobs.Outcome.lost
    with session_factory_for(any_db_url).begin() as s:
        assert s.execute(text("SELECT count(*) FROM predictions WHERE job_id = :id"), {"id": job.id}).scalar() == 48
    assert len(pages) == 3
