"""Import documents from CSV or JSON Lines. Bad rows are reported with their line numbers; good rows load.

Columns: ``text`` (required), ``label`` (optional), ``id`` or ``external_id`` (optional). Without an id
the text's sha256 is the id, so re-importing the same file changes nothing either way.

A multi-label document carries ``labels`` instead of ``label``: in JSON Lines a list of strings, in CSV one
field with the labels separated by ``|``. The set is normalised (each label stripped, empty ones dropped,
duplicates removed, sorted); an empty set is no label. A row with both a ``label`` and ``labels`` is a bad row.
Every label is at most 200 characters.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sqlalchemy.orm import Session, sessionmaker

from db import repo
from worker.ml.text import text_problem

ID_COLUMNS = ("external_id", "id")
BATCH_ROWS = 1000
MAX_LABEL_CHARS = 200  # documents.label and each element of documents.labels
CSV_LABELS_SEPARATOR = "|"


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


def _label_problem(label: str) -> str | None:
    if "\x00" in label:
        return "a label contains NUL bytes"
    if len(label) > MAX_LABEL_CHARS:
        return f"a label is longer than {MAX_LABEL_CHARS} characters ({len(label)})"
    return None


def _label_set(value: object, column: str, separated: bool) -> list[str] | str:
    """The normalised label set of a ``labels`` field, or why it is not one."""
    if value is None:
        return []
    if separated and isinstance(value, str):
        value = value.split(CSV_LABELS_SEPARATOR)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return f"{column!r} is not a list of strings"
    return sorted({x.strip() for x in value} - {""})


def _row(record: dict, line: int, max_chars: int, text_column: str, label_column: str, labels_column: str,
         separated_labels: bool) -> dict | BadRow:
    if text_column not in record or record[text_column] is None:
        return BadRow(line, f"no {text_column!r} field")
    text = record[text_column]
    if not isinstance(text, str):
        return BadRow(line, f"{text_column!r} is not a string")
    values = [text] + [v for v in record.values() if isinstance(v, str)]
    if isinstance(record.get(labels_column), list):
        values += [v for v in record[labels_column] if isinstance(v, str)]
    if any(_has_invalid_utf8(v) for v in values):
        return BadRow(line, "invalid UTF-8")
    problem = text_problem(text, max_chars)
    if problem:
        return BadRow(line, problem)
    label = record.get(label_column)
    label = None if label is None or str(label).strip() == "" else str(label).strip()
    labels = _label_set(record.get(labels_column), labels_column, separated_labels)
    if isinstance(labels, str):
        return BadRow(line, labels)
    if label is not None and labels:
        return BadRow(line, f"both {label_column!r} and {labels_column!r}: a document has one label or a label set")
    for name in [label] if label is not None else labels:
        problem = _label_problem(name)
        if problem:
            return BadRow(line, problem)
    external_id = next((record[c] for c in ID_COLUMNS if record.get(c) not in (None, "")), None)
    if external_id is None:
        external_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]
    external_id = str(external_id)
    if len(external_id) > 200:
        return BadRow(line, "id is longer than 200 characters")
    return {"external_id": external_id, "text": text, "label": label, "labels": labels or None}


def _records_csv(raw: bytes) -> Iterator[tuple[int, dict | str]]:
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig", errors="surrogateescape"), newline=""))
    try:
        for record in reader:
            if None in record:
                yield reader.line_num, "more fields than the header"
                continue
            yield reader.line_num, record
    except csv.Error as exc:
        yield reader.line_num, f"malformed CSV: {exc}"


def _records_jsonl(raw: bytes) -> Iterator[tuple[int, dict | str]]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError:
            yield number, "invalid UTF-8"
            continue
        try:
            record = json.loads(decoded)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON: {exc.msg}"
            continue
        yield number, record if isinstance(record, dict) else "not a JSON object"


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    raise ValueError(f"cannot tell the format of {path.name}: use .csv or .jsonl, or pass the format")


def parse_file(path: Path, *, fmt: str | None = None, max_chars: int = 100_000, text_column: str = "text",
               label_column: str = "label", labels_column: str = "labels") -> Iterator[dict | BadRow]:
    """Rows to import (``external_id``, ``text``, ``label``, ``labels``), or BadRow for each line that cannot be."""
    path = Path(path)
    raw = path.read_bytes()
    if fmt is None:
        fmt = detect_format(path)
    records = _records_csv(raw) if fmt == "csv" else _records_jsonl(raw)
    for line, record in records:
        if isinstance(record, str):
            yield BadRow(line, record)
        else:
            yield _row(record, line, max_chars, text_column, label_column, labels_column, fmt == "csv")


def import_file(sessions: sessionmaker[Session], path: Path, collection: str, **options) -> ImportReport:
    """Upsert the file's good rows into ``collection`` (a transaction per batch); report the bad ones."""
    report = ImportReport()
    batch: dict[str, dict] = {}

    def flush() -> None:
        if not batch:
            return
        with sessions.begin() as s:
            counts = repo.upsert_documents(s, collection, list(batch.values()))
        report.inserted += counts.inserted
        report.updated += counts.updated
        report.unchanged += counts.unchanged
        batch.clear()

    for item in parse_file(path, **options):
        if isinstance(item, BadRow):
            report.bad.append(item)
            continue
        if item["external_id"] in batch:  # the same id twice in a file: the later row wins
            flush()
        batch[item["external_id"]] = item
        if len(batch) >= BATCH_ROWS:
            flush()
    flush()
    if report.inserted:
        with sessions.begin() as s:
            repo.analyze_if_stale(s, "documents", repo.count_documents(s, collection))
    return report
