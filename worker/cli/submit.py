"""`bertjobs train` and `bertjobs classify`: submit a job through worker/client.py, then run or follow it.

Every TrainConfig option is a flag of `train`; its help shows TrainConfig's default and the accepted values.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from worker.cli.common import MODEL_REF, add_run_flags, document_filter
from worker.cli.follow import run_or_wait
from worker.ml.config import DEFAULT_EPOCHS, MAX_AUTO_EPOCHS, MIN_STEPS


def _json_or_word(value: str) -> Any:
    """A JSON value, or a bare word (``auto``) as a string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _count_or_word(value: str) -> Any:
    """A whole number, or a word (``all``) as a string: TrainConfig.validate() says which words it takes."""
    try:
        return int(value)
    except ValueError:
        return value


# Training options as command-line flags: (option, type); every TrainConfig field but base_model.
TRAIN_FLAGS = [("epochs", int), ("batch_size", int), ("learning_rate", float), ("max_length", int),
               ("val_fraction", float), ("seed", int), ("warmup_ratio", float), ("weight_decay", float),
               ("device", str), ("precision", str), ("select_metric", str), ("gradient_accumulation", int),
               ("lr_schedule", str), ("early_stopping_patience", int), ("class_weights", _json_or_word),
               ("long_documents", str), ("window_overlap", int), ("max_windows", int), ("window_pooling", str),
               ("windows_per_epoch", _count_or_word), ("trials", int),
               ("search_space", _json_or_word), ("multi_label", bool), ("refit", bool)]

TRAIN_HELP = {
    "epochs": f"passes over the training split (unset: {DEFAULT_EPOCHS}, more for a small set, up to "
              f"{MAX_AUTO_EPOCHS}: enough for {MIN_STEPS} optimizer steps; validation picks the epoch kept)",
    "batch_size": "documents per batch",
    "learning_rate": "AdamW peak learning rate", "max_length": "tokens per model input",
    "val_fraction": "share of the labelled documents held out for validation", "seed": "seed of split, shuffle and init",
    "warmup_ratio": "share of the steps spent warming up", "weight_decay": "AdamW weight decay",
    "device": "where to train", "precision": "auto: bf16 or fp16 on GPUs, fp32 on CPU",
    "select_metric": "which epoch (and search trial) wins", "gradient_accumulation": "optimizer step every N batches",
    "lr_schedule": "after the warm-up", "early_stopping_patience": "stop after N epochs without improvement; 0: never",
    "class_weights": 'null, "auto" or a JSON object of label -> weight', "long_documents": "head_tail: the first "
    "quarter and last three quarters of max_length, one input per document; windows: overlapping windows, logits "
    "pooled", "window_overlap": "tokens shared by consecutive windows",
    "max_windows": "windows per document at most",
    "window_pooling": "windows: how a document's logits come from its windows'; unset: max, the recommended",
    "windows_per_epoch": "windows: train on N random windows per document per epoch, or all",
    "trials": "hyperparameter search trials; 0: train once",
    "search_space": "JSON object of option -> list of values", "multi_label": "documents carry label sets",
    "refit": "after choosing the epochs on validation, train again on all labelled documents for that many "
    "epochs and keep that model (the scores shown stay the validation run's); "
    "off, training takes about half the time; unset: on, except for multi_label",
}


def _train_flag_help(name: str) -> str:
    """The flag's help: what it does, TrainConfig's default, and the values validate() accepts."""
    from dataclasses import fields

    from worker.ml import config

    choices = {"precision": config.PRECISIONS, "lr_schedule": config.LR_SCHEDULES, "device": config.DEVICES,
               "long_documents": config.LONG_DOCUMENTS, "select_metric": config.SELECT_METRICS,
               "window_pooling": config.WINDOW_POOLINGS, "windows_per_epoch": ("all", "N")}
    default = next(f.default for f in fields(config.TrainConfig) if f.name == name)
    shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    text = f"{TRAIN_HELP[name]} (default: {shown}" + (f"; choices: {', '.join(choices[name])})" if name in choices
                                                      else ")")
    return text.replace("%", "%%")


def add_train_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """A flag per training option (``names``, default all); unset flags stay None so TrainConfig decides."""
    for name, typ in TRAIN_FLAGS:
        if names is not None and name not in names:
            continue
        flag = f"--{name.replace('_', '-')}"
        if typ is bool:  # --refit / --no-refit: either way explicitly, whatever TrainConfig's default
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=_train_flag_help(name))
        else:
            metavar = {_json_or_word: "JSON", _count_or_word: "all|N"}.get(typ)
            parser.add_argument(flag, type=typ, metavar=metavar,
                                help=_train_flag_help(name))


def train_options(args) -> dict[str, Any]:
    """The training options given on the command line (those of ``add_train_flags`` that are set)."""
    return {n: getattr(args, n) for n, _ in TRAIN_FLAGS if getattr(args, n, None) is not None}


def tag_pairs(values: Sequence[str] | None) -> dict[str, str]:
    """``--tag key=value`` flags as a dict (a later key wins)."""
    from worker.cli.common import CliError

    tags = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--tag takes key=value, got {value!r}")
        tags[key.strip()] = text
    return tags


def cmd_train(args) -> int:
    from worker.client import submit_training

    handle = submit_training(args.collection, args.base_model, model_name=args.name, options=train_options(args),
                             skip_unlabelled=args.skip_unlabelled, filter=document_filter(args),
                             idempotency_key=args.idempotency_key, enqueue=not args.inline,
                             description=args.description, tags=tag_pairs(args.tag))
    return run_or_wait(handle, "train", args)


def cmd_classify(args) -> int:
    from worker.client import submit_classification

    handle = submit_classification(args.collection, args.model, only_missing=not args.all, shards=args.shards,
                                   filter=document_filter(args), idempotency_key=args.idempotency_key,
                                   enqueue=not args.inline)
    return run_or_wait(handle, "classify", args)


def register(sub) -> None:
    tr = sub.add_parser("train", help="queue a fine-tuning job")
    tr.add_argument("--collection", required=True)
    tr.add_argument("--base-model", required=True, help="hub name (bert-base-uncased) or local folder")
    tr.add_argument("--name", help="model name (default: the collection)")
    tr.add_argument("--skip-unlabelled", action="store_true", help="train on the labelled part of the collection")
    tr.add_argument("--description", help="what the model is for (models list/show and the report show it)")
    tr.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a tag for the model version (repeatable)")
    add_train_flags(tr)
    add_run_flags(tr)
    tr.set_defaults(func=cmd_train)

    cl = sub.add_parser("classify", help="queue a bulk classification job")
    cl.add_argument("--collection", required=True)
    cl.add_argument("--model", required=True, help=MODEL_REF)
    cl.add_argument("--all", action="store_true", help="re-classify documents this model version already did")
    cl.add_argument("--shards", type=int,
                    help="split into N jobs for N workers (default: by BERTJOBS_CLASSIFY_SHARD_SIZE)")
    add_run_flags(cl)
    cl.set_defaults(func=cmd_classify)
