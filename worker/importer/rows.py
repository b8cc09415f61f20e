"""One record of an import file to one row to store, or a BadRow saying why not (with its line number)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from worker.ml.text import text_problem

ID_COLUMNS = ("external_id", "id")
MAX_LABEL_CHARS = 200  # documents.label and each element of documents.labels
CSV_LABELS_SEPARATOR = "|"


@dataclass
class BadRow:
    line: int
    reason: str


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


def rows(records, max_chars, text_column, label_column, labels_column, separated, id_columns):
    """Each (line, record or why it is not one) as a row to store (with its ``_line``) or a BadRow; an id seen
    before in the file is a BadRow naming the first line."""
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
