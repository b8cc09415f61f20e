"""Reading an import file's records (CSV, TSV or JSON Lines) and checking its columns before any row."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Iterator

from worker.importer.files import FORMATS, ImportRefused, detect_format, read_decompressed
from worker.importer.rows import ID_COLUMNS, BadRow, rows


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
    return rows(records, max_chars, text_column, label_column, labels_column, fmt != "jsonl", id_columns)
