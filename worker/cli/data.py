"""`bertjobs data check --collection NAME`: the data check a training job runs (worker/ml/datacheck.py), before
training: balance, duplicates, conflicting labels, lengths and validation texts seen in training; with
``--against TEST``, the texts of a test collection that training would see too."""
from __future__ import annotations

import json

from worker.cli.common import CliError, json_flag, sessions
from worker.cli.submit import add_train_flags, train_options

# The training options the check repeats, so that it splits and measures as that training would.
CHECK_OPTIONS = ("max_length", "val_fraction", "seed", "multi_label", "long_documents", "window_overlap", "max_windows",
                 "windows_per_epoch")
# TrainConfig wants a base model; without --base-model the check counts words and reads no model.
NO_BASE_MODEL = "(none: lengths in words)"


def cmd_check(args) -> int:
    from db import repo
    from worker.ml.config import TrainConfig
    from worker.ml.datacheck import check_training_data

    config = TrainConfig.from_dict({"base_model": args.base_model or NO_BASE_MODEL, **train_options(args)})
    with sessions().begin() as s:
        if not repo.collection_exists(s, args.collection):
            raise CliError(f"unknown collection {args.collection!r}")
        data = repo.load_labelled(s, args.collection, multi_label=config.multi_label)
    report = check_training_data(args.base_model, data.texts, data.labels, config)
    report["unlabelled_documents"] = data.unlabelled
    if args.against:
        _check_against(report, args.collection, args.against, data.texts, config.multi_label)
    if args.json:
        from worker.present import print_json

        print_json(report)
    else:
        print(json.dumps(report, indent=2, default=str))
    return 1 if report["blocking"] else 0


def _check_against(report: dict, collection: str, against: str, texts, multi: bool) -> None:
    """The labelled texts of ``against`` (a test collection) that are also in ``collection``, verbatim or
    near-exactly: ``report["against"]``, and a warning when there are any."""
    from db import repo
    from worker.ml.leakage import overlap_report, overlap_warning

    with sessions().begin() as s:
        if not repo.collection_exists(s, against):
            raise CliError(f"unknown collection {against!r}")
        other = repo.load_labelled(s, against, multi_label=multi)
    overlap = overlap_report(other.texts, texts)
    report["against"] = {"collection": against, **overlap}
    warning = overlap_warning(overlap, f"{against!r}", f"{collection!r}")
    if warning:
        report.setdefault("warnings", []).append(warning)


def register(sub) -> None:
    data = sub.add_parser("data", help="check a collection's labelled data before training", parents=[json_flag()])
    dsub = data.add_subparsers(dest="action", required=True)
    check = dsub.add_parser(
        "check", parents=[json_flag()], help="balance, duplicates, conflicting labels, lengths, leaks",
        description="The check a training job runs before it trains: class balance, exact and near-exact "
                    "duplicates, texts with conflicting labels, empty texts, lengths against max_length (capped "
                    "at the tokenizer's maximum, as training caps it) and validation texts also in training. "
                    "Exit status 1 when a problem would stop training.")
    check.add_argument("--collection", required=True)
    check.add_argument("--base-model", help="count lengths with this model's tokenizer (default: words)")
    check.add_argument("--against", metavar="TEST",
                       help="also report the labelled texts of this collection (a test set) that are in --collection, "
                            "verbatim or near-exactly (case, accents, punctuation, spacing ignored), with examples")
    add_train_flags(check, CHECK_OPTIONS)
    check.set_defaults(func=cmd_check)
