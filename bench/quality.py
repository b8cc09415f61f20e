"""The quality bar: test scores that neither training nor model selection saw, the product against a plain Trainer.

    python bench/quality.py                                  # all 12,808 texts: about an hour on 2 CPU cores
    python bench/quality.py --texts 4000                     # a stratified subsample (seed 0)
    python bench/quality.py --arms product,trainer           # product default and plain Trainer only
    python bench/quality.py --option learning_rate=3e-5      # any training option for the product arms

Rotten Tomatoes (all-MiniLM-L6-v2) is split stratified 80/20 with seed 0; test texts whose text (near-exactly)
also appears in the 80% are left out of the test split. Arms, all trained on the same 80% and scored on the
same test split:

- ``product``: the real training job with the default recipe (import into a fresh SQLite database, a job row,
  the function a worker runs), which carves its own validation out of the 80% and chooses the epoch on it;
  scored through its artifact, before and after the temperature it fitted on that validation split;
- ``refit``: the same job with ``refit`` on: after the epoch choice it trains again on all of the 80% for the
  chosen number of epochs (worker/ml/refit.py), keeping the selection run's temperature. With both arms asked
  for, one job gives both: its selection model (the very model the default job registers: same data, seed and
  code up to the refit) is scored on the test texts just before the refit replaces it, which saves a run;
- ``trainer``: a plain ``transformers.Trainer`` on all of the 80%: lr 5e-5, batch 32, 3 epochs, 10% warm-up,
  weight decay 0.01, max length 128, the last epoch kept.

It prints test accuracy and macro-F1 with bootstrap intervals, each product arm's paired difference against
the Trainer, the ECE on the test split before and after the temperature (the target: after <= half of before),
what the job recorded on its validation split, and a JSON line. Each arm's line is printed (and flushed) as it
finishes, so a long run that is cut short still reports the arms it finished.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import emit_json  # noqa: I001  (sets up the path and offline mode)

from db import migrate
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_training
from worker.config import Settings
from worker.demo import _write_jsonl, base_model_path, load_corpus, show_job_log
from worker.importer import import_file
from worker.ml.calibration import expected_calibration_error
from worker.ml.intervals import paired_difference, score_intervals
from worker.ml.split import leaking_validation, stratified_split

ARMS = ("product", "refit", "trainer")
TRAINER_RECIPE = {"learning_rate": 5e-5, "batch_size": 32, "epochs": 3, "warmup_ratio": 0.1, "weight_decay": 0.01,
                  "max_length": 128, "seed": 42}


# ---------------------------------------------------------------- data


def stratified_subsample(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` rows with the corpus's label shares (0 or more than the corpus: all of it), in corpus order."""
    if not n or n >= len(rows):
        return rows
    by_label = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row["category"]].append(i)
    rng, keep = random.Random(seed), []
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        keep.extend(idx[: round(n * len(idx) / len(rows))])
    return [rows[i] for i in sorted(keep)]


def test_split(rows: list[dict], seed: int = 0) -> tuple[list[dict], list[dict], int]:
    """(train rows, test rows, test texts left out because training has the same text): stratified 80/20."""
    labels = [r["category"] for r in rows]
    train, test = stratified_split(labels, 0.2, seed)
    texts = [r["text"] for r in rows]
    leaked = set(leaking_validation(texts, train, test))
    return [rows[i] for i in train], [rows[i] for i in test if i not in leaked], len(leaked)


# ---------------------------------------------------------------- arms


def run_product(train_rows: list[dict], base_model: str, options: dict, tmp: Path) -> dict:
    """The real training job on ``train_rows``: {"artifact", "metrics", "lineage", "hyperparameters", "wall"}."""
    from db.models import ModelVersion

    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp}/quality.db")
    url = settings.resolved_database_url
    migrate.upgrade(url)
    sessions = session_factory_for(url)
    path = tmp / "rt.jsonl"
    _write_jsonl(path, train_rows)
    import_file(sessions, path, "rt", max_chars=100_000)
    started = time.perf_counter()
    handle = submit_training("rt", base_model, model_name="rt-quality", options=options, enqueue=False,
                             settings=settings)
    jobs.run_inline(handle.id, "train", settings=settings)
    wall = time.perf_counter() - started
    snap = handle.snapshot()
    if snap.status != "succeeded":
        raise SystemExit(f"training job {snap.status}: {snap.error}")
    with sessions.begin() as s:
        mv = s.get(ModelVersion, snap.result["model_version_id"])
        return {"artifact": mv.artifact_path, "metrics": mv.metrics, "lineage": mv.lineage,
                "hyperparameters": mv.hyperparameters, "wall": wall}


def model_logits(model, tokenizer, max_length: int, windows: dict, texts: list[str]) -> list[list[float]]:
    """Logits per text on the CPU in fp32, texts read as training read them (truncated, or windows averaged)."""
    import torch

    from worker.ml.batching import encode
    from worker.ml.validation import document_logits

    ids, owners = encode(tokenizer, texts, max_length, **windows)
    return document_logits(model, ids, len(texts), model.config.num_labels, tokenizer.pad_token_id or 0,
                           torch.device("cpu"), "fp32", owners=owners).tolist()


def artifact_logits(artifact: str, texts: list[str]) -> tuple[list[list[float]], list[str], float]:
    """(logits per text, labels, temperature) of a saved model, read the way every prediction path reads it."""
    from worker.ml.predict import Classifier

    clf = Classifier.from_artifact(artifact, device="cpu", precision="fp32")
    return model_logits(clf.model, clf.tokenizer, clf.max_length, clf.windows, texts), clf.labels, clf.temperature


def capture_selection(test_texts: list[str], sink: dict):
    """Score the refit job's selection model on the test texts just before the refit replaces it: the model the
    default job registers (same data, seed and code up to registration), so one job gives both product arms.
    Returns a function that undoes the patch."""
    import worker.ml.refit as module

    original = module.refit

    def refit(texts, labels, selected, *args, **kwargs):
        sink["logits"] = model_logits(selected.model, selected.tokenizer, selected.max_length,
                                      selected.config.window_settings(), test_texts)
        sink["seconds"] = selected.seconds
        return original(texts, labels, selected, *args, **kwargs)

    module.refit = refit
    return lambda: setattr(module, "refit", original)


def run_trainer(train_rows: list[dict], test_texts: list[str], labels: list[str], base_model: str) -> dict:
    """A plain transformers.Trainer on all of ``train_rows`` (TRAINER_RECIPE): {"logits", "wall"}."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from worker.ml.validation import document_logits

    r = TRAINER_RECIPE
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    label2id = {label: i for i, label in enumerate(labels)}
    enc = tokenizer([row["text"] for row in train_rows], truncation=True, max_length=r["max_length"])
    data = [{"input_ids": ids, "attention_mask": mask, "labels": label2id[row["category"]]}
            for ids, mask, row in zip(enc["input_ids"], enc["attention_mask"], train_rows)]
    torch.manual_seed(r["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-quality-trainer-"), per_device_train_batch_size=r["batch_size"],
        num_train_epochs=r["epochs"], learning_rate=r["learning_rate"], warmup_steps=r["warmup_ratio"],  # a ratio below 1
        weight_decay=r["weight_decay"], seed=r["seed"], report_to="none", save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True)
    started = time.perf_counter()
    Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)).train()
    wall = time.perf_counter() - started
    test_ids = tokenizer(test_texts, truncation=True, max_length=r["max_length"])["input_ids"]
    logits = document_logits(model.to("cpu"), test_ids, len(test_texts), len(labels), tokenizer.pad_token_id or 0,
                             torch.device("cpu"), "fp32")
    return {"logits": logits.tolist(), "wall": wall}


# ---------------------------------------------------------------- scores


def test_scores(logits: list[list[float]], truth: list[int], n_labels: int, temperature: float | None) -> dict:
    """Accuracy and macro-F1 with 95% bootstrap intervals, ECE before and (with a temperature) after."""
    predictions = [max(range(n_labels), key=row.__getitem__) for row in logits]
    out = {"predictions": predictions, "intervals": score_intervals(truth, predictions, n_labels),
           "ece_before": expected_calibration_error(logits, truth)}
    out["accuracy"], out["macro_f1"] = out["intervals"]["accuracy"]["value"], out["intervals"]["macro_f1"]["value"]
    if temperature is not None:
        out["temperature"] = temperature
        out["ece_after"] = expected_calibration_error(logits, truth, temperature)
    return out


def arm_line(name: str, s: dict, wall: float) -> str:
    iv = s["intervals"]
    line = (f"{name:8} test accuracy {s['accuracy']:.4f} [{iv['accuracy']['low']:.4f}, {iv['accuracy']['high']:.4f}]  "
            f"macro-F1 {s['macro_f1']:.4f} [{iv['macro_f1']['low']:.4f}, {iv['macro_f1']['high']:.4f}]  "
            f"ECE {s['ece_before']:.4f}")
    if "ece_after" in s:
        line += f" -> {s['ece_after']:.4f} at T={s['temperature']:.3f}"
    return line + f"  ({wall:.0f} s)"


def paired_lines(scores: dict, truth: list[int], n_labels: int) -> dict:
    """Each product arm minus the Trainer (and refit minus product), paired bootstrap, accuracy and macro-F1."""
    pairs = [(a, "trainer") for a in ("product", "refit") if a in scores and "trainer" in scores]
    pairs += [("refit", "product")] if "refit" in scores and "product" in scores else []
    out = {}
    for a, b in pairs:
        d = {m: paired_difference(truth, scores[a]["predictions"], scores[b]["predictions"], n_labels, metric=m)
             for m in ("accuracy", "macro_f1")}
        out[f"{a}-{b}"] = d
        print(f"{a} - {b}: accuracy {d['accuracy']['difference']:+.4f} [{d['accuracy']['low']:+.4f}, "
              f"{d['accuracy']['high']:+.4f}]  macro-F1 {d['macro_f1']['difference']:+.4f} "
              f"[{d['macro_f1']['low']:+.4f}, {d['macro_f1']['high']:+.4f}]  (paired bootstrap, 95%)", flush=True)
    return out


def print_scorecard(metrics: dict, wall: float) -> None:
    """What the job recorded beside the scores: the TF-IDF+LR baseline on the same split, calibration, warnings."""
    baseline = metrics.get("tfidf_baseline") or {}
    if "accuracy" in baseline:
        print(f"  TF-IDF+LR (same split): validation accuracy {baseline['accuracy']:.4f}  "
              f"macro-F1 {baseline['macro_f1']:.4f}  fit {baseline['fit_seconds']:.1f} s "
              f"({100 * baseline['fit_seconds'] / wall:.1f}% of the job's wall time)")
    print("  baseline: " + (metrics.get("tfidf_comparison") or {}).get("line", "not recorded"))
    calibration = metrics.get("calibration")
    if calibration:
        print(f"  calibration: temperature {calibration['temperature']:.3f}, ECE {calibration['ece_before']:.4f} -> "
              f"{calibration['ece_after']:.4f} (on the validation split it was fitted on)")
    for warning in metrics.get("trust_warnings") or []:
        print(f"  trust: {warning}")


def print_job_record(name: str, run: dict) -> None:
    """The job's own (validation) record: per-epoch history, the kept epoch, the refit, the score card."""
    metrics, lineage = run["metrics"], run["lineage"]
    print(f"{name}: job trained on {lineage['train_size']}, validated on {lineage['val_size']}"
          + (f"; refit {lineage['refit']['epochs']} epoch(s) on {lineage['refit']['train_size']}"
             if lineage.get("refit") else ""))
    for h in metrics["history"]:
        print(f"  epoch {h['epoch']}: train loss {h['train_loss']:.4f}  validation accuracy {h['accuracy']:.4f}  "
              f"macro-F1 {h['macro_f1']:.4f}  ({h['seconds']:.0f} s)")
    print(f"  validation accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  kept epoch "
          f"{metrics['best_epoch']}" + ("  (the selection run's: the refit model saw validation)"
                                        if lineage.get("refit") else ""))
    print_scorecard(metrics, run["wall"])


# ---------------------------------------------------------------- main


def _option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    return name, json.loads(value)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="base model (default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--texts", type=int, default=0, help="a stratified subsample of N texts (0: all 12,808)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); on a loaded "
                        "machine 1 thread ran faster than 2")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="NAME=JSON",
                        help="a training option of the product arms, e.g. epochs=2 (repeatable)")
    args = parser.parse_args(argv)
    args.arms = [a for a in ARMS if a in args.arms.split(",")]
    return args


def run_arm(arm: str, args, train_rows, test_texts, labels, tmp: Path) -> dict[str, tuple[list, float | None, dict]]:
    """arm -> (test logits, temperature or None, the job's record or {"wall"}). The refit arm, when the product
    arm is also asked for, gives both from one job (``capture_selection``)."""
    base = args.model or base_model_path()
    if arm == "trainer":
        out = run_trainer(train_rows, test_texts, labels, base)
        return {arm: (out["logits"], None, {"wall": out["wall"]})}
    options = {**dict(args.option), **({"refit": True} if arm == "refit" else {})}
    selection: dict = {}
    undo = capture_selection(test_texts, selection) if arm == "refit" and "product" in args.arms else None
    (tmp / arm).mkdir()
    try:
        run = run_product(train_rows, base, options, tmp / arm)
    finally:
        undo and undo()
    logits, artifact_labels, temperature = artifact_logits(run["artifact"], test_texts)
    if artifact_labels != labels:
        raise SystemExit(f"label order differs: {artifact_labels} against {labels}")
    print_job_record(arm, run)
    arms = {arm: (logits, temperature, run)}
    if selection:  # the selection run's record is the job's (the refit keeps its scores and temperature)
        arms["product"] = (selection["logits"], temperature, {**run, "wall": selection["seconds"]})
    return arms


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    show_job_log()
    rows = stratified_subsample(load_corpus(), args.texts)
    train_rows, test_rows, leaked = test_split(rows)
    labels = sorted({r["category"] for r in rows})
    test_texts, truth = [r["text"] for r in test_rows], [labels.index(r["category"]) for r in test_rows]
    print(f"texts {len(rows)}: train {len(train_rows)}, test {len(test_rows)} ({leaked} test texts left out: "
          f"training has the same text); arms {', '.join(args.arms)}", flush=True)
    scores, records = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        for arm in [a for a in args.arms if not (a == "product" and "refit" in args.arms)]:  # refit gives both
            for name, (logits, temperature, record) in run_arm(arm, args, train_rows, test_texts, labels,
                                                               Path(tmp)).items():
                scores[name] = test_scores(logits, truth, len(labels), temperature)
                records[name] = {k: v for k, v in record.items() if k in ("wall", "hyperparameters")}
                records[name]["validation"] = {k: record["metrics"][k] for k in ("accuracy", "macro_f1", "best_epoch")
                                               } if "metrics" in record else None
                print(arm_line(name, scores[name], record["wall"]), flush=True)
    print(f"\nTest split: {len(test_rows)} texts, none seen by training or by model selection")
    for arm in args.arms:
        print(arm_line(arm, scores[arm], records[arm]["wall"]))
    paired = paired_lines(scores, truth, len(labels))
    emit_json("quality", {"texts": len(rows), "train": len(train_rows), "test": len(test_rows),
                          "test_left_out": leaked, "options": dict(args.option), "paired": paired,
                          "arms": {a: {**records[a], **{k: v for k, v in scores[a].items() if k != "predictions"}}
                                   for a in args.arms}})
    sys.stdout.flush()


if __name__ == "__main__":
    main()
