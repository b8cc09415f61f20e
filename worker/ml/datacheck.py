"""Data checks before training: what in a labelled set would cost days of debugging later.

Class balance, exact and near-exact duplicate texts, the same text with conflicting labels, empty texts, and
the length distribution in tokens with the share that ``max_length`` would truncate. ``check_data`` is pure
Python and takes an optional tokenizer (without one, lengths are counted in whitespace-separated words);
``check_training_data`` is the one check a training job and `bertjobs data check` run, with the base model's
tokenizer and the training options.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Sequence

from worker.ml.config import RECOMMENDED_POOLING, TrainConfig
from worker.ml.errors import ModelNotFound
from worker.ml.split import split_without_leaks, strata
from worker.ml.text import normalise


def _percentile(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def check_data(texts: Sequence[str], labels: Sequence[str | None], *, tokenizer=None,
               max_length: int = TrainConfig.max_length, examples: int = 5,
               long_documents: str = TrainConfig.long_documents, window_overlap: int = TrainConfig.window_overlap,
               max_windows: int = TrainConfig.max_windows, windows_per_epoch: int | str = "all") -> dict:
    """A report (plain JSON types) with ``blocking`` problems that must stop a training job, and ``warnings``.

    ``long_documents``, ``window_overlap``, ``max_windows`` and ``windows_per_epoch`` are the training's: with
    truncation, texts over ``max_length`` get the recommended long-document setting and what it would cost; with
    windows, the model inputs they make."""
    n = len(texts)
    if any(isinstance(label, (list, tuple)) for label in labels):  # multi-label: count each label of each set
        counts = Counter(label for s in labels if s for label in set(s))
        labels = [None if not s else "|".join(sorted(set(s))) for s in labels]  # conflicts compare whole sets
    else:
        counts = Counter(label for label in labels if label is not None)
    report: dict = {"documents": n, "class_counts": dict(sorted(counts.items())), "blocking": [], "warnings": []}
    if counts:
        report["imbalance_ratio"] = round(max(counts.values()) / min(counts.values()), 3)
    if n == 0:
        report["blocking"].append("nothing to train on")
        return report
    if len(counts) < 2:
        report["blocking"].append(f"only {len(counts)} class{'es' if len(counts) != 1 else ''}; need at least two")
    unlabelled = sum(1 for label in labels if label is None)
    if unlabelled:
        report["warnings"].append(f"{unlabelled} documents have no label")

    empty = [i for i, t in enumerate(texts) if not t or not t.strip()]
    report["empty_texts"] = len(empty)
    if empty:
        report["warnings"].append(f"{len(empty)} empty texts")

    _check_duplicates(report, texts, labels, examples)
    lengths = _check_lengths(report, texts, tokenizer, max_length)
    _long_text_advice(report, lengths, max_length, long_documents, window_overlap, max_windows, windows_per_epoch)
    if counts and report["imbalance_ratio"] >= 5:
        report["warnings"].append(f"classes are imbalanced {report['imbalance_ratio']}:1; prefer macro-F1")
    return report


def _check_duplicates(report: dict, texts: Sequence[str], labels: Sequence, examples: int) -> None:
    """Exact and near-exact duplicate texts, and near-exact groups with conflicting labels, into ``report``."""
    exact: dict[str, list[int]] = defaultdict(list)
    near: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        exact[t].append(i)
        near[normalise(t)].append(i)
    report["exact_duplicates"] = sum(len(ix) - 1 for ix in exact.values())
    report["near_duplicates"] = sum(len(ix) - 1 for ix in near.values()) - report["exact_duplicates"]
    conflicts = [ix for ix in near.values() if len({labels[i] for i in ix if labels[i] is not None}) > 1]
    report["conflicting_label_groups"] = len(conflicts)
    report["conflict_examples"] = [{"text": texts[ix[0]][:200], "labels": sorted({str(labels[i]) for i in ix})}
                                   for ix in conflicts[:examples]]
    if report["exact_duplicates"] or report["near_duplicates"]:
        report["warnings"].append(f"{report['exact_duplicates']} exact and {report['near_duplicates']} near-exact "
                                  "duplicate texts")
    if conflicts:
        report["warnings"].append(f"{len(conflicts)} texts appear with conflicting labels")


def _check_lengths(report: dict, texts: Sequence[str], tokenizer, max_length: int) -> list[int]:
    """The length distribution (tokens, or words without a tokenizer) and the share over ``max_length``."""
    if tokenizer is not None:
        lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]]
        unit = "tokens"
    else:
        lengths = [len(t.split()) + 2 for t in texts]
        unit = "words (+2)"
    n, truncated = len(texts), sum(1 for length in lengths if length > max_length)
    # Whole numbers throughout (a median of an even count is rounded, so runs print alike).
    report["length"] = {"unit": unit, "min": min(lengths), "median": int(round(statistics.median(lengths))),
                        "p95": _percentile(lengths, 0.95), "max": max(lengths), "max_length": max_length,
                        "truncated_share": round(truncated / n, 4)}
    if truncated / n > 0.05:
        report["warnings"].append(f"{truncated / n:.0%} of texts are longer than max_length {max_length}")
    return lengths


def windows_needed(length: int, max_length: int, overlap: int, max_windows: int) -> int:
    """How many model inputs a text of ``length`` tokens (special tokens included) makes as overlapping
    ``max_length`` windows that share ``overlap`` tokens, at most ``max_windows``: each window holds
    ``max_length - 2`` of the text's tokens and starts ``max_length - 2 - overlap`` after the one before."""
    content, room = max(0, length - 2), max(1, max_length - 2)
    step = max(1, room - overlap)
    return min(max_windows, 1 + -(-max(0, content - room) // step))


# The recommended long-document setting keeps an epoch at most this many times truncation's (bench/README.md,
# "Long documents"): beyond it, that many random windows per document train in an epoch.
MAX_COST_RATIO = 2


def _long_text_advice(report: dict, lengths: list[int], max_length: int, long_documents: str, overlap: int,
                      max_windows: int, per_epoch: int | str = "all") -> None:
    """What reading long texts whole would cost (``report["windows"]``), and the recommended setting when truncation
    drops much: the model inputs per epoch, and so roughly the training time, grow by the ratio."""
    if not lengths:
        return
    inputs = [windows_needed(length, max_length, overlap, max_windows) for length in lengths]
    ratio = sum(inputs) / len(lengths)
    cut = sum(1 for length in lengths if windows_needed(length, max_length, overlap, 10**9) > max_windows)
    report["windows"] = {"model_inputs": sum(inputs), "per_document": round(ratio, 2), "window_overlap": overlap,
                         "max_windows": max_windows, "texts_cut_at_max_windows": cut}
    if long_documents == "windows" and per_epoch != "all":
        report["windows"]["inputs_per_epoch"] = sum(min(per_epoch, n) for n in inputs)
    if long_documents == "truncate" and report["length"]["truncated_share"] > 0.05:
        report["warnings"].append(_recommendation(inputs, ratio, overlap, max_windows))
    elif long_documents == "windows" and cut:
        report["warnings"].append(f"{cut} texts need more than --max-windows {max_windows} windows; their ends are "
                                  "not read")


def recommended_options(per_document: float) -> dict:
    """The recommended long-document setting for texts that average ``per_document`` windows: windows with max
    pooling, and at most ``MAX_COST_RATIO`` random windows per document per epoch where all would cost more."""
    options = {"long_documents": "windows", "window_pooling": RECOMMENDED_POOLING}
    if per_document > MAX_COST_RATIO:
        options["windows_per_epoch"] = MAX_COST_RATIO
    return options


def _recommendation(inputs: list[int], ratio: float, overlap: int, max_windows: int) -> str:
    """The recommended long-document setting, as training flags, and what an epoch of it costs against truncation."""
    options = recommended_options(ratio)
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
    cost = (f"{sum(inputs)} model inputs for {len(inputs)} texts, {ratio:.1f}x, so about {ratio:.1f}x the training "
            "time per epoch of truncation")
    if "windows_per_epoch" in options:
        sampled = sum(min(options["windows_per_epoch"], n) for n in inputs)
        cost = (f"{sampled} model inputs per epoch for {len(inputs)} texts, {sampled / len(inputs):.1f}x truncation's "
                f"(all {sum(inputs)} windows would be {ratio:.1f}x), every window read over the epochs")
    return (f"to read them whole, train with the recommended {flags} (--window-overlap {overlap}, --max-windows "
            f"{max_windows}): {cost}")


def capped_max_length(max_length: int, tokenizer) -> int:
    """``max_length``, at most the tokenizer's ``model_max_length``: what training feeds the model."""
    if tokenizer is None:
        return max_length
    return min(max_length, tokenizer.model_max_length or max_length)


def _tokenizer(base_model: str):
    from transformers import AutoTokenizer

    from worker.ml.hf import quiet_transformers

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"base model {base_model!r}: no tokenizer could be loaded ({reason})") from exc


def check_training_data(base_model: str | None, texts: Sequence[str], labels: Sequence, config: TrainConfig) -> dict:
    """The data check a training job runs, and `bertjobs data check`: ``check_data`` with lengths in
    ``base_model``'s tokens (words when None) against ``config.max_length`` capped as training caps it, plus how
    many validation texts (training's split: ``config.val_fraction`` and ``config.seed``) also appear in training
    and are therefore left out of validation."""
    tokenizer = _tokenizer(base_model) if base_model else None
    report = check_data(texts, labels, tokenizer=tokenizer, max_length=capped_max_length(config.max_length, tokenizer),
                        long_documents=config.long_documents, window_overlap=config.window_overlap,
                        max_windows=config.max_windows, windows_per_epoch=config.windows_per_epoch)
    if report["blocking"]:
        return report
    removed = split_without_leaks(texts, strata(labels), config.val_fraction, config.seed)[2]
    report["validation_texts_seen_in_training"] = len(removed)
    if removed:
        report["warnings"].append(f"{len(removed)} validation texts also appear in training; they are left out "
                                  "of validation")
    return report
