"""The web view in a real browser: Debian's chromium, driven by Playwright, against `bertjobs ui` started as a
user starts it. A person's checks: the jobs page shows a running job's progress move (a real worker runs it),
a model version shows its confusion matrix, two versions compare on a labelled collection.

Without chromium or Playwright these skip on a laptop and fail in CI (.ci/run installs chromium).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from helpers import free_port, load_documents, sentiment_rows
from workers import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install playwright; no `playwright install` needed)")
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@contextmanager
def ui_server(env: dict[str, str], log_dir: Path):
    """``bertjobs ui`` in a process of its own, on a free loopback port; yields its base URL."""
    port = free_port()
    with open(log_dir / "ui.log", "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "ui", "--port", str(port)], cwd=ROOT,
                                env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (log_dir / "ui.log").read_text()
        try:
            return urllib.request.urlopen(base + "/api/jobs", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(answers, timeout=60, interval=0.3, what="bertjobs ui answering")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


_DONE = """sel => {
    const m = document.querySelector(sel + ' [data-f=progress]').textContent.match(/^([\\d,]+) \\/ ([\\d,]+)/);
    return m ? [+m[1].replace(/,/g, ''), +m[2].replace(/,/g, '')] : null;
}"""


def test_the_jobs_page_shows_a_running_jobs_progress_move_without_a_reload(
        worker_env, workers, service_settings, minilm_artifact, rt_rows, browser, tmp_path):
    from db import repo
    from db.session import session_factory_for
    from worker.client import cancel, submit_classification

    url = worker_env["BERTJOBS_DATABASE_URL"]
    load_documents(url, "inbox", rt_rows[:2000])
    path, sha = minilm_artifact
    with session_factory_for(url).begin() as s:
        repo.register_model_version(s, name="rt", base_model="all-MiniLM-L6-v2", status="ready",
                                    artifact_path=str(path), artifact_sha256=sha, labels=["fresh", "rotten"],
                                    hyperparameters={}, metrics={}, lineage={})
    handle = submit_classification("inbox", "rt:1", settings=service_settings)
    row = f'[data-job="{handle.id}"]'
    with ui_server(worker_env, tmp_path) as base:
        page = browser.new_page()
        page.goto(base + "/jobs")
        assert page.text_content(f"{row} [data-f=status]") == "queued"
        page.evaluate("window.stillTheSamePage = true")
        workers.start("w1")
        done = "([done, total]) => done > 0 && done < total"
        page.wait_for_function(f"sel => ({done})(({_DONE})(sel) || [0, 0])", arg=row, timeout=600_000)
        first = page.evaluate(f"sel => ({_DONE})(sel)", row)
        bar = page.eval_on_selector(f"{row} [data-f=bar] span", "e => parseFloat(e.style.width)")
        assert 0 < bar < 100 and page.text_content(f"{row} [data-f=status]") == "running"
        page.wait_for_function(f"([sel, before]) => ({_DONE})(sel)[0] > before", arg=[row, first[0]], timeout=600_000)
        cancel(handle.id, settings=service_settings)  # the page never changes a job; the CLI and client do
        page.wait_for_function("sel => ['cancelled', 'succeeded'].includes("
                               "document.querySelector(sel + ' [data-f=status]').textContent)", arg=row, timeout=600_000)
        final = handle.snapshot()
        assert page.text_content(f"{row} [data-f=status]") == final.status
        assert page.get_attribute(f"{row} [data-f=bar]", "class") == ("bar done" if final.status == "succeeded"
                                                                      else "bar bad")
        assert page.evaluate("window.stillTheSamePage") is True
        page.close()


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, tiny_base_model):
    """A SQLite database with two trained versions (a weak and a good one), both of which classified and were
    evaluated on a labelled collection: what `bertjobs train`, `classify` and `evaluate` leave behind."""
    from db.migrate import upgrade
    from worker import jobs
    from worker.client import submit_classification, submit_evaluation, submit_training
    from worker.config import Settings
    from worker.jobs.evaluation import run_evaluation

    folder = tmp_path_factory.mktemp("web-two-versions")
    url = f"sqlite:///{folder / 'bertjobs.db'}"
    upgrade(url)
    settings = Settings(database_url=url, data_dir=folder / "data", model_store=folder / "models",
                        classify_chunk_size=16, classify_batch_size=8)
    load_documents(url, "reviews", sentiment_rows(48))
    load_documents(url, "holdout", sentiment_rows(48, prefix="held"))
    for options in ({"epochs": 1, "batch_size": 4, "learning_rate": 1e-6, "max_length": 32, "seed": 7},
                    {"epochs": 6, "batch_size": 4, "learning_rate": 2e-3, "max_length": 32, "seed": 7}):
        handle = submit_training("reviews", tiny_base_model, model_name="senti", options=options, settings=settings,
                                 enqueue=False)
        assert jobs.run_training(handle.id, settings=settings) is jobs.Outcome.succeeded, handle.snapshot().error
    for ref in ("senti:1", "senti:2"):
        handle = submit_classification("holdout", ref, settings=settings, enqueue=False)
        assert jobs.run_classification(handle.id, settings=settings) is jobs.Outcome.succeeded
        handle = submit_evaluation("holdout", ref, settings=settings, enqueue=False)
        assert run_evaluation(handle.id, settings=settings) is jobs.Outcome.succeeded
    env = {**os.environ, "BERTJOBS_DATABASE_URL": url, "BERTJOBS_DATA_DIR": str(folder / "data"),
           "BERTJOBS_MODEL_STORE": str(folder / "models")}
    with ui_server(env, folder) as base:
        yield url, base


def test_a_model_version_page_shows_its_confusion_matrix_with_the_diagonal_told_apart(two_versions, browser):
    from db import repo
    from db.session import session_factory_for

    url, base = two_versions
    with session_factory_for(url).begin() as s:
        matrix = repo.resolve_model_version(s, "senti:2").metrics["confusion_matrix"]
    page = browser.new_page()
    page.goto(base + "/models")
    page.click("text=senti:2")
    page.wait_for_url("**/models/senti/2")
    assert page.is_visible("table.cm") and page.is_visible("text=Confusion matrix")
    hits = page.locator("table.cm td.hit").all_text_contents()
    assert [int(n) for n in hits] == [matrix[i][i] for i in range(len(matrix))]
    colour = "e => getComputedStyle(e).backgroundColor"
    hit, miss = page.eval_on_selector("table.cm td.hit", colour), page.eval_on_selector("table.cm td.miss", colour)
    assert hit != miss
    assert page.locator("#curves svg").count() == 2 and page.is_visible("#per-class table")
    page.close()


def test_two_versions_compare_side_by_side_with_their_disagreements(two_versions, browser):
    from db.session import session_factory_for

    url, base = two_versions
    with session_factory_for(url).begin() as s:
        disagreeing = s.scalar(text("SELECT count(*) FROM version_disagreements WHERE collection = 'holdout' "
                                    "AND model_name = 'senti' AND version_a = 1 AND version_b = 2"))
        accuracies = s.execute(text("SELECT accuracy FROM evaluations ORDER BY model_version_id")).scalars().all()
    assert disagreeing > 0  # the weak version guesses
    page = browser.new_page()
    page.goto(base + "/compare")
    page.fill("input[name=a]", "senti:1")
    page.fill("input[name=b]", "senti:2")
    page.fill("input[name=collection]", "holdout")
    page.click("button:text('Compare')")
    page.wait_for_selector("table.compare")
    cells = page.locator("table.compare tbody tr").first.locator("td").all_text_contents()
    assert cells[:2] == [f"{a:.4f}" for a in accuracies]
    assert page.is_visible(f"text={disagreeing} labelled differently")
    assert page.locator("table.disagreements tbody tr").count() == min(disagreeing, 50)
    page.close()
