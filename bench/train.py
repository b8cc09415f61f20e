"""Training throughput and accuracy: bertjobs' fine_tune against transformers.Trainer with its defaults.

    python bench/train.py                       # MiniLM, 1,280 Rotten Tomatoes texts, 1 epoch, batch 32
    python bench/train.py --docs 4000 --epochs 2 --repeats 3

Both get the same model, texts, split (stratified, validation texts also in training left out, as fine_tune
does), epochs, batch size and learning rate; Trainer keeps its
other defaults (random batches with dynamic padding, no warm-up, no weight decay). Examples per second count
training steps only (evaluation excluded on both sides).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch  # noqa: I001
from common import emit_json, print_table, rt_corpus

from worker.demo import base_model_path
from worker.ml.config import TrainConfig
from worker.ml.labels import LabelMap
from worker.ml.split import split_without_leaks
from worker.ml.train import fine_tune


def run_bertjobs(texts, labels, args) -> dict:
    config = TrainConfig(base_model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, seed=args.seed, device="cpu", max_length=128)
    result = fine_tune(texts, labels, config)
    return {"examples_per_second": result.examples_per_second, "accuracy": result.metrics["accuracy"],
            "macro_f1": result.metrics["macro_f1"]}


def run_trainer(texts, labels, args) -> dict:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    label_map = LabelMap.from_labels(labels)
    train_idx, val_idx, _ = split_without_leaks(texts, labels, 0.2, args.seed)  # the validation fine_tune uses
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    y = label_map.encode(labels)

    def dataset(indices):
        enc = tokenizer([texts[i] for i in indices], truncation=True, max_length=128)
        return [{"input_ids": enc["input_ids"][k], "attention_mask": enc["attention_mask"][k], "labels": y[i]}
                for k, i in enumerate(indices)]

    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(label_map), id2label=label_map.id2label, label2id=label_map.label2id)
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-trainer-"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, learning_rate=args.learning_rate,
        seed=args.seed, report_to="none", save_strategy="no", logging_strategy="no", use_cpu=True,
        disable_tqdm=True)

    def accuracy(eval_pred):
        logits, gold = eval_pred
        return {"accuracy": float((logits.argmax(-1) == gold).mean())}

    trainer = Trainer(model=model, args=training_args, train_dataset=dataset(train_idx),
                      eval_dataset=dataset(val_idx), data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    return {"examples_per_second": len(train_idx) * args.epochs / seconds, "accuracy": metrics["eval_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1280)
    parser.add_argument("--model", default=None, help="base model folder or hub name (default: all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    args.model = args.model or base_model_path()
    texts, labels = rt_corpus(args.docs)

    results: dict[str, list[dict]] = {"bertjobs": [], "trainer": []}
    for _ in range(args.repeats):  # interleaved, so drift in the machine hits both sides alike
        results["trainer"].append(run_trainer(texts, labels, args))
        results["bertjobs"].append(run_bertjobs(texts, labels, args))
    summary = {name: {"examples_per_second": statistics.median(r["examples_per_second"] for r in runs),
                      "accuracy": statistics.median(r["accuracy"] for r in runs), "runs": runs}
               for name, runs in results.items()}
    base = summary["trainer"]["examples_per_second"]
    rows = [[name, f"{s['examples_per_second']:.1f}", f"{s['examples_per_second'] / base:.2f}x",
             f"{s['accuracy']:.4f}"] for name, s in summary.items()]
    print_table(f"training: {args.docs} texts (80/20 stratified), {args.epochs} epoch(s), batch {args.batch_size}, "
                f"lr {args.learning_rate}, {args.repeats} run(s), median", ["method", "examples/s", "vs Trainer",
                                                                             "val accuracy"], rows)
    emit_json("train", {"args": vars(args), "summary": summary})


if __name__ == "__main__":
    main()
