"""Screenshots of the web view for the README, from real jobs: docs/ui-jobs.png, ui-version.png, ui-compare.png.

    .venv/bin/python docs/screenshots.py          # a few minutes on a CPU; needs Debian's chromium

In a temporary SQLite database: Rotten Tomatoes snippets imported, two versions of all-MiniLM-L6-v2 fine-tuned
(one epoch, then two), both promoted in turn, both classify and are evaluated on a labelled holdout, and a
larger bulk job runs while the jobs page is photographed. `bertjobs ui` serves the pages, as a user starts it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OUT = ROOT / "docs"
VIEWPORT = {"width": 1280, "height": 820}


def _environment(folder: Path) -> dict[str, str]:
    return {"BERTJOBS_DATABASE_URL": f"sqlite:///{folder / 'bertjobs.db'}", "BERTJOBS_DATA_DIR": str(folder),
            "BERTJOBS_MODEL_STORE": str(folder / "models"), "BERTJOBS_CLASSIFY_CHUNK_SIZE": "64"}


def _jobs_before_the_photo(env: dict[str, str]) -> None:
    """Import, train twice, promote, classify and evaluate: what an operator's week leaves behind."""
    os.environ.update(env)
    from db import migrate, repo
    from db.session import session_factory_for
    from worker import jobs
    from worker.client import submit_classification, submit_evaluation, submit_training
    from worker.config import get_settings
    from worker.demo import base_model_path, load_corpus
    from worker.jobs.evaluation import run_evaluation

    get_settings.cache_clear()
    settings = get_settings()
    url = settings.resolved_database_url
    migrate.upgrade(url)
    rows = [{"external_id": r["id"], "text": r["text"], "label": r["category"]} for r in load_corpus()]
    with session_factory_for(url).begin() as s:
        repo.upsert_documents(s, "reviews", rows[:800])
        repo.upsert_documents(s, "holdout", rows[800:1400])
        repo.upsert_documents(s, "inbox", [{**r, "label": None} for r in rows[1400:6400]])
    for epochs in (1, 2):
        handle = submit_training("reviews", base_model_path(), model_name="sentiment", enqueue=False,
                                 options={"epochs": epochs, "max_length": 64, "batch_size": 16})
        jobs.run_training(handle.id, settings=settings)
        with session_factory_for(url).begin() as s:
            repo.set_alias(s, repo.resolve_model_version(s, f"sentiment:{epochs}"), "production", actor="ops@nightly")
    for ref in ("sentiment:1", "sentiment:2"):
        jobs.run_classification(submit_classification("holdout", ref, enqueue=False).id, settings=settings)
        run_evaluation(submit_evaluation("holdout", ref, enqueue=False).id, settings=settings)
    with session_factory_for(url).begin() as s:  # a job row another application wrote, naming no real model
        failing = repo.create_job(s, "classify", {"collection": "inbox", "model": "sentiment:9"}, max_attempts=3)[0].id
    jobs.run_classification(failing, settings=settings)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "ui", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/api/jobs", timeout=2).status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("bertjobs ui did not answer")


def _running_job(env: dict[str, str]) -> threading.Thread:
    """The nightly-style bulk job over the inbox, run here in a thread while the jobs page is photographed."""
    from worker import jobs
    from worker.client import submit_classification
    from worker.config import get_settings

    handle = submit_classification("inbox", "sentiment@production", enqueue=False)
    thread = threading.Thread(target=jobs.run_classification, args=(handle.id,),
                              kwargs={"settings": get_settings()}, daemon=True)
    thread.start()
    return thread


def _photos(base: str, env: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        thread = _running_job(env)
        page.goto(base + "/jobs")
        page.wait_for_function("() => [...document.querySelectorAll('[data-f=progress]')].some("
                               "e => /\\((2|3|4|5)\\d%\\)/.test(e.textContent))", timeout=600_000)
        page.screenshot(path=str(OUT / "ui-jobs.png"))
        page.goto(base + "/models/sentiment/2")
        page.screenshot(path=str(OUT / "ui-version.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": 1060})
        page.goto(base + "/compare?a=sentiment:1&b=sentiment:2&collection=holdout")
        page.screenshot(path=str(OUT / "ui-compare.png"))
        browser.close()
        thread.join()


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bertjobs-screenshots-"))
    env = _environment(folder)
    try:
        _jobs_before_the_photo(env)
        port = free_port()
        server = _serve(env, port)
        try:
            _photos(f"http://127.0.0.1:{port}", env)
        finally:
            server.terminate()
            server.wait(timeout=15)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for name in ("ui-jobs.png", "ui-version.png", "ui-compare.png"):
        print(f"{OUT / name}: {(OUT / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
