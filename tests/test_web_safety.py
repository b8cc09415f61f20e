"""The web view's safety rules: loopback unless a token is set, the token on every request, document text and
labels always escaped, nothing fetched from elsewhere."""
from __future__ import annotations

import base64
import re

import pytest

from webdata import EVIL, EVIL_LABEL, seed
from worker.cli import main

pytest.importorskip("starlette")


@pytest.fixture
def client_for(env_db, sqlite_url):
    from starlette.testclient import TestClient

    from worker.web.app import create_app

    def make(**settings):
        env_db(sqlite_url, **settings)
        return TestClient(create_app())

    return make


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "bertjobs.example.com"])
def test_another_address_than_loopback_is_refused_without_a_token(env_db, sqlite_url, capsys, host):
    env_db(sqlite_url)
    assert main(["ui", "--host", host]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: refusing to serve the web view on {host} without a token: set BERTJOBS_UI_TOKEN "
                   "(or bind to 127.0.0.1)\n")


def test_the_host_from_the_environment_is_held_to_the_same_rule(env_db, sqlite_url, capsys):
    env_db(sqlite_url, ui_host="0.0.0.0")
    assert main(["ui"]) == 2
    assert "without a token" in capsys.readouterr().err


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("10.0.0.1", False), ("example.com", False)])
def test_loopback_addresses(host, loopback):
    from worker.web.command import is_loopback

    assert is_loopback(host) is loopback


def test_a_database_without_the_schema_stops_the_view_before_it_serves(env_db, tmp_path, capsys):
    env_db(f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["ui", "--port", "1"]) == 2
    assert "has no bertjobs schema yet; run: bertjobs db upgrade" in capsys.readouterr().err


def test_with_a_token_every_request_carries_it(client_for):
    client = client_for(ui_token="s3cret")
    for path in ("/jobs", "/api/jobs", "/static/app.css", "/api/nothing"):
        response = client.get(path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == 'Basic realm="bertjobs"'
    assert client.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    basic = base64.b64encode(b"anyone:s3cret").decode()
    assert client.get("/jobs", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/jobs", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
    assert client.get("/api/jobs?token=s3cret").status_code == 401  # never in URLs (they end up in logs)


def test_on_loopback_without_a_token_no_token_is_asked(client_for):
    assert client_for().get("/api/jobs").status_code == 200


def _pages(client, ids) -> dict[str, str]:
    paths = ["/jobs", f"/jobs/{ids['failed']}", f"/jobs/{ids['nightly']}", "/models", "/models/senti/1",
             "/models/evil/1", "/compare?a=senti:1&b=senti:2&collection=inbox", "/collections", "/collections/inbox",
             "/compare?a=evil:1&b=senti:2&collection=inbox"]
    out = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        out[path] = response.text
    return out


def _with_markup_label(url):
    from db import repo
    from db.session import session_factory_for
    from webdata import metrics

    with session_factory_for(url).begin() as s:
        labels = (EVIL_LABEL, "ok")
        repo.register_model_version(s, name="evil", base_model=EVIL, status="ready", artifact_path="/m",
                                    artifact_sha256="ab" * 32, labels=list(labels), hyperparameters={"x": EVIL},
                                    metrics=metrics(0.5, labels), training_job_id=None,
                                    lineage={"collection": "inbox", "data_check": {"warnings": [EVIL]}})


def test_document_text_labels_and_errors_are_never_rendered_as_markup(client_for, sqlite_url):
    client = client_for()
    ids = seed(sqlite_url)
    _with_markup_label(sqlite_url)
    pages = _pages(client, ids)
    for path, html in pages.items():
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold</b>" not in html, path
        assert "<i>y</i>" not in html, path
    inbox = pages["/collections/inbox"]
    assert "&lt;script&gt;alert" in inbox and "x&lt;i&gt;y&lt;/i&gt;" in inbox  # shown as text
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages["/models/evil/1"]
    assert "model exploded &lt;script&gt;" in pages[f"/jobs/{ids['failed']}"]


def test_the_training_report_file_escapes_labels_and_texts_too():
    from webdata import metrics
    from worker.ops.report import render_report

    labels = (EVIL_LABEL, "ok")
    html = render_report({"name": "evil", "version": 1, "base_model": EVIL, "metrics": metrics(0.5, labels),
                          "hyperparameters": {"x": EVIL}, "lineage": {"data_check": {"warnings": [EVIL]}}})
    assert "<script>alert" not in html and "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count('class="hit"') == 2 and html.count('class="miss"') == 2  # the diagonal told apart


def test_every_page_loads_only_what_the_view_serves_itself(client_for, sqlite_url):
    client = client_for()
    ids = seed(sqlite_url)
    _with_markup_label(sqlite_url)
    for path, html in _pages(client, ids).items():
        for url in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert not re.match(r"(?i)^(https?:)?//", url), (path, url)
            if url.startswith("/static/"):
                assert client.get(url).status_code == 200, url
        assert "@import" not in html and "url(http" not in html
    css = client.get("/static/app.css").text + client.get("/static/live.js").text
    assert "http" not in css
