"""`bertjobs import FILE --collection NAME`: load documents from CSV, TSV or JSON Lines (worker/importer/)."""
from __future__ import annotations

import sys
from pathlib import Path

from worker.cli.common import CliError, sessions
from worker.config import get_settings

# worker/importer's ID_COLUMNS, FORMATS and CSV_LABELS_SEPARATOR, typed again so that `bertjobs --help` does not
# import the database layer (0.3 s); tests/test_importer.py checks that the help names them.
ID_COLUMNS = ("external_id", "id")
FORMATS = ("csv", "tsv", "jsonl")
CSV_LABELS_SEPARATOR = "|"

DESCRIPTION = ("Bad rows (and an id repeated in the file) are skipped with their line numbers; the good rows load. "
               "Importing the same file again changes nothing.")


def cmd_import(args) -> int:
    from db.names import check_name
    from worker.importer import import_file

    path = Path(args.file)
    check_name("collection", args.collection)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    try:
        report = import_file(sessions(), path, args.collection, fmt=args.format,
                             max_chars=args.max_chars or get_settings().max_text_chars,
                             text_column=args.text_column, label_column=args.label_column,
                             labels_column=args.labels_column, id_column=args.id_column,
                             ignore_columns=tuple(args.ignore_column or ()))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for bad in report.bad[: args.show_bad]:
        print(f"{path}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    if len(report.bad) > args.show_bad:
        print(f"... and {len(report.bad) - args.show_bad} more bad rows", file=sys.stderr)
    print(f"collection {args.collection!r}: {report.inserted} inserted, {report.updated} updated, "
          f"{report.unchanged} unchanged, {len(report.bad)} bad rows skipped")
    return 0


def _add_column_flags(imp) -> None:
    ids = ", else ".join(repr(c) for c in ID_COLUMNS)
    columns = imp.add_argument_group(
        "columns", f"Recognised by name: the text in 'text' (required); the gold label in 'label', or a "
                   f"multi-label document's labels in 'labels' (optional); a row's id in {ids} "
                   "(optional; else the text's SHA-256). Other names: map them with these options. A file with no "
                   "text column, or no label column but columns it does not know, is refused with the columns "
                   "found.")
    columns.add_argument("--text-column", default="text", help="the column holding the text (default: text)")
    columns.add_argument("--label-column", default="label", help="the gold label's column (default: label)")
    columns.add_argument("--labels-column", default="labels",
                         help="a multi-label document's labels (JSON Lines: a list; CSV: separated by "
                              f"'{CSV_LABELS_SEPARATOR}'; default: labels)")
    columns.add_argument("--id-column", help=f"the id's column (default: {ids}, else the text's hash)")
    columns.add_argument("--ignore-column", action="append", metavar="COLUMN",
                         help="a column to skip, so a file without labels may have it (repeatable)")


def register(sub) -> None:
    imp = sub.add_parser(
        "import", help="import documents from CSV, TSV or JSON Lines (optionally .gz, .bz2, .xz, .zip of one file)",
        description=DESCRIPTION)
    imp.add_argument("file", help=".csv, .tsv (tabs), .jsonl; compressed .gz, .bz2, .xz or a .zip of one file")
    imp.add_argument("--collection", required=True, help="1-64 letters, digits, '_', '-', '.'")
    imp.add_argument("--format", choices=FORMATS, help="default: from the file name")
    imp.add_argument("--max-chars", type=int, help="longest text accepted (default: BERTJOBS_MAX_TEXT_CHARS)")
    imp.add_argument("--show-bad", type=int, default=20, help="bad rows to print")
    _add_column_flags(imp)
    imp.set_defaults(func=cmd_import)
