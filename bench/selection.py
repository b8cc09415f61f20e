"""Epoch selection: does breaking near-ties toward the later epoch (or the lower validation loss) lose test
accuracy against keeping the epoch with the best validation score? Several seeds, one run.

    python bench/selection.py                         # MiniLM, 1,500 Rotten Tomatoes texts, 3 epochs, 3 seeds
    python bench/selection.py --docs 6000 --seeds 5

A fixed test split (stratified 20%, seed 0) is set aside; per seed, the rest is split into training and
validation as fine_tune does (80/20, validation texts also in training dropped) and a model trains with the
fine_tune recipe (bench/long_docs.py's loop), scored on validation and test after every epoch. Each rule then
picks an epoch from the validation history alone; the table shows the test accuracy of the epoch it picked.
"""
from __future__ import annotations

import argparse
import statistics

import torch  # noqa: I001
from common import emit_json, print_table
from long_docs import LABELS, train

from worker.demo import base_model_path, load_corpus
from worker.ml.batching import tokenize
from worker.ml.intervals import point_scores
from worker.ml.selection import choose_epoch
from worker.ml.split import split_without_leaks, stratified_split
from worker.ml.validation import document_logits

RULES = {"best": None, "later": "later", "lower loss": "lower_loss"}


def one_seed(texts, y, test_ids, test_y, tokenizer, seed: int, args) -> dict:
    train_idx, val_idx, _ = split_without_leaks(texts, [LABELS[v] for v in y], 0.2, seed)
    ids = tokenize(tokenizer, texts, 128)
    val_y = [y[i] for i in val_idx]
    history, test_accuracy = [], {}

    def on_epoch(model, epoch: int) -> None:
        val_logits = document_logits(model, [ids[i] for i in val_idx], len(val_idx), 2, args.pad_id,
                                     torch.device("cpu"), "fp32")
        predictions = val_logits.argmax(-1).tolist()
        loss = torch.nn.functional.cross_entropy(val_logits, torch.as_tensor(val_y)).item()
        history.append({"epoch": epoch, **point_scores(val_y, predictions, 2), "val_loss": loss,
                        "predictions": predictions})
        test_logits = document_logits(model, test_ids, len(test_ids), 2, args.pad_id, torch.device("cpu"), "fp32")
        test_accuracy[epoch] = sum(p == t for p, t in zip(test_logits.argmax(-1).tolist(), test_y)) / len(test_y)
        print(f"  seed {seed} epoch {epoch}: validation macro-F1 {history[-1]['macro_f1']:.4f}  "
              f"test accuracy {test_accuracy[epoch]:.4f}", flush=True)

    args.seed = seed
    train([ids[i] for i in train_idx], [y[i] for i in train_idx], args, on_epoch=on_epoch)
    out = {"test_accuracy": test_accuracy}
    for name, prefer in RULES.items():
        if prefer is None:
            epoch = max(history, key=lambda h: h["macro_f1"])["epoch"]  # the first best, as the trainer keeps
            out[name] = {"epoch": epoch, "rule": "best"}
        else:
            choice = choose_epoch(history, val_y, 2, prefer=prefer, seed=seed)
            out[name] = {"epoch": choice["epoch"], "rule": choice["rule"], "warning": choice["warning"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    args.pad_id = tokenizer.pad_token_id or 0
    rows = load_corpus()[: args.docs]
    labels = [r["category"] for r in rows]
    rest, test = stratified_split(labels, 0.2, 0)
    texts, y = [rows[i]["text"] for i in rest], [LABELS.index(labels[i]) for i in rest]
    test_ids = tokenize(tokenizer, [rows[i]["text"] for i in test], 128)
    test_y = [LABELS.index(labels[i]) for i in test]
    runs = [one_seed(texts, y, test_ids, test_y, tokenizer, seed, args) for seed in range(args.seeds)]
    table = []
    for name in RULES:
        chosen = [run["test_accuracy"][run[name]["epoch"]] for run in runs]
        table.append([name, " ".join(str(run[name]["epoch"]) for run in runs), f"{statistics.mean(chosen):.4f}",
                      " ".join(f"{a:.4f}" for a in chosen)])
    print_table(f"Test accuracy of the chosen epoch ({len(test_y)} test texts, {args.seeds} seeds)",
                ["rule", "epochs chosen", "mean test accuracy", "per seed"], table)
    emit_json("selection", {"docs": args.docs, "epochs": args.epochs, "seeds": args.seeds, "runs": runs})


if __name__ == "__main__":
    main()
