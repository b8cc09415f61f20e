"""The quality bar on long documents: TF-IDF+LR, truncation, head+tail and the recommended long-document setting, side
by side.

    python bench/quality_long.py                 # bench/long_docs.py's corpus and default size
    python bench/quality.py --long-docs          # the same section after the Rotten Tomatoes run
    python bench/quality_long.py --train-docs 400 --test-docs 300   # any bench/long_docs.py option

The corpus is bench/long_docs.py's (Rotten Tomatoes snippets joined so that the label depends on the whole
document); each transformer row is a ``fine_tune`` with the options a user gives, scored by the product's predictor.
Head+tail is ``--long-documents head_tail`` (the first 32 and the last 94 tokens: one input per document, as
truncation). The recommended setting is what `bertjobs data check` suggests for these texts (one function,
``worker.ml.datacheck.recommended_options``): ``--long-documents windows --window-pooling max``, plus
``--windows-per-epoch 2`` where documents average more than two windows of ``max_length`` (this corpus: 2.8).
"""
from __future__ import annotations

import sys

from common import emit_json  # noqa: I001  (sets up the path and offline mode)

import long_docs

NAMES = {"tfidf": "TF-IDF + logistic regression", "truncate": "truncation at 128 tokens (the default)",
         "head_tail": "head+tail (first 32 + last 94 tokens)", "recommended": "the recommended long-document setting"}


def long_docs_section(argv: list[str] | None = None) -> dict:
    """Train and score the four methods on the long corpus, print them side by side; the JSON record."""
    args = long_docs.parse_args([*(argv or []), "--methods", ",".join(NAMES)])
    record = long_docs.measure(args)
    record["rows"] = [{**r, "method": NAMES[r["method"]]} for r in record["rows"]]
    print("\nLong documents (bench/long_docs.py's corpus; train s: optimisation steps, job s: the whole fine_tune)")
    long_docs.print_rows(record["rows"], record["test_docs"],
                         f"{record['train_docs']} training and {record['test_docs']} test documents, {args.epochs} "
                         "epochs", NAMES["truncate"])
    long_docs.print_paired(record["rows"], record["truth"], (NAMES["truncate"], NAMES["tfidf"]))
    print(f"recommended: {record['rows'][-1]['options']}")
    return record


def main() -> None:
    emit_json("quality_long", long_docs_section(sys.argv[1:]))


if __name__ == "__main__":
    main()
