"""Calibration: does temperature scaling pay, and for multi-label, does a temperature per label beat one shared?

    python bench/calibration.py                 # MiniLM, 1,200 Rotten Tomatoes texts, 2 epochs: ~10 minutes
    python bench/calibration.py --docs 4000 --epochs 3

Single-label: fine_tune on Rotten Tomatoes texts; multi-label: documents of one or two snippets labelled by
the set of sentiments they hold ({fresh}, {rotten} or both). On each model's validation split the
temperatures are cross-fitted: fitted on one half, the calibration error (15 bins) measured on the other,
both ways round, so "after" is not measured on the texts it was fitted on.
"""
from __future__ import annotations

import argparse
import random

import torch  # noqa: I001
from common import emit_json, print_table

from worker.demo import base_model_path, load_corpus
from worker.ml.calibration import expected_calibration_error, fit_label_temperatures, fit_temperature, multilabel_ece
from worker.ml.config import TrainConfig
from worker.ml.train import fine_tune


def validation_logits(texts, labels, config) -> tuple[torch.Tensor, list, list[str]]:
    """(logits, targets, label names) of the kept epoch on the validation split fine_tune made."""
    result = fine_tune(texts, labels, config)
    logits, val = torch.as_tensor(result.val_logits), result.split.val_idx
    names = list(result.label_map.labels)
    return logits, [result.split.y[i] for i in val], names


def halves(n: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(0).shuffle(order)
    return order[: n // 2], order[n // 2:]


def cross_fitted(logits, targets, fit, error) -> dict:
    """Mean over the two halves of: error before, and after a fit on the other half."""
    a, b = halves(len(targets))
    before = after = 0.0
    for fit_on, test_on in ((a, b), (b, a)):
        t = fit(logits[fit_on], [targets[i] for i in fit_on])
        before += error(logits[test_on], [targets[i] for i in test_on], None) / 2
        after += error(logits[test_on], [targets[i] for i in test_on], t) / 2
    return {"before": before, "after": after, "fitted_on_all": fit(logits, targets)}


def multilabel_corpus(rows, n: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(1)
    texts, label_sets = [], []
    for i in range(n):
        parts = [rows[2 * i]] + ([rows[2 * i + 1]] if rng.random() < 0.5 else [])
        texts.append(" ".join(r["text"] for r in parts))
        label_sets.append(sorted({r["category"] for r in parts}))
    return texts, label_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_corpus()
    config = TrainConfig(base_model=base_model_path(), epochs=args.epochs, batch_size=16, device="cpu", seed=0)
    texts, labels = [r["text"] for r in rows[: args.docs]], [r["category"] for r in rows[: args.docs]]
    logits, y, _ = validation_logits(texts, labels, config)
    single = cross_fitted(logits, y, fit_temperature,
                          lambda z, t, temp: expected_calibration_error(z, t, temp if temp is not None else 1.0))
    ml_texts, ml_labels = multilabel_corpus(rows[args.docs:], args.docs)
    config.multi_label = True
    ml_logits, ml_y, names = validation_logits(ml_texts, ml_labels, config)
    ece = lambda z, t, temps: multilabel_ece(z, t, temps)  # noqa: E731
    shared = cross_fitted(ml_logits, ml_y, lambda z, t: fit_label_temperatures(z, t, shared=True), ece)
    per_label = cross_fitted(ml_logits, ml_y, fit_label_temperatures, ece)
    print_table(f"Calibration error (15 bins), cross-fitted on {len(y)} and {len(ml_y)} validation texts",
                ["model", "temperature(s)", "ECE before", "ECE after"],
                [["single-label", f"{single['fitted_on_all']:.3f}", f"{single['before']:.4f}", f"{single['after']:.4f}"],
                 ["multi-label, shared", f"{shared['fitted_on_all'][0]:.3f}", f"{shared['before']:.4f}",
                  f"{shared['after']:.4f}"],
                 ["multi-label, per label", ", ".join(f"{n} {t:.3f}" for n, t in zip(names, per_label["fitted_on_all"])),
                  f"{per_label['before']:.4f}", f"{per_label['after']:.4f}"]])
    emit_json("calibration", {"docs": args.docs, "epochs": args.epochs, "single": single, "multi_shared": shared,
                              "multi_per_label": per_label})


if __name__ == "__main__":
    main()
