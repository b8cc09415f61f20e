"""Long documents: which way of reading them earns its compute, side by side from one run, through the product's
own training (``fine_tune``, the options a user gives) and predictor (``Classifier``, pooling as recorded).

    python bench/long_docs.py                          # the default methods at the default size
    python bench/long_docs.py --train-docs 400 --test-docs 300 --methods all --threads 1

The corpus is synthetic but its label needs the whole document: each document joins 8-12 Rotten Tomatoes
snippets, a majority of one sentiment and at least two of the other, at random positions; the label is the
majority. The snippets are split 80/20 (stratified, seed 0) before documents are built, so no test document
shares a snippet with a training one; test documents alternate labels (a stratified test split).

Methods, each a training job's ``fine_tune`` from the same MiniLM weights, seed and recipe (AdamW, 10% warm-up,
linear decay, weight decay 0.01, fp32), the product's validation split of the training documents (``--val-fraction``)
choosing the kept epoch, scored on the test documents by the product's predictor:
  tfidf        TF-IDF + logistic regression (worker.ml.baseline), on the same training documents
  truncate     the first 128 tokens (the default), ``--epochs``
  truncate2x   the same, twice the epochs
  head_tail    ``--long-documents head_tail``: the first 32 and the last 94 tokens (Sun et al.'s quarter head)
  windows      ``--long-documents windows`` (128 tokens, overlap 32) with the recommended max pooling; the test
               set is also scored pooling by mean and by confidence (the same model, one row each)
  sampled      the same with ``--windows-per-epoch K`` (``--sample``, default 2): K random windows per document
               per epoch, so an epoch costs at most K epochs of truncation
  truncate512  the first 512 tokens (MiniLM's limit: the whole document here); only with --methods
  recommended  what `bertjobs data check` suggests for this corpus (worker.ml.datacheck.recommended_options:
               windows, max pooling, and 2 windows per document per epoch where documents average more than 2);
               only with --methods (bench/quality_long.py runs it)
"train s" is the optimisation steps only (``TrainResult.train_seconds``); "job s" is the whole ``fine_tune`` call
(tokenizing, loading, validation each epoch); "inputs" is how many model inputs were trained on. Each row's JSON also
holds the run's history (training loss, validation accuracy per epoch) and ``loss_trace``: the mean training loss of
every 20 batches, [epoch, batches, loss], which shows a run that never leaves chance (about 0.693 for two labels).
"""
from __future__ import annotations

import argparse
import random
import time

import torch  # noqa: I001
from common import emit_json, print_table

from worker.demo import base_model_path, load_corpus
from worker.ml.baseline import tfidf_baseline
from worker.ml.batching import encode, encode_capped, token_budget_batches, tokenize
from worker.ml.config import TrainConfig
from worker.ml.datacheck import recommended_options
from worker.ml.intervals import paired_difference, wilson_interval
from worker.ml.longdocs import pool_logits
from worker.ml.predict import Classifier, metadata_options
from worker.ml.split import stratified_split
from worker.ml.train import Callbacks, fine_tune

LABELS = ["fresh", "rotten"]
DEFAULT_METHODS = ["tfidf", "truncate", "windows", "truncate2x", "sampled"]
ALL_METHODS = DEFAULT_METHODS + ["head_tail", "truncate512", "recommended"]
POOLINGS = ("max", "mean", "confidence")  # the first is what the windows method trains and records


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


def options(method: str, args) -> dict:
    """The training options (as a user gives them) of a transformer method."""
    windows = {"long_documents": "windows", "window_overlap": 32, "max_windows": 16, "window_pooling": POOLINGS[0]}
    if method == "recommended":  # what `bertjobs data check` suggests for this corpus
        return {**recommended_options(args.windows_per_document), "window_overlap": 32, "max_windows": 16}
    return {"truncate": {}, "head_tail": {"long_documents": "head_tail"}, "truncate2x": {"epochs": 2 * args.epochs},
            "truncate512": {"max_length": 512}, "windows": windows,
            "sampled": {**windows, "windows_per_epoch": args.sample}}[method]


def config_for(method: str, args) -> TrainConfig:
    values = dict(base_model=base_model_path(), epochs=args.epochs, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, seed=args.seed, val_fraction=args.val_fraction, device="cpu",
                  precision="fp32", max_length=128)
    return TrainConfig(**{**values, **options(method, args)})


def test_predictions(method: str, result, texts: list[str]) -> dict[str, list[int]]:
    """Predicted label ids of the test documents through the product's predictor; windows: per pooling."""
    meta = result.inference_metadata()
    classifier = Classifier(result.model, result.tokenizer, meta["labels"], meta["max_length"], torch.device("cpu"),
                            "fp32", **metadata_options(meta))
    out = {classifier.pooling: [LABELS.index(p.label) for p in classifier.predict(texts)]}
    if method == "windows":  # the other poolings of the same model, from one more pass over the windows
        ids, owners = encode(classifier.tokenizer, texts, classifier.max_length, **classifier.windows)
        logits = classifier._logits(ids, token_budget_batches([len(t) for t in ids], 64))
        for how in POOLINGS[1:]:
            out[how] = pool_logits(logits, owners, len(texts), how).argmax(-1).tolist()
    return out


def run_method(method, train_texts, train_labels, test_texts, test_labels, args) -> list[dict]:
    """Rows {method, accuracy, train_seconds, job_seconds, inputs, epochs, eval_seconds} (windows: one per pooling)."""
    if method == "tfidf":
        result = tfidf_baseline(train_texts, train_labels, test_texts, test_labels, LABELS)
        return [{"method": "tfidf", "accuracy": result["accuracy"], "train_seconds": result["fit_seconds"],
                 "job_seconds": result["fit_seconds"], "inputs": len(train_texts), "epochs": 0, "eval_seconds": 0.0,
                 "predictions": result["predictions"]}]
    config = config_for(method, args)
    trace: list[list] = []
    started = time.perf_counter()
    result = fine_tune(train_texts, train_labels, config, Callbacks(on_batch=loss_tracer(trace)))
    job_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = test_predictions(method, result, test_texts)
    elapsed = time.perf_counter() - started
    inputs = round(result.examples_per_second * result.train_seconds)
    gold = [LABELS.index(t) for t in test_labels]
    return [{"method": f"{method} ({how})" if how and method == "windows" else method,
             "accuracy": sum(p == t for p, t in zip(ids, gold)) / len(gold), "predictions": ids,
             "train_seconds": result.train_seconds, "job_seconds": job_seconds, "inputs": inputs,
             "epochs": config.epochs, "best_epoch": result.best_epoch, "eval_seconds": elapsed,
             "options": options(method, args), "history": result.history, "loss_trace": trace}
            for how, ids in predicted.items()]


def loss_tracer(trace: list, every: int = 20):
    """An ``on_batch`` callback appending [epoch, batches, mean loss of the last ``every`` batches] to ``trace``
    (from the running mean the callback receives; the epoch's last batch may be short, so the figure is close)."""
    mark = {"epoch": 0, "n": 0, "at": (0, 0.0)}

    def on_batch(epoch: int, mean: float) -> None:
        if epoch != mark["epoch"]:
            mark.update(epoch=epoch, n=0, at=(0, 0.0))
        mark["n"] += 1
        n, (m, before) = mark["n"], mark["at"]
        if n % every == 0:
            trace.append([epoch, n, round((mean * n - before * m) / (n - m), 4)])
            mark["at"] = (n, mean)
    return on_batch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 1,000 documents use the training snippets about once (past that they repeat); 250 test documents use the
    # test snippets about once. The product's recipe (3 epochs, lr 5e-5) at batch 16: fewer documents, or lr 1e-4,
    # left truncation at chance here (bench/README.md, "Long documents").
    parser.add_argument("--train-docs", type=int, default=1000, help="training documents (validation split included)")
    parser.add_argument("--test-docs", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--sample", type=int, default=2, help="sampled: windows per document per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared 2-core machine two threads ran 2-3x slower than one)")
    parser.add_argument("--encode-cost", type=int, default=0, metavar="N",
                        help="instead of training: tokenize N documents as the bulk job does (encode_capped), truncate "
                             "and head_tail taking turns over 5 rounds, and print the median ms per document")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, or 'all': {', '.join(ALL_METHODS)}")
    args = parser.parse_args(argv)
    args.methods = ALL_METHODS if args.methods == "all" else args.methods.split(",")
    unknown = sorted(set(args.methods) - set(ALL_METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s): {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    return args


def run(args) -> dict:
    """Build the corpus, run every method in turn, print the table; the JSON record."""
    record = measure(args)
    print_rows(record["rows"], record["test_docs"], f"Long documents: {record['test_docs']} test documents, "
               f"{args.epochs} epochs")
    print_paired(record["rows"], record["truth"])
    return record


def measure(args) -> dict:
    """Build the corpus and run every method in turn (a line each as it ends); the JSON record with every row."""
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    train_texts, train_labels, test_texts, test_labels = corpus(args.train_docs, args.test_docs)
    lengths = sorted(len(ids) for ids in tokenize(tokenizer, train_texts, 100_000))
    windows_per_doc = len(encode(tokenizer, train_texts, 128, "windows")[0]) / len(train_texts)
    args.windows_per_document = windows_per_doc
    print(f"{len(train_texts)} training and {len(test_texts)} test documents; tokens per document: median "
          f"{lengths[len(lengths) // 2]}, min {lengths[0]}, max {lengths[-1]}; {windows_per_doc:.2f} windows of 128 "
          "tokens per document", flush=True)
    warm = TrainConfig(**{**config_for("truncate", args).to_dict(), "epochs": 1})
    fine_tune(train_texts[:32], train_labels[:32], warm)  # one-time costs (first kernels) fall on no method
    rows = []
    for method in args.methods:
        rows.extend(run_method(method, train_texts, train_labels, test_texts, test_labels, args))
        print(f"  {rows[-1]['method']}: accuracy {rows[-1]['accuracy']:.4f}  (train {rows[-1]['train_seconds']:.0f} s, "
              f"job {rows[-1]['job_seconds']:.0f} s)", flush=True)
    return {"train_docs": len(train_texts), "test_docs": len(test_texts), "epochs": args.epochs,
            "learning_rate": args.learning_rate, "batch_size": args.batch_size, "val_fraction": args.val_fraction,
            "median_tokens": lengths[len(lengths) // 2], "windows_per_document": windows_per_doc, "rows": rows,
            "truth": [LABELS.index(t) for t in test_labels]}


def print_rows(rows: list[dict], n_test: int, title: str, base_name: str = "truncate") -> None:
    """The side-by-side table: accuracy with its interval, seconds and their ratio to truncation's."""
    base = next((r for r in rows if r["method"] == base_name), None)
    table = []
    for r in rows:
        low, high = wilson_interval(round(r["accuracy"] * n_test), n_test)
        ratio = (lambda key: f"{r[key] / base[key]:.2f}x" if base else "")
        table.append([r["method"], r["epochs"], f"{r['accuracy']:.4f}", f"{low:.3f}-{high:.3f}",
                      f"{r['train_seconds']:.1f}", ratio("train_seconds"), f"{r['job_seconds']:.1f}",
                      ratio("job_seconds"), r["inputs"], f"{r['eval_seconds']:.1f}"])
    print_table(title, ["method", "epochs", "test accuracy", "95% interval", "train s", "vs truncate", "job s",
                        "vs truncate", "inputs trained", "test s"], table)


def print_paired(rows: list[dict], truth: list[int], against: tuple[str, ...] = ("truncate", "tfidf")) -> None:
    """Each transformer method's test accuracy minus truncation's and TF-IDF+LR's, with the paired bootstrap interval
    (the same test documents, resampled together): what a method beats, beyond the noise of the test set."""
    bases = [r for r in rows if r["method"] in against]
    for r in rows:
        if r["method"] in against:
            continue
        for base in bases:
            d = paired_difference(truth, r["predictions"], base["predictions"], len(LABELS), metric="accuracy")
            print(f"{r['method']} minus {base['method']}: {100 * d['difference']:+.1f} points of test accuracy "
                  f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]")


def encode_cost(n_docs: int, rounds: int = 5) -> dict:
    """Median seconds to tokenize ``n_docs`` documents for inference, truncate and head_tail taking turns."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    texts = corpus(n_docs, 0)[0]
    seconds: dict[str, list[float]] = {"truncate": [], "head_tail": []}
    for _ in range(rounds):
        for how, runs in seconds.items():
            started = time.perf_counter()
            encode_capped(tokenizer, texts, 128, how)
            runs.append(time.perf_counter() - started)
    median = {how: sorted(runs)[rounds // 2] for how, runs in seconds.items()}
    print(f"tokenizing {n_docs} documents, median of {rounds}: " + ", ".join(
        f"{how} {1000 * m / n_docs:.3f} ms/document" for how, m in median.items())
        + f"; head_tail / truncate {median['head_tail'] / median['truncate']:.2f}x")
    return {"docs": n_docs, "seconds": seconds, "median": median}


def main() -> None:
    args = parse_args()
    if args.encode_cost:
        torch.set_num_threads(args.threads)
        emit_json("long_docs_encode", encode_cost(args.encode_cost))
        return
    emit_json("long_docs", run(args))


if __name__ == "__main__":
    main()
