"""Importing CSV and JSON Lines: good rows load, bad rows are reported with their line numbers."""
from __future__ import annotations

import json

from db import repo
from db.session import session_factory_for
from worker.cli import main as cli_main
from worker.importer import import_file


def _csv(path, body: bytes):
    path.write_bytes(body)
    return path


def test_bad_csv_rows_are_reported_by_line_and_the_good_rows_load(tmp_path, any_db_url):
    body = (
        b"id,text,label\n"
        b"1,a fine film,pos\n"
        b"2,,neg\n"                      # line 3: no text
        b"3,has a \x00 nul,neg\n"        # line 4: NUL byte
        b"4,bad \xff\xfe utf8,neg\n"     # line 5: invalid UTF-8
        b"5,\"spans\ntwo lines\",pos\n"  # lines 6-7: a quoted newline is fine
        b"6," + b"x" * 50 + b",neg\n"    # line 8: over the limit
        b"7,   ,pos\n"                   # line 9: whitespace only
        b"8,unlabelled text,\n"          # line 10: fine, no label
    )
    report = import_file(session_factory_for(any_db_url), _csv(tmp_path / "docs.csv", body), "c", max_chars=40)
    assert (report.inserted, report.updated, report.unchanged) == (3, 0, 0)
    assert [(b.line, b.reason) for b in report.bad] == [
        (3, "text is empty or whitespace"),
        (4, "text contains NUL bytes"),
        (5, "invalid UTF-8"),
        (8, "text is longer than 40 characters (50)"),
        (9, "text is empty or whitespace"),
    ]
    with session_factory_for(any_db_url).begin() as s:
        data = repo.load_labelled(s, "c")
        assert sorted(data.texts) == ["a fine film", "spans\ntwo lines"]
        assert data.unlabelled == 1


def test_reimporting_the_same_file_changes_nothing(tmp_path, any_db_url):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"text {i}", "label": "a" if i % 2 else "b"}) for i in range(30)))
    sessions = session_factory_for(any_db_url)
    first = import_file(sessions, path, "c")
    second = import_file(sessions, path, "c")
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (30, 0, 0, 30)


def test_bad_json_lines_are_reported_and_do_not_stop_the_rest(tmp_path, any_db_url):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "good one", "label": "x"}\n'
        b'{"id": "b", "text": "broken\n'
        b'["not", "an", "object"]\n'
        b'{"id": "c", "label": "x"}\n'
        b'{"id": "d", "text": "bad \xff byte"}\n'
        b'{"id": "e", "text": "good two", "label": "y"}\n'
    )
    report = import_file(session_factory_for(any_db_url), path, "c")
    assert report.inserted == 2
    assert [b.line for b in report.bad] == [2, 3, 4, 5]
    assert report.bad[2].reason == "no 'text' field"
    assert report.bad[3].reason == "invalid UTF-8"


def test_the_import_command_prints_bad_lines_and_a_summary(tmp_path, monkeypatch, capsys, sqlite_url):
    from worker.config import get_settings

    monkeypatch.setenv("BERTJOBS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        path = _csv(tmp_path / "d.csv", b"text,label\nnice,pos\n,neg\n")
        assert cli_main(["import", str(path), "--collection", "c"]) == 0
        out, err = capsys.readouterr()
        assert "1 inserted" in out and "1 bad rows skipped" in out
        assert f"{path}:3: skipped: text is empty or whitespace" in err
        assert cli_main(["import", str(tmp_path / "missing.csv"), "--collection", "c"]) == 2
        assert "no such file" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
