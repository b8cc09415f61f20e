"""Long documents: which way of reading them earns its compute, side by side from one run.

    python bench/long_docs.py                          # ~10 minutes on a busy 2-core machine
    python bench/long_docs.py --train-docs 400 --test-docs 400 --methods all --threads 2

The corpus is synthetic but its label needs the whole document: each document joins 8-12 Rotten Tomatoes
snippets, a majority of one sentiment and at least two of the other, at random positions; the label is the
majority. The snippets are split 80/20 (stratified, seed 0) before documents are built, so no test document
shares a snippet with a training one; test documents alternate labels (a stratified test split).

Methods, each from the same MiniLM weights, seed, optimiser (AdamW, lr 5e-5, 10% warm-up, linear decay,
weight decay 0.01), batch size and epochs, trained on all training documents (no validation split: the test
split is separate) and scored on the test documents:
  tfidf        TF-IDF + logistic regression (worker.ml.baseline)
  truncate     the first 128 tokens (today's default)
  head_tail    the first 32 and last 94 tokens (worker.ml.longdocs.encode_head_tail)
  windows      every 128-token window (overlap 32) trains; the test pools window logits by mean, max and
               confidence (one model, three rows)
  sample1      one random window per document per epoch (an epoch costs what truncation costs); mean pooling
  truncate512  the first 512 tokens (MiniLM's limit: the whole document here); only with --methods
Training seconds count the optimisation steps only; "inputs" is how many model inputs were trained on.
"""
from __future__ import annotations

import argparse
import math
import random
import time

import torch  # noqa: I001
from common import emit_json, print_table

from worker.demo import base_model_path, load_corpus
from worker.ml.baseline import tfidf_baseline
from worker.ml.batching import encode, iter_batches, length_grouped_batches, tokenize
from worker.ml.intervals import wilson_interval
from worker.ml.longdocs import encode_head_tail, pool_logits, sample_windows
from worker.ml.split import stratified_split
from worker.ml.train import seed_everything
from worker.ml.trainer import make_scheduler, param_groups
from worker.ml.validation import document_logits

LABELS = ["fresh", "rotten"]
DEFAULT_METHODS = ["tfidf", "truncate", "head_tail", "windows", "sample1"]
ALL_METHODS = DEFAULT_METHODS + ["truncate512"]


def synthesise(texts: list[str], labels: list[str], n_docs: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """``n_docs`` documents, labels alternating, each 8-12 snippets with a majority of its label."""
    pools = {label: [t for t, lab in zip(texts, labels) if lab == label] for label in LABELS}
    for pool in pools.values():
        rng.shuffle(pool)
    cursor = {label: 0 for label in LABELS}

    def draw(label: str, k: int) -> list[str]:
        pool, start = pools[label], cursor[label]
        cursor[label] = start + k
        return [pool[(start + i) % len(pool)] for i in range(k)]  # reuses snippets only past the pool's end

    docs, doc_labels = [], []
    for i in range(n_docs):
        label, other = LABELS[i % 2], LABELS[1 - i % 2]
        n = rng.randint(8, 12)
        k = rng.randint(n // 2 + 1, n - 2)
        parts = draw(label, k) + draw(other, n - k)
        rng.shuffle(parts)
        docs.append(" ".join(parts))
        doc_labels.append(label)
    return docs, doc_labels


def corpus(train_docs: int, test_docs: int) -> tuple[list[str], list[str], list[str], list[str]]:
    rows = load_corpus()
    texts, labels = [r["text"] for r in rows], [r["category"] for r in rows]
    train_idx, test_idx = stratified_split(labels, 0.2, 0)
    rng = random.Random(0)
    train = synthesise([texts[i] for i in train_idx], [labels[i] for i in train_idx], train_docs, rng)
    test = synthesise([texts[i] for i in test_idx], [labels[i] for i in test_idx], test_docs, rng)
    order = list(range(train_docs))
    rng.shuffle(order)  # labels alternate as built; training batches are drawn at random anyway
    return [train[0][i] for i in order], [train[1][i] for i in order], test[0], test[1]


def new_model(seed: int):
    from transformers import AutoModelForSequenceClassification

    seed_everything(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        base_model_path(), num_labels=2, id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})


def train(ids, y, args, pick=None, on_epoch=None, epochs: int | None = None) -> tuple[object, float, int]:
    """(model, training seconds, inputs trained on): the fine_tune recipe over fixed epochs; ``pick(rng)``
    chooses which inputs train in an epoch (all by default); ``on_epoch(model, epoch)`` runs after each."""
    epochs = epochs or args.epochs
    from types import SimpleNamespace

    device = torch.device("cpu")
    model = new_model(args.seed).to(device).train()
    per_epoch = len(pick(random.Random(0))) if pick else len(ids)
    total_steps = math.ceil(per_epoch / args.batch_size) * epochs
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=args.learning_rate)
    recipe = SimpleNamespace(lr_schedule="linear", warmup_ratio=0.1)
    scheduler = make_scheduler(optimizer, recipe, total_steps)
    seconds, trained = 0.0, 0
    for epoch in range(epochs):
        rng = random.Random(args.seed * 1_000_003 + epoch)
        chosen = pick(rng) if pick else list(range(len(ids)))
        grouped = length_grouped_batches([len(ids[i]) for i in chosen], args.batch_size, rng)
        started = time.perf_counter()
        for batch, tensors in iter_batches(ids, [[chosen[j] for j in b] for b in grouped], args.pad_id, device):
            loss = torch.nn.functional.cross_entropy(model(**tensors).logits.float(),
                                                     torch.as_tensor([y[i] for i in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            trained += len(batch)
        seconds += time.perf_counter() - started
        if on_epoch:
            on_epoch(model.eval(), epoch + 1)
            model.train()
    return model.eval(), seconds, trained


def score(model, ids, owners, test_y, pad_id: int, pooling=("mean",)) -> dict[str, float]:
    """Test accuracy per pooling of the model's logits over ``ids`` (windows belong to ``owners``)."""
    logits = document_logits(model, ids, len(ids), 2, pad_id, torch.device("cpu"), "fp32")
    out = {}
    for how in pooling:
        predicted = pool_logits(logits, owners, len(test_y), how).argmax(-1).tolist()
        out[how] = sum(p == t for p, t in zip(predicted, test_y)) / len(test_y)
    return out


def run_method(method, tokenizer, train_texts, train_y, test_texts, test_y, args) -> list[dict]:
    """Rows {method, accuracy, train_seconds, inputs, eval_seconds} for one method (windows: one per pooling)."""
    if method in ("truncate", "truncate512", "head_tail"):
        length = 512 if method == "truncate512" else 128
        make = (lambda texts: encode_head_tail(tokenizer, texts, 128)) if method == "head_tail" else (
            lambda texts: tokenize(tokenizer, texts, length))
        train_ids, test_ids = make(train_texts), make(test_texts)
        model, seconds, inputs = train(train_ids, train_y, args, epochs=args.one_input_epochs)
        started = time.perf_counter()
        accuracy = score(model, test_ids, list(range(len(test_ids))), test_y, args.pad_id)["mean"]
        return [{"method": method, "accuracy": accuracy, "train_seconds": seconds, "inputs": inputs,
                 "eval_seconds": time.perf_counter() - started}]
    windows = {"long_documents": "windows", "window_overlap": 32, "max_windows": 16}
    train_ids, owners = encode(tokenizer, train_texts, 128, **windows)
    test_ids, test_owners = encode(tokenizer, test_texts, 128, **windows)
    window_y = [train_y[o] for o in owners]
    pick = (lambda rng: sample_windows(owners, 1, rng)) if method == "sample1" else None
    model, seconds, inputs = train(train_ids, window_y, args, pick,
                                   epochs=args.one_input_epochs if method == "sample1" else args.epochs)
    started = time.perf_counter()
    poolings = ("mean", "max", "confidence")
    accuracy = score(model, test_ids, test_owners, test_y, args.pad_id, poolings)
    elapsed = time.perf_counter() - started
    return [{"method": f"{method} ({how})", "accuracy": accuracy[how], "train_seconds": seconds, "inputs": inputs,
             "eval_seconds": elapsed} for how in poolings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-docs", type=int, default=160)
    parser.add_argument("--test-docs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-windows", action="store_true",
                        help="equal compute: methods with one input per document train for as many more epochs as "
                             "documents have windows on average (so as many inputs as windows train on)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared 2-core machine two threads ran 2-3x slower than one)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, or 'all': {', '.join(ALL_METHODS)}")
    args = parser.parse_args()
    methods = ALL_METHODS if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s): {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    args.pad_id = tokenizer.pad_token_id or 0
    train_texts, train_labels, test_texts, test_labels = corpus(args.train_docs, args.test_docs)
    lengths = sorted(len(ids) for ids in tokenize(tokenizer, train_texts, 100_000))
    print(f"{len(train_texts)} training and {len(test_texts)} test documents; tokens per document: median "
          f"{lengths[len(lengths) // 2]}, min {lengths[0]}, max {lengths[-1]}")
    train_y, test_y = [LABELS.index(v) for v in train_labels], [LABELS.index(v) for v in test_labels]
    windows_per_doc = len(encode(tokenizer, train_texts, 128, "windows")[0]) / len(train_texts)
    args.one_input_epochs = max(1, round(args.epochs * windows_per_doc)) if args.match_windows else args.epochs
    print(f"{windows_per_doc:.2f} windows of 128 tokens per document; one-input methods train "
          f"{args.one_input_epochs} epochs, windows {args.epochs}")
    rows = []
    for method in methods:
        if method == "tfidf":
            result = tfidf_baseline(train_texts, train_labels, test_texts, test_labels, LABELS)
            rows.append({"method": "tfidf", "accuracy": result["accuracy"], "train_seconds": result["fit_seconds"],
                         "inputs": len(train_texts), "eval_seconds": 0.0})
        else:
            rows.extend(run_method(method, tokenizer, train_texts, train_y, test_texts, test_y, args))
        print(f"  {rows[-1]['method']}: accuracy {rows[-1]['accuracy']:.4f}  ({rows[-1]['train_seconds']:.0f} s)",
              flush=True)
    truncation = next((r["train_seconds"] for r in rows if r["method"] == "truncate"), None)
    table = []
    for r in rows:
        low, high = wilson_interval(round(r["accuracy"] * len(test_y)), len(test_y))
        table.append([r["method"], f"{r['accuracy']:.4f}", f"{low:.3f}-{high:.3f}", f"{r['train_seconds']:.1f}",
                      f"{r['train_seconds'] / truncation:.2f}x" if truncation else "", r["inputs"],
                      f"{r['eval_seconds']:.1f}"])
    print_table(f"Long documents: {len(test_y)} test documents, {args.epochs} epochs of windows, "
                f"{args.one_input_epochs} of one input per document",
                ["method", "test accuracy", "95% interval", "train s", "vs truncate", "inputs trained", "test s"],
                table)
    emit_json("long_docs", {"train_docs": len(train_texts), "test_docs": len(test_texts), "epochs": args.epochs,
                            "one_input_epochs": args.one_input_epochs, "learning_rate": args.learning_rate,
                            "batch_size": args.batch_size, "median_tokens": lengths[len(lengths) // 2],
                            "rows": rows})


if __name__ == "__main__":
    main()
