"""Import documents from CSV, TSV or JSON Lines. Bad rows are reported with their line numbers; good rows load.

Columns: ``text`` (required), ``label`` (optional), ``id`` or ``external_id`` (optional); other names map with
``text_column``, ``label_column``, ``labels_column`` and ``id_column``. Without an id the text's sha256 is the id,
so re-importing the same file changes nothing either way. A file without the text column, or with no label
column but columns it does not know (its labels may be there), is refused with the columns it found
(ImportRefused). An id twice in one file: the second row is a bad row naming the first one's line.

``.tsv`` splits on tabs. ``.gz``, ``.bz2``, ``.xz`` and a ``.zip`` of one file are read decompressed (by their
magic bytes, the format from the name inside); other compression, or a name that does not match the bytes, is
refused. Every field (id, text, label, labels) is checked for what the database cannot store (a bad byte, a lone
surrogate, a NUL): such a row is a bad row, and a batch the database still refuses is retried row by row.

A multi-label document carries ``labels`` instead of ``label``: in JSON Lines a list of strings, in CSV one
field with the labels separated by ``|``. The set is normalised (each label stripped, empty ones dropped,
duplicates removed, sorted); an empty set is no label. A row with both a ``label`` and ``labels`` is a bad row.
Every label is at most 200 characters.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sqlalchemy.orm import Session, sessionmaker

from sqlalchemy.exc import DataError

from db import repo
from worker.errors import PermanentError
from worker.ml.text import text_problem
from db.names import check_name

ID_COLUMNS = ("external_id", "id")
FORMATS = ("csv", "tsv", "jsonl")
MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00", "zip": b"PK\x03\x04",
         "empty zip": b"PK\x05\x06", "zstd": b"\x28\xb5\x2f\xfd", "7z": b"7z\xbc\xaf\x27\x1c",
         "rar": b"Rar!\x1a\x07", "lzip": b"LZIP"}
UNSUPPORTED = ("zstd", "7z", "rar", "lzip")
SUFFIX_KINDS = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2",), "xz": (".xz",), "zip": (".zip",)}
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zip")
DECOMPRESS = {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress}
BATCH_ROWS = 1000
MAX_LABEL_CHARS = 200  # documents.label and each element of documents.labels
CSV_LABELS_SEPARATOR = "|"


class ImportRefused(PermanentError, ValueError):
    """The whole file cannot be imported (its columns, its compression, its format): one line, nothing loaded."""


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)

    @property
    def good(self) -> int:
        return self.inserted + self.updated + self.unchanged


def _has_invalid_utf8(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _unstorable(field_name: str, value: str) -> str | None:
    """Why the database cannot store ``value`` (a bad byte, a lone surrogate, a NUL), or None."""
    if _has_invalid_utf8(value):
        return "invalid UTF-8" if field_name == "text" else f"invalid UTF-8 in {field_name!r}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{field_name!r} has a character UTF-8 cannot encode (U+{ord(value[exc.start]):04X})"
    if "\x00" in value and field_name != "text":  # text NULs: text_problem's reason
        return f"{field_name!r} contains NUL bytes"
    return None


def _label_problem(label: str) -> str | None:
    if "\x00" in label:
        return "a label contains NUL bytes"
    if len(label) > MAX_LABEL_CHARS:
        return f"a label is longer than {MAX_LABEL_CHARS} characters ({len(label)})"
    return None


def _parse_label_set(value: object, column: str, separated: bool) -> list[str]:
    """The normalised label set of a ``labels`` field; ValueError (why) when it is not one."""
    if value is None:
        return []
    if separated and isinstance(value, str):
        value = value.split(CSV_LABELS_SEPARATOR)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{column!r} is not a list of strings")
    return sorted({x.strip() for x in value} - {""})


def _id_field(record: dict, id_columns: tuple[str, ...]) -> tuple[str, object] | None:
    return next(((c, record[c]) for c in id_columns if record.get(c) not in (None, "")), None)


def _row(record: dict, line: int, max_chars: int, text_column: str, label_column: str, labels_column: str,
         separated_labels: bool, id_columns: tuple[str, ...]) -> dict | BadRow:
    if text_column not in record or record[text_column] is None:
        return BadRow(line, f"no {text_column!r} field")
    text = record[text_column]
    if not isinstance(text, str):
        return BadRow(line, f"{text_column!r} is not a string")
    # Every field is checked, not only the text: one the database cannot store would fail its whole batch.
    fields = [("text", text)] + [(k, v) for k, v in record.items() if k != text_column and isinstance(v, str)]
    if isinstance(record.get(labels_column), list):
        fields += [(labels_column, v) for v in record[labels_column] if isinstance(v, str)]
    for name, value in fields:
        problem = _unstorable(name, value)
        if problem and not (name in (label_column, labels_column) and "NUL" in problem):  # _label_problem's
            return BadRow(line, problem)
    problem = text_problem(text, max_chars)
    if problem:
        return BadRow(line, problem)
    label = record.get(label_column)
    if isinstance(label, (dict, list, bool)):
        return BadRow(line, f"{label_column!r} is not a string")
    label = None if label is None or str(label).strip() == "" else str(label).strip()
    try:
        labels = _parse_label_set(record.get(labels_column), labels_column, separated_labels)
    except ValueError as exc:
        return BadRow(line, str(exc))
    if label is not None and labels:
        return BadRow(line, f"both {label_column!r} and {labels_column!r}: a document has one label or a label set")
    for name in [label] if label is not None else labels:
        problem = _label_problem(name)
        if problem:
            return BadRow(line, problem)
    found = _id_field(record, id_columns)
    if found is None:
        external_id, hashed = hashlib.sha256(text.encode("utf-8")).hexdigest()[:40], True
    else:
        column, external_id = found
        if isinstance(external_id, (dict, list, bool)):
            return BadRow(line, f"{column!r} is not a string or a number")
        external_id, hashed = str(external_id), False
    if len(external_id) > 200:
        return BadRow(line, "id is longer than 200 characters")
    return {"external_id": external_id, "text": text, "label": label, "labels": labels or None, "_hashed": hashed}


def _records_csv(text: str, delimiter: str) -> tuple[list[str], Iterator[tuple[int, dict | str]]]:
    """The header's columns, and each row (or why it is not one) with its line number."""
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise ImportRefused(f"malformed {'TSV' if delimiter == chr(9) else 'CSV'} header: {exc}") from exc

    def rows() -> Iterator[tuple[int, dict | str]]:
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, f"malformed CSV: {exc}"
                return
            if None in record:
                yield reader.line_num, "more fields than the header"
                continue
            yield reader.line_num, record

    return columns, rows()


def _records_jsonl(raw: bytes) -> list[tuple[int, dict | str]]:
    out: list[tuple[int, dict | str]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError:
            out.append((number, "invalid UTF-8"))
            continue
        try:
            record = json.loads(decoded)
        except json.JSONDecodeError as exc:
            out.append((number, f"invalid JSON: {exc.msg}"))
            continue
        out.append((number, record if isinstance(record, dict) else "not a JSON object"))
    return out


def _strip_compression(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def detect_format(path: Path | str) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file name (a compression suffix is looked through)."""
    name = _strip_compression(Path(path).name)
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    raise ImportRefused(f"cannot tell the format of {Path(path).name}: name it .csv, .tsv or .jsonl "
                        "(optionally .gz, .bz2, .xz or .zip), or pass --format")


def read_decompressed(path: Path) -> tuple[bytes, str]:
    """The file's bytes, decompressed if it is gzip, bzip2, xz or a zip of one file; and the name to detect by.

    Anything else that is compressed, or a file named as compressed that is not, is refused (ImportRefused).
    """
    raw = path.read_bytes()
    name = path.name
    kind = next((k for k, magic in MAGIC.items() if raw.startswith(magic)), None)
    kind = "zip" if kind == "empty zip" else kind
    named = next((k for k, suffixes in SUFFIX_KINDS.items() if name.lower().endswith(suffixes)), None)
    if kind in UNSUPPORTED:
        raise ImportRefused(f"{name} is {kind} compressed; bertjobs reads .gz, .bz2, .xz and a .zip of one file: "
                            "decompress it first")
    if named is not None and kind != named:
        raise ImportRefused(f"{name} is named as {named} but is not {named} data")
    if kind is None:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ImportRefused(f"{name} is UTF-16; save it as UTF-8")
        return raw, name
    try:
        if kind == "zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise ImportRefused(f"{name} holds {len(members)} files; a zip must hold exactly one")
                data, name = archive.read(members[0]), Path(members[0].filename).name
        else:
            data = DECOMPRESS[kind](raw)
    except ImportRefused:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, zipfile.BadZipFile, NotImplementedError,
            RuntimeError) as exc:
        raise ImportRefused(f"{path.name} is not readable {kind} data: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if any(data.startswith(magic) for magic in MAGIC.values()):
        raise ImportRefused(f"{path.name} is compressed twice; decompress it to one level first")
    if kind != "zip":
        name = _strip_compression(name)
    return data, name


def _check_columns(columns: list[str], source: str, text_column: str, label_column: str, labels_column: str,
                   id_columns: tuple[str, ...], id_column: str | None, ignore: frozenset[str]) -> None:
    """Refuse a file whose columns cannot be what the import takes, naming the columns it found."""
    found = ", ".join(repr(c) for c in columns) or "none"
    hint = "map them with --text-column, --label-column, --labels-column or --id-column"
    if text_column not in columns:
        raise ImportRefused(f"{source}: no {text_column!r} column; columns found: {found} ({hint})")
    if id_column is not None and id_column not in columns:
        raise ImportRefused(f"{source}: no {id_column!r} column (--id-column); columns found: {found}")
    known = {text_column, label_column, labels_column, *id_columns, *ignore}
    unknown = [c for c in columns if c not in known]
    if unknown and label_column not in columns and labels_column not in columns:
        raise ImportRefused(
            f"{source}: no {label_column!r} or {labels_column!r} column, and {', '.join(repr(c) for c in unknown)} "
            f"is not a column bertjobs knows; columns found: {found} ({hint}, or --ignore-column for one to skip)")


def parse_file(path: Path, *, fmt: str | None = None, max_chars: int = 100_000, text_column: str = "text",
               label_column: str = "label", labels_column: str = "labels", id_column: str | None = None,
               ignore_columns: tuple[str, ...] = ()) -> Iterator[dict | BadRow]:
    """Rows to import (``external_id``, ``text``, ``label``, ``labels``), or BadRow for each line that cannot be.

    Raises ImportRefused before the first row for a file that cannot be imported at all.
    """
    path = Path(path)
    raw, name = read_decompressed(path)
    fmt = fmt or detect_format(name)
    if fmt not in FORMATS:
        raise ImportRefused(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    id_columns = (id_column,) if id_column else ID_COLUMNS
    check = dict(source=path.name, text_column=text_column, label_column=label_column, labels_column=labels_column,
                 id_columns=id_columns, id_column=id_column, ignore=frozenset(ignore_columns))
    if fmt == "jsonl":
        records = _records_jsonl(raw)
        keys: dict[str, None] = {}
        for _, record in records:
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
        if keys:
            _check_columns(list(keys), **check)
    else:
        columns, records = _records_csv(raw.decode("utf-8-sig", errors="surrogateescape"),
                                        "\t" if fmt == "tsv" else ",")
        _check_columns(columns, **check)
    return _rows(records, max_chars, text_column, label_column, labels_column, fmt != "jsonl", id_columns)


def _rows(records, max_chars, text_column, label_column, labels_column, separated, id_columns):
    seen: dict[str, int] = {}
    for line, record in records:
        if isinstance(record, str):
            yield BadRow(line, record)
            continue
        row = _row(record, line, max_chars, text_column, label_column, labels_column, separated, id_columns)
        if isinstance(row, dict):
            hashed = row.pop("_hashed")
            row["_line"] = line
            first = seen.setdefault(row["external_id"], line)
            if first != line:
                row = BadRow(line, f"the same text as line {first} (without an id the text's hash is the id)"
                             if hashed else f"id {row['external_id']!r} repeated: first on line {first}")
        yield row


def import_file(sessions: sessionmaker[Session], path: Path, collection: str, **options) -> ImportReport:
    """Upsert the file's good rows into ``collection`` (a transaction per batch); report the bad ones.

    A batch the database refuses is written again row by row, so a row it cannot store is a bad row with its
    line number and every other row, before and after, loads.
    """
    check_name("collection", collection)
    report = ImportReport()
    batch: list[tuple[int, dict]] = []

    def write(rows: list[dict]) -> None:
        with sessions.begin() as s:
            counts = repo.upsert_documents(s, collection, rows)
        report.inserted += counts.inserted
        report.updated += counts.updated
        report.unchanged += counts.unchanged

    def flush() -> None:
        if not batch:
            return
        try:
            write([row for _, row in batch])
        except (DataError, UnicodeError):
            for line, row in batch:
                try:
                    write([row])
                except (DataError, UnicodeError) as exc:
                    reason = str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__]
                    report.bad.append(BadRow(line, f"the database cannot store it: {reason[0]}"))
        batch.clear()

    for item in parse_file(path, **options):
        if isinstance(item, BadRow):
            report.bad.append(item)
            continue
        batch.append((item.pop("_line", 0), item))
        if len(batch) >= BATCH_ROWS:
            flush()
    flush()
    report.bad.sort(key=lambda b: b.line)
    if report.inserted:
        with sessions.begin() as s:
            repo.analyze_if_stale(s, "documents", repo.count_documents(s, collection))
    return report
