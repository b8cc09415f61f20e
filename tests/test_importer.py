"""Importing CSV and JSON Lines: good rows load, bad rows are reported with their line numbers."""
from __future__ import annotations

import hashlib
import json

import pytest
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


# ---------------------------------------------------------------- through the command, on both databases


import bz2  # noqa: E402
import gzip  # noqa: E402
import lzma  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402


@pytest.fixture
def run_import(monkeypatch, capsys, any_db_url):
    """``bertjobs import FILE --collection c ...`` with the database from the environment: (status, out, err)."""
    from worker.config import get_settings

    monkeypatch.setenv("BERTJOBS_DATABASE_URL", any_db_url)
    get_settings.cache_clear()

    def run(path, *extra, collection: str = "c"):
        status = cli_main(["import", str(path), "--collection", collection, "--show-bad", "100", *extra])
        out, err = capsys.readouterr()
        return status, out, err

    run.url = any_db_url
    yield run
    get_settings.cache_clear()


def _texts(url: str, collection: str = "c") -> dict[str, str]:
    with session_factory_for(url).begin() as s:
        return dict(s.execute(text("SELECT external_id, text FROM documents WHERE collection = :c"),
                              {"c": collection}).all())


def test_tsv_splits_on_tabs(tmp_path, run_import):
    path = _csv(tmp_path / "d.tsv", b"id\ttext\tlabel\n1\tcommas, here, stay\tpos\n2\tsecond\tneg\n")
    status, out, _ = run_import(path)
    assert status == 0 and "2 inserted" in out
    assert _texts(run_import.url) == {"1": "commas, here, stay", "2": "second"}
    assert _stored(run_import.url) == {"1": ("pos", None), "2": ("neg", None)}


def test_unusual_columns_are_refused_naming_them_and_map_with_the_options(tmp_path, run_import):
    path = _csv(tmp_path / "d.csv", b"doc,body,sentiment\n7,a fine film,pos\n")
    status, _, err = run_import(path)
    assert status == 2 and err.count("\n") == 1
    assert "no 'text' column; columns found: 'doc', 'body', 'sentiment'" in err and "--text-column" in err
    status, _, err = run_import(path, "--text-column", "body")  # labels in a column it does not know
    assert status == 2 and err.count("\n") == 1
    assert "no 'label' or 'labels' column, and 'doc', 'sentiment' is not a column bertjobs knows" in err
    assert _texts(run_import.url) == {}
    status, out, _ = run_import(path, "--text-column", "body", "--label-column", "sentiment", "--id-column", "doc")
    assert status == 0 and "1 inserted" in out
    assert _stored(run_import.url) == {"7": ("pos", None)}
    status, _, err = run_import(path, "--text-column", "body", "--id-column", "nope", "--ignore-column", "sentiment")
    assert status == 2 and "no 'nope' column (--id-column)" in err
    unlabelled = _csv(tmp_path / "u.csv", b"text,source\nplain text,web\n")
    assert run_import(unlabelled)[0] == 2
    status, out, _ = run_import(unlabelled, "--ignore-column", "source", collection="u")
    assert status == 0 and "1 inserted" in out
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"body": "x", "sentiment": "pos"}) + "\n")
    status, _, err = run_import(jsonl)
    assert status == 2 and "no 'text' column; columns found: 'body', 'sentiment'" in err


def test_compressed_files_are_read_decompressed(tmp_path, run_import):
    body = b"id,text,label\n1,first,pos\n2,second,neg\n"
    for name, data in [("a.csv.gz", gzip.compress(body)), ("b.csv.bz2", bz2.compress(body)),
                       ("c.csv.xz", lzma.compress(body))]:
        status, out, err = run_import(_csv(tmp_path / name, data), collection=name.split(".")[0])
        assert (status, err) == (0, "") and "2 inserted" in out, name
        assert _texts(run_import.url, name.split(".")[0]) == {"1": "first", "2": "second"}
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.writestr("inner/docs.tsv", body.replace(b",", b"\t"))
    status, out, _ = run_import(tmp_path / "d.zip", collection="z")
    assert status == 0 and "2 inserted" in out and _texts(run_import.url, "z") == {"1": "first", "2": "second"}


def test_unreadable_compression_is_refused_with_one_line(tmp_path, run_import):
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.csv", "text\nx\n")
        z.writestr("b.csv", "text\ny\n")
    cases = [
        (tmp_path / "two.zip", "two.zip holds 2 files; a zip must hold exactly one"),
        (_csv(tmp_path / "plain.csv.gz", b"text\nx\n"), "plain.csv.gz is named as gzip but is not gzip data"),
        (_csv(tmp_path / "cut.csv.gz", gzip.compress(b"text\nx\n" * 100)[:20]), "cut.csv.gz is not readable gzip data"),
        (_csv(tmp_path / "z.csv", b"\x28\xb5\x2f\xfd" + b"\x00" * 20), "z.csv is zstd compressed"),
        (_csv(tmp_path / "twice.csv.gz", gzip.compress(gzip.compress(b"text\nx\n"))), "compressed twice"),
        (_csv(tmp_path / "u16.csv", "text\nx\n".encode("utf-16")), "u16.csv is UTF-16"),
    ]
    for path, message in cases:
        status, _, err = run_import(path)
        assert status == 2 and message in err and err.count("\n") == 1, (path, err)
    assert _texts(run_import.url) == {}


def test_a_repeated_id_is_reported_with_both_lines(tmp_path, run_import):
    path = _csv(tmp_path / "d.csv", b"id,text,label\n1,first,pos\n2,second,neg\n1,again,neg\n")
    status, out, err = run_import(path)
    assert status == 0 and "2 inserted" in out and "1 bad rows" in out
    assert f"{path}:4: skipped: id '1' repeated: first on line 2" in err
    assert _texts(run_import.url) == {"1": "first", "2": "second"}
    same = _csv(tmp_path / "s.csv", b"text\nsame\nother\nsame\n")
    status, _, err = run_import(same, collection="s")
    assert f"{same}:4: skipped: the same text as line 2" in err


def test_a_nul_in_an_id_is_a_bad_row_and_every_other_row_loads(tmp_path, run_import):
    rows = [{"id": f"d{i}", "text": f"text {i}", "label": "a"} for i in range(2500)]
    rows[1500]["id"] = "bad\x00id"
    rows[2000]["label"] = "bad\x00label"
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    status, out, err = run_import(path)
    assert status == 0 and "2498 inserted" in out and "2 bad rows" in out
    assert f"{path}:1501: skipped: 'id' contains NUL bytes" in err
    assert f"{path}:2001: skipped: a label contains NUL bytes" in err
    assert len(_texts(run_import.url)) == 2498
    csv_path = _csv(tmp_path / "d.csv", b"id,text\n1,one\nx\x00y,two\n3,three\n")
    status, out, err = run_import(csv_path, collection="k")
    assert "2 inserted" in out and f"{csv_path}:3: skipped: 'id' contains NUL bytes" in err


def test_a_lone_surrogate_in_any_field_is_a_bad_row(tmp_path, run_import):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "1", "text": "fine", "label": "a"}),
        json.dumps({"id": "\ud800", "text": "bad id"}),
        json.dumps({"id": "3", "text": "bad \udfff text"}),
        json.dumps({"id": "4", "text": "bad label", "label": "x\ud83d"}),
        json.dumps({"id": "5", "text": "bad labels", "labels": ["ok", "\udc00"]}),
        json.dumps({"id": "6", "text": "after", "label": "b"}),
    ]))
    status, out, err = run_import(path)
    assert status == 0 and "2 inserted" in out and "4 bad rows" in out
    for line, field, code in [(2, "id", "D800"), (3, "text", "DFFF"), (4, "label", "D83D"), (5, "labels", "DC00")]:
        assert f"{path}:{line}: skipped: {field!r} has a character UTF-8 cannot encode (U+{code})" in err
    assert _texts(run_import.url) == {"1": "fine", "6": "after"}
    bad_bytes = _csv(tmp_path / "b.csv", b"id,text,label\n\xff1,one,a\n2,two,\xfeb\n3,three,c\n")
    status, out, err = run_import(bad_bytes, collection="b")
    assert "1 inserted" in out and "invalid UTF-8 in 'id'" in err and "invalid UTF-8 in 'label'" in err


def test_import_help_names_the_recognised_columns_beside_the_column_options(capsys):
    from worker.importer import CSV_LABELS_SEPARATOR, FORMATS, ID_COLUMNS

    with pytest.raises(SystemExit) as exit_:
        cli_main(["import", "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone
    columns = help_text.split("columns:", 1)[1]  # the group: the names recognised, then the options that map others
    for word in ("'text'", "'label'", "'labels'", *(repr(c) for c in ID_COLUMNS), f"'{CSV_LABELS_SEPARATOR}'",
                 "--text-column", "--label-column", "--labels-column", "--id-column", "--ignore-column"):
        assert word in columns, word
    for word in (*FORMATS, ".tsv", ".gz", ".zip"):
        assert word in help_text, word


@pytest.mark.slow
def test_a_refused_file_is_one_line_and_no_traceback_in_a_process(tmp_path, sqlite_url):
    import os

    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.csv", "text\nx\n")
        z.writestr("b.csv", "text\ny\n")
    env = {**os.environ, "BERTJOBS_DATABASE_URL": sqlite_url, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "import", str(tmp_path / "two.zip"), "--collection",
                           "c"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "holds 2 files" in done.stderr


def test_a_batch_the_database_refuses_is_written_row_by_row(tmp_path, clean_pg, monkeypatch, capsys):
    """A row that passes every check but the database still refuses is a bad row; the rows around it load."""
    from worker.config import get_settings

    ddl = ["CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN IF NEW.text = 'poison' THEN "
           "RAISE EXCEPTION 'poison refused' USING ERRCODE = '22000'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
           "CREATE TRIGGER refuse_poison BEFORE INSERT ON documents FOR EACH ROW EXECUTE FUNCTION refuse_poison()"]
    with session_factory_for(clean_pg).begin() as s:
        for statement in ddl:
            s.execute(text(statement))
    try:
        monkeypatch.setenv("BERTJOBS_DATABASE_URL", clean_pg)
        get_settings.cache_clear()
        path = _csv(tmp_path / "d.csv", b"id,text\n1,one\n2,poison\n3,three\n")
        assert cli_main(["import", str(path), "--collection", "c"]) == 0
        out, err = capsys.readouterr()
        assert "2 inserted" in out and "1 bad rows" in out
        assert f"{path}:3: skipped: the database cannot store it: poison refused" in err
        assert _texts(clean_pg) == {"1": "one", "3": "three"}
    finally:
        get_settings.cache_clear()
        with session_factory_for(clean_pg).begin() as s:
            s.execute(text("DROP TRIGGER refuse_poison ON documents"))
            s.execute(text("DROP FUNCTION refuse_poison()"))
