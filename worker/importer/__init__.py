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

The package, in the order a file goes through it: files.py reads the bytes (decompressed) and tells the format;
parse.py reads CSV/TSV or JSON Lines into records and checks the columns; rows.py turns each record into a row
to store or a BadRow; store.py upserts the rows, a batch per transaction.
"""
from worker.importer.files import FORMATS, ImportRefused, detect_format, read_decompressed
from worker.importer.parse import parse_file
from worker.importer.rows import CSV_LABELS_SEPARATOR, ID_COLUMNS, MAX_LABEL_CHARS, BadRow
from worker.importer.store import BATCH_ROWS, ImportReport, import_file

__all__ = ["BATCH_ROWS", "CSV_LABELS_SEPARATOR", "FORMATS", "ID_COLUMNS", "MAX_LABEL_CHARS", "BadRow", "ImportRefused",
           "ImportReport", "detect_format", "import_file", "parse_file", "read_decompressed"]
