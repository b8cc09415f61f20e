"""The web view's JSON API (/api/...), on SQLite and PostgreSQL: the CLI's shapes, filters, keyset pages,
and that nothing in it writes."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from db.models import Job, Prediction
from db.session import session_factory_for
from webdata import seed
from worker.cli import main

pytest.importorskip("starlette")
pytest.importorskip("httpx")


@pytest.fixture
def seeded(any_db_url, env_db):
    from starlette.testclient import TestClient

    from worker.web.app import create_app

    env_db(any_db_url)
    ids = seed(any_db_url)
    with TestClient(create_app()) as client:
        yield client, ids, any_db_url


def _cli_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_the_jobs_api_carries_the_cli_job_documents_and_adds_progress_for_display(seeded, capsys):
    client, ids, _ = seeded
    body = client.get("/api/jobs").json()
    cli = {job["id"]: job for job in _cli_json(capsys, ["jobs", "--json"])}
    assert [job["id"] for job in body["jobs"]] == sorted(cli, reverse=True)
    for job in body["jobs"]:
        assert {k: job[k] for k in cli[job["id"]]} == cli[job["id"]]
    running = next(job for job in body["jobs"] if job["id"] == ids["running"])
    assert running["shown"]["progress"] == "6 / 12 documents (50%)" and running["shown"]["percent"] == 50.0
    assert running["shown"]["attempts"] == "2/3" and running["rate"] > 0 and running["finished"] is False
    assert running["shown"]["detail"] == "3 documents of the next page done"
    failed = next(job for job in body["jobs"] if job["id"] == ids["failed"])
    assert failed["error_line"].startswith("model exploded") and "Traceback" not in failed["error_line"]


def test_jobs_filter_by_kind_status_collection_model_and_date(seeded):
    client, ids, _ = seeded

    def listed(query: str) -> set[int]:
        response = client.get("/api/jobs?" + query)
        assert response.status_code == 200, response.text
        return {job["id"] for job in response.json()["jobs"]}

    assert listed("kind=train") == {ids["t1"], ids["t2"], ids["queued"]}
    assert listed("status=running") == {ids["running"]}
    assert listed("collection=inbox") == {ids["nightly"], ids["running"], ids["failed"]}
    assert listed("model=senti") == {ids["t1"], ids["t2"], ids["nightly"], ids["running"], ids["failed"]}
    assert listed("model=senti:1") == {ids["running"]}
    assert listed("kind=classify&status=failed&collection=inbox") == {ids["failed"]}
    assert listed("from=2000-01-01&to=2999-12-31") == set(ids[k] for k in ("t1", "t2", "nightly", "running", "failed",
                                                                             "queued"))
    assert listed("to=2000-01-01") == set()


def test_jobs_come_in_keyset_pages_that_cover_every_job_once(seeded):
    client, ids, _ = seeded
    seen, before = [], ""
    while True:
        body = client.get(f"/api/jobs?limit=2{before}").json()
        seen += [job["id"] for job in body["jobs"]]
        assert len(body["jobs"]) <= 2
        if body["next_before"] is None:
            break
        before = f"&before={body['next_before']}"
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 6


def test_a_job_page_has_its_timeline_prediction_counts_and_failures(seeded):
    client, ids, _ = seeded
    nightly = client.get(f"/api/jobs/{ids['nightly']}").json()
    assert nightly["model"] == "senti:2" and nightly["predictions"] == {"classified": 11, "failed": 1}
    assert [f["error"] for f in nightly["failures"]] == ["empty text"]
    assert [e["what"] for e in nightly["timeline"]] == ["queued", "claimed", "succeeded"]
    running = client.get(f"/api/jobs/{ids['running']}").json()
    assert running["predictions"] == {"classified": 12, "failed": 0}
    assert "held by w1@host until" in [e["what"] for e in running["timeline"]]
    trained = client.get(f"/api/jobs/{ids['t2']}").json()
    assert [e["epoch"] for e in trained["epochs"]] == [1, 2, 3]


def test_models_and_a_version_are_the_cli_documents(seeded, capsys):
    client, ids, _ = seeded
    models = client.get("/api/models").json()["models"]
    assert [m["name"] for m in models] == ["senti"] and models[0]["aliases"] == {"production": "senti:2"}
    assert [(m["to"], m["from"], m["actor"]) for m in models[0]["alias_history"]] == [
        ("senti:2", "senti:1", "bob@host"), ("senti:1", None, "ann@host")]
    listed = {v["model"]: v for v in _cli_json(capsys, ["models", "list", "--json"])}
    for version in models[0]["versions"]:
        assert {k: version[k] for k in listed[version["model"]]} == listed[version["model"]]
        assert version["evaluation_count"] == 1
    shown = _cli_json(capsys, ["models", "show", "senti:2", "--json"])
    page = client.get("/api/models/senti/2").json()
    assert {k: page[k] for k in shown} == shown and page["versions"] == ["senti:1", "senti:2"]


def test_compare_gives_metrics_per_class_deltas_and_the_disagreements(seeded):
    client, ids, _ = seeded
    body = client.get("/api/compare?a=senti:1&b=senti@production&collection=inbox").json()
    assert body["models"] == {"a": "senti:1", "b": "senti:2"} and body["a"] is None  # evaluated on reviews only
    assert body["documents"] == 11 and body["disagreements"] == 3
    assert [d["document_id"] for d in body["examples"]] == [ids["inbox_docs"][i] for i in (3, 6, 9)]
    assert all(d["b"] == d["gold"] != d["a"] for d in body["examples"])
    body = client.get("/api/compare?a=senti:1&b=senti:2&collection=reviews").json()
    assert (body["a"]["accuracy"], body["b"]["accuracy"]) == (0.75, 0.85)
    assert [round(row["delta_f1"], 4) for row in body["per_class"]] == [0.1, 0.1]
    page = client.get("/api/compare?a=senti:1&b=senti:2&collection=inbox&limit=2").json()
    rest = client.get(f"/api/compare?a=senti:1&b=senti:2&collection=inbox&limit=2&after={page['next_after']}").json()
    assert [d["document_id"] for d in page["examples"] + rest["examples"]] == [ids["inbox_docs"][i] for i in (3, 6, 9)]


def test_collections_show_labelled_share_production_coverage_failures_and_nightly_shares(seeded):
    client, ids, _ = seeded
    listed = {c["collection"]: c for c in client.get("/api/collections").json()["collections"]}
    assert listed["reviews"]["documents"] == 40 and listed["reviews"]["labelled_share"] == 1.0
    inbox = client.get("/api/collections/inbox").json()
    assert inbox["label_counts"] == {"pos": 6, "neg": 6}
    assert inbox["production"] == [{"model": "senti:2", "model_version_id": ids["mv2"], "classified": 11,
                                    "failed": 1, "waiting": 0}]
    assert [f["error"] for f in inbox["failures"]] == ["empty text"]
    (run,) = inbox["nightly"]
    assert run["date"] == "2026-12-01" and run["predictions"] == 12 and run["labels"]["(failed)"] == 1
    assert abs(sum(run["share"].values()) - 1) < 1e-6
    first = client.get("/api/collections/inbox?limit=5").json()
    second = client.get(f"/api/collections/inbox?limit=5&after={first['next_after']}").json()
    assert [d["document_id"] for d in first["page"] + second["page"]] == ids["inbox_docs"][:10]


@pytest.mark.parametrize("path, status, message", [
    ("/api/jobs/999", 404, "no job 999"),
    ("/api/jobs?kind=nope", 400, "kind must be one of train, classify, evaluate, got 'nope'"),
    ("/api/jobs?before=x", 400, "before must be a whole number, got 'x'"),
    ("/api/jobs?from=yesterday", 400, "from must be a date YYYY-MM-DD, got 'yesterday'"),
    ("/api/jobs?collection=a%20b", 400, "collection"),
    ("/api/models/ghost/1", 404, "no model version ghost:1"),
    ("/api/compare?a=ghost:1&b=senti:1&collection=inbox", 404, "no ready model version matches 'ghost:1'"),
    ("/api/compare?a=senti:1", 400, "compare needs two versions (a, b) and a collection"),
    ("/api/collections/ghost", 404, "unknown collection 'ghost'"),
    ("/api/nothing", 404, "no such page"),
])
def test_bad_requests_are_one_line_errors(seeded, path, status, message):
    client, _, _ = seeded
    response = client.get(path)
    assert response.status_code == status and message in response.json()["error"]
    assert "\n" not in response.json()["error"]
    html = client.get(path.removeprefix("/api"))
    assert html.status_code == status and "Traceback" not in html.text


def _state(url: str) -> tuple:
    with session_factory_for(url).begin() as s:
        return (s.execute(select(Job.id, Job.status, Job.cancel_requested, Job.updated_at).order_by(Job.id)).all(),
                s.scalar(select(func.count()).select_from(Prediction)))


def test_no_page_changes_anything_and_writing_methods_are_refused(seeded):
    client, ids, url = seeded
    before = _state(url)
    for path in ("/jobs", f"/jobs/{ids['running']}", "/models", "/models/senti/1", "/compare", "/collections",
                 "/collections/inbox"):
        assert client.get(path).status_code == 200
        assert client.get("/api" + path).status_code == 200
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert client.request(method, "/api" + path).status_code == 405
            assert client.request(method, path).status_code == 405
    assert _state(url) == before


def test_the_view_reads_through_sessions_that_cannot_write(any_db_url):
    from sqlalchemy.exc import DBAPIError

    from worker.web.app import readonly_sessions

    with readonly_sessions(any_db_url)() as session:
        assert session.execute(select(func.count()).select_from(Job)).scalar() == 0
        with pytest.raises(DBAPIError):
            session.execute(text("INSERT INTO jobs (kind, params) VALUES ('train', '{}')"))


def test_a_sharded_job_shows_its_shards_and_counts_what_they_wrote(seeded):
    from sqlalchemy import update

    from webdata import add_job

    client, ids, url = seeded
    with session_factory_for(url).begin() as s:
        params = {"collection": "inbox", "model": "senti:1"}
        parent = add_job(s, "classify", params, status="running", attempt=1, progress_done=5, progress_total=12)
        shards = [add_job(s, "classify", params, parent_id=parent, status=status, attempt=1, progress_done=done,
                       progress_total=6) for status, done in (("succeeded", 6), ("running", 0))]
        s.execute(update(Prediction).where(Prediction.model_version_id == ids["mv1"]).values(job_id=shards[0]))
    body = client.get(f"/api/jobs/{parent}").json()
    assert [(sh["id"], sh["status"], sh["shown"]["percent"]) for sh in body["shards"]] == [
        (shards[0], "succeeded", 100.0), (shards[1], "running", 0.0)]
    assert body["predictions"] == {"classified": 12, "failed": 0} and "split into 2 shards" in str(body["timeline"])
    assert not {job["id"] for job in client.get("/api/jobs").json()["jobs"]} & set(shards)
    assert set(shards) <= {job["id"] for job in client.get("/api/jobs?shards=1").json()["jobs"]}
    page = client.get(f"/jobs/{parent}").text
    assert page.count('data-job="') == 3 and "Shards (2)" in page


def test_a_flagged_version_page_leads_with_its_warnings_and_shows_the_tfidf_baseline(seeded):
    from db import repo
    from db.session import session_factory_for
    from webdata import metrics

    client, _, url = seeded
    flagged = {**metrics(0.59), "trust_warnings": ["macro-F1 0.370 is not clearly above the majority baseline 0.370"],
               "tfidf_baseline": {"accuracy": 0.81, "macro_f1": 0.80, "fit_seconds": 1.5},
               "tfidf_comparison": {"clearly_better": False, "line": "the model is not clearly better than TF-IDF"}}
    with session_factory_for(url).begin() as s:
        repo.register_model_version(s, name="onecls", base_model="tiny", status="ready", artifact_path="/m/onecls",
                                    artifact_sha256="cd" * 32, labels=["neg", "pos"], hyperparameters={},
                                    metrics=flagged, lineage={"collection": "reviews"})
    page = client.get("/models/onecls/1").text
    warning_at, summary_at = page.index("not clearly above the majority baseline"), page.index("validation accuracy")
    assert warning_at < summary_at  # the warnings come first
    assert "the model is not clearly better than TF-IDF" in page and "models promote --force" in page
    assert "0.8100" in page or "0.810" in page  # the TF-IDF baseline's accuracy, beside the model's
