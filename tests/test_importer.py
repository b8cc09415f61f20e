"""Importing CSV and JSON Lines: good rows load, bad rows are reported with their line numbers."""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import text

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


def _stored(url: str, collection: str = "c") -> dict[str, tuple]:
    from sqlalchemy import select

    from db.models import Document

    with session_factory_for(url).begin() as s:
        return {e: (label, labels) for e, label, labels in s.execute(
            select(Document.external_id, Document.label, Document.labels).where(Document.collection == collection))}


def test_multi_label_json_lines_are_normalised_and_bad_label_sets_reported(tmp_path, any_db_url):
    path = tmp_path / "docs.jsonl"
    lines = [
        {"id": "a", "text": "one", "labels": [" sport ", "politics", "sport", ""]},
        {"id": "b", "text": "two", "labels": []},                     # an empty set: unlabelled
        {"id": "c", "text": "three", "label": "x"},                   # single-label rows mix in
        {"id": "d", "text": "four", "label": "x", "labels": ["y"]},   # line 4: both
        {"id": "e", "text": "five", "labels": "sport"},               # line 5: not a list
        {"id": "f", "text": "six", "labels": ["ok", 3]},              # line 6: not strings
        {"id": "g", "text": "seven", "labels": ["ok", "y" * 201]},    # line 7: too long
        {"id": "h", "text": "eight", "labels": ["ünï", "  "], "label": " "},  # a blank label is no label
        {"id": "i", "text": "nine", "labels": None},
        {"id": "j", "text": "ten", "labels": ["a\u0000b"]},           # line 10: NUL
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    report = import_file(session_factory_for(any_db_url), path, "c")
    assert [(b.line, b.reason) for b in report.bad] == [
        (4, "both 'label' and 'labels': a document has one label or a label set"),
        (5, "'labels' is not a list of strings"),
        (6, "'labels' is not a list of strings"),
        (7, "a label is longer than 200 characters (201)"),
        (10, "a label contains NUL bytes"),
    ]
    assert report.inserted == 5
    assert _stored(any_db_url) == {"a": (None, ["politics", "sport"]), "b": (None, None), "c": ("x", None),
                                   "h": (None, ["ünï"]), "i": (None, None)}


def test_multi_label_csv_rows_split_on_the_bar(tmp_path, any_db_url):
    body = (
        "id,text,label,labels\n"
        "1,first,, b | a |b\n"
        "2,second,pos,\n"
        "3,third,,\n"
        "4,fourth,pos,a|b\n"          # line 5: both
        "5,fifth,,|| |\n"             # no labels at all
        "6,sixth,,a|" + "z" * 201 + "\n"  # line 7: too long
    ).encode("utf-8")
    report = import_file(session_factory_for(any_db_url), _csv(tmp_path / "docs.csv", body), "c")
    assert [(b.line, b.reason) for b in report.bad] == [
        (5, "both 'label' and 'labels': a document has one label or a label set"),
        (7, "a label is longer than 200 characters (201)"),
    ]
    assert _stored(any_db_url) == {"1": (None, ["a", "b"]), "2": ("pos", None), "3": (None, None),
                                   "5": (None, None)}


def test_reimporting_with_changed_label_sets_counts_them_as_updated(tmp_path, any_db_url):
    sessions = session_factory_for(any_db_url)
    path = tmp_path / "docs.jsonl"

    def write(*records):
        path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")

    def stamps():
        with sessions.begin() as s:
            return dict(s.execute(text("SELECT external_id, updated_at FROM documents")).all())

    write({"id": "a", "text": "t", "labels": ["x", "y"]}, {"id": "b", "text": "u", "labels": ["x"]},
          {"id": "c", "text": "v", "label": "x"}, {"id": "d", "text": "w"})
    first = import_file(sessions, path, "c")
    before = stamps()
    # the same sets in another order and with duplicates; b gains a label; c turns multi-label; d gets a set
    write({"id": "a", "text": "t", "labels": ["y", "x", "y"]}, {"id": "b", "text": "u", "labels": ["x", "z"]},
          {"id": "c", "text": "v", "labels": ["x"]}, {"id": "d", "text": "w", "labels": ["q"]})
    second = import_file(sessions, path, "c")
    after = stamps()
    assert [e for e in "abcd" if after[e] != before[e]] == ["b", "c", "d"]  # a: the same set, left alone
    write({"id": "a", "text": "t", "labels": []}, {"id": "b", "text": "u", "labels": ["z", "x"]},
          {"id": "c", "text": "v", "labels": ["x"]}, {"id": "d", "text": "w", "labels": ["q"]})
    third = import_file(sessions, path, "c")  # a loses its labels: an update to NULL
    assert [(r.inserted, r.updated, r.unchanged) for r in (first, second, third)] == [(4, 0, 0), (0, 3, 1), (0, 1, 3)]
    assert _stored(any_db_url) == {"a": (None, None), "b": (None, ["x", "z"]), "c": (None, ["x"]), "d": (None, ["q"])}
    assert [e for e, stamp in stamps().items() if stamp != after[e]] == ["a"]
    with sessions.begin() as s:
        data = repo.load_labelled(s, "c", multi_label=True)
    assert (data.labels, data.unlabelled) == ([["x", "z"], ["x"], ["q"]], 1)


def test_the_import_command_takes_the_labels_column(tmp_path, monkeypatch, capsys, sqlite_url):
    from worker.config import get_settings

    monkeypatch.setenv("BERTJOBS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        path = _csv(tmp_path / "d.csv", b"text,tags\nnice,b|a\n")
        assert cli_main(["import", str(path), "--collection", "c", "--labels-column", "tags"]) == 0
        assert "1 inserted" in capsys.readouterr().out
        assert _stored(sqlite_url) == {hashlib.sha256(b"nice").hexdigest()[:40]: (None, ["a", "b"])}
    finally:
        get_settings.cache_clear()
