"""One name rule for collections, models and aliases, checked where names are created and where they are read."""
from __future__ import annotations

import pytest

from worker.cli import main
from worker.errors import InvalidName
from db.names import check_name, parse_model_ref

GOOD = ["reviews", "rt-train", "rt-new", "sentiment", "news-topics", "production", "m", "0", "a.b_c-1", "x" * 64]
BAD = ["", "../../etc/x", "a/b", "a:b", "a@b", " a", "a b", "a\tb", ".hidden", "-x", "_x", "x" * 65, "naïve",
       "a\x00b", None, 5]


@pytest.mark.parametrize("name", GOOD)
def test_the_names_the_readme_and_tests_use_are_accepted(name):
    assert check_name("collection", name) == name


@pytest.mark.parametrize("name", BAD)
def test_names_outside_the_rule_are_one_line_errors(name):
    with pytest.raises(InvalidName) as caught:
        check_name("alias", name)
    message = str(caught.value)
    assert message.startswith("alias must be 1-64 letters, digits") and "\n" not in message


def test_model_references_check_each_part():
    assert parse_model_ref("m") == ("m", None)
    assert parse_model_ref("m:3") == ("m", 3)
    assert parse_model_ref("m@production") == ("m", "production")
    for ref, kind in [("m@../../etc/x", "alias"), ("m@", "alias"), ("m@a@b", "alias"), ("../x:1", "model name"),
                      ("a b", "model name"), ("@prod", "model name")]:
        with pytest.raises(InvalidName, match=f"^{kind} must be"):
            parse_model_ref(ref)
    with pytest.raises(InvalidName, match="model version must be a number"):
        parse_model_ref("m:latest")


def test_a_reference_is_parsed_by_one_rule_at_submit_and_at_resolution(sqlite_url):
    from db import repo
    from db.models import ModelVersion
    from db.session import session_factory_for
    from worker.jobs.params import ClassifyParams

    for ref in ("m:1@prod", "m@prod:1", "m:1:2"):
        with pytest.raises(InvalidName):
            ClassifyParams(collection="c", model=ref)
        with session_factory_for(sqlite_url).begin() as s, pytest.raises(InvalidName):
            repo.resolve_model_version(s, ref)
    mv = ModelVersion(name="m", version=3)
    assert mv.ref == "m:3" and parse_model_ref(mv.ref) == ("m", 3)


def _one_line_error(capsys, starts: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith(f"error: {starts}") and err.count("\n") == 1, err


def test_every_command_refuses_a_bad_name_with_one_line(env_db, any_db_url, tmp_path, capsys):
    from helpers import load_documents

    env_db(any_db_url)
    path = tmp_path / "d.csv"
    path.write_text("text,label\nnice,pos\n")
    assert main(["import", str(path), "--collection", "../../etc/x"]) == 2
    _one_line_error(capsys, "collection must be 1-64")
    assert main(["import", str(path), "--collection", "ok"]) == 0
    capsys.readouterr()
    cases = [
        (["train", "--collection", "a b", "--base-model", "x", "--inline"], "collection must be"),
        (["train", "--collection", "ok", "--base-model", "x", "--name", "x@y", "--inline"], "model name must be"),
        (["classify", "--collection", "a/b", "--model", "m", "--inline"], "collection must be"),
        (["classify", "--collection", "ok", "--model", "m@../../etc/x", "--inline"], "alias must be"),
        (["models", "promote", "m:1", "--alias", "../../etc/x"], "alias must be"),
        (["models", "promote", "m:1", "--alias", "a:b"], "alias must be"),
        (["models", "rollback", "m", "--alias", "a b"], "alias must be"),
        (["models", "rollback", "m/x"], "model name must be"),
        (["models", "show", "m@x/y"], "alias must be"),
        (["models", "list", "m:1"], "model name must be"),
        (["results", "--collection", "a:b"], "collection must be"),
        (["results", "--model", "a b"], "model name must be"),
        (["data", "check", "--collection", "a@b"], "collection must be"),
    ]
    for argv, starts in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys, starts)
    load_documents(any_db_url, "ok2", [{"external_id": "a", "text": "t", "label": "p"}])
    from sqlalchemy import text

    from db.session import session_factory_for

    with session_factory_for(any_db_url).begin() as s:
        assert s.execute(text("SELECT count(*) FROM model_aliases")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
        assert s.execute(text("SELECT DISTINCT collection FROM documents ORDER BY 1")).scalars().all() == ["ok", "ok2"]


def test_the_client_refuses_bad_names_before_writing_a_job(sqlite_url, make_settings):
    from worker.client import submit_classification, submit_training

    settings = make_settings(sqlite_url)
    with pytest.raises(InvalidName, match="^model name must be"):
        submit_training("ok", "x", model_name="a:b", settings=settings, enqueue=False)
    with pytest.raises(InvalidName, match="^collection must be"):
        submit_training("x" * 65, "x", settings=settings, enqueue=False)
    with pytest.raises(InvalidName, match="^alias must be"):
        submit_classification("ok", "m@../x", settings=settings, enqueue=False)
    with pytest.raises(InvalidName, match="^collection must be"):
        submit_classification("../c", "m", settings=settings, enqueue=False)
