"""Bulk classification, end to end, against the usual ways, side by side in one run.

    python bench/bulk_classify.py                      # MiniLM, Rotten Tomatoes + long documents, CPU
    python bench/bulk_classify.py --model bert-base --docs 256 --corpus rt
    python bench/bulk_classify.py --precisions fp32,int8 --accuracy

Methods, all on the same texts and weights:
- tutorial: one text at a time, padded to 128 tokens (what most tutorials show);
- pipeline: transformers.pipeline("text-classification", batch_size=64);
- bare forward: the model alone over pre-tokenized, length-sorted batches of 64 (the ceiling for any
  pipeline around this model);
- bertjobs: a real classification job: documents read from the database, predictions committed to it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch  # noqa: I001
from common import (
    emit_json,
    forward_flops,
    long_corpus,
    make_model,
    matmul_flops_per_second,
    median_rate,
    print_table,
    rt_corpus,
)

from db import repo
from db.migrate import upgrade
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_classification
from worker.config import Settings
from worker.ml.artifact import save_artifact
from worker.ml.batching import sorted_batches, token_budget_batches, tokenize
from worker.ml.predict import Classifier, load_classifier

LABELS = ["fresh", "rotten"]


def tutorial_loop(model, tokenizer, texts):
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
            torch.softmax(model(**inputs).logits, dim=-1)


def hf_pipeline(model, tokenizer):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1, batch_size=64,
                    truncation=True, max_length=128)
    return lambda texts: list(pipe(texts))


def bare_forward(model, token_ids, batches, pad_id):
    """Only the model: tensors built beforehand, length-sorted batches."""
    from worker.ml.batching import collate

    tensors = [collate([token_ids[i] for i in b], pad_id) for b in batches]

    def run():
        with torch.inference_mode():
            for t in tensors:
                model(**t)
    return run


class BertjobsRun:
    """A real bulk job over a collection in a database (SQLite file by default, or --db URL)."""

    def __init__(self, model, tokenizer, texts, db_url: str | None, precision: str, workdir: Path):
        self.url = db_url or f"sqlite:///{workdir / 'bench.db'}"
        upgrade(self.url)
        self.settings = Settings(database_url=self.url, data_dir=workdir, model_store=workdir / "models",
                                 classify_chunk_size=512, classify_batch_size=64, classify_precision=precision,
                                 lease_seconds=600, heartbeat_seconds=60, classify_shard_size=10**9)
        self.artifact = workdir / f"artifact-{model.config.num_hidden_layers}-{model.config.hidden_size}"
        self.sha = save_artifact(model, tokenizer, {"labels": LABELS, "max_length": 128}, self.artifact)
        self.collection = f"bench-{time.time_ns()}"
        with session_factory_for(self.url).begin() as s:
            repo.upsert_documents(s, self.collection, [{"external_id": str(i), "text": t} for i, t in enumerate(texts)])
        load_classifier(self.artifact, sha256=self.sha, precision=precision)  # warm, as a worker would be

    def __call__(self):
        with session_factory_for(self.url).begin() as s:  # a new version each run, so every document is new
            mv = repo.register_model_version(s, name="bench", base_model="bench", status="ready",
                                             artifact_path=str(self.artifact), artifact_sha256=self.sha,
                                             labels=LABELS, hyperparameters={}, metrics={}, lineage={})
            ref = f"{mv.name}:{mv.version}"
        job = submit_classification(self.collection, ref, settings=self.settings, enqueue=False)
        assert jobs.run_classification(job.id, settings=self.settings) is jobs.Outcome.succeeded


def accuracy_of(classifier: Classifier, texts, labels) -> float:
    predictions = classifier.predict(texts, 64)
    return sum(p.label == gold for p, gold in zip(predictions, labels)) / len(labels)


def fine_tuned_minilm(train_docs: int):
    """MiniLM fine-tuned for one epoch on Rotten Tomatoes, so the dtype comparisons measure a real accuracy."""
    from worker.demo import base_model_path
    from worker.ml.config import TrainConfig
    from worker.ml.train import fine_tune

    texts, labels = rt_corpus(train_docs, offset=5000)
    result = fine_tune(texts, labels, TrainConfig(base_model=base_model_path(), epochs=1, batch_size=32,
                                                  device="cpu", precision="fp32"))
    return result.model, result.tokenizer


def bench_corpus(name, texts, gold, model, tokenizer, args, matmul, held_out=None):
    """``held_out``: (texts, labels) to score each precision's accuracy on; default: the benchmark's own texts."""
    held_out = held_out or (texts, gold)
    token_ids = tokenize(tokenizer, texts, 128)
    lengths = [len(t) for t in token_ids]
    batches = sorted_batches(lengths, 64)
    useful = forward_flops(model.config, [(n, n) for n in lengths])
    def computed(batch_list):
        return forward_flops(model.config, [(max(lengths[i] for i in b),) * 2 for b in batch_list for _ in b])

    computed_sorted = computed(batches)
    # What a job computes: token-budget batches within each page of 512 documents.
    computed_job = computed([[page + i for i in b] for page in range(0, len(lengths), 512)
                             for b in token_budget_batches(lengths[page:page + 512], 64)])
    rows, results = [], {}
    n = len(texts)
    workdir = Path(tempfile.mkdtemp(prefix="bench-bulk-"))

    rate, runs = median_rate(lambda: tutorial_loop(model, tokenizer, texts), n, args.repeats)
    results["tutorial"] = {"docs_per_second": rate, "runs": runs,
                           "computed_flops": forward_flops(model.config, [(128, 128)] * n)}
    rate, runs = median_rate(lambda: hf_pipeline(model, tokenizer)(texts), n, args.repeats)
    results["pipeline"] = {"docs_per_second": rate, "runs": runs}
    rate, runs = median_rate(bare_forward(model, token_ids, batches, tokenizer.pad_token_id or 0), n, args.repeats)
    results["bare_forward"] = {"docs_per_second": rate, "runs": runs, "computed_flops": computed_sorted}
    for precision in args.precisions:
        run = BertjobsRun(model, tokenizer, texts, args.db, precision, workdir)
        rate, runs = median_rate(run, n, args.repeats)
        entry = {"docs_per_second": rate, "runs": runs}
        if precision == "fp32":
            entry["computed_flops"] = computed_job
        if args.accuracy and gold is not None:
            entry["accuracy"] = accuracy_of(load_classifier(run.artifact, sha256=run.sha, precision=precision),
                                            *held_out)
        results[f"bertjobs_{precision}"] = entry

    base = results["tutorial"]["docs_per_second"]
    for method, r in results.items():
        useful_rate = useful / n * r["docs_per_second"]
        rows.append([method, f"{r['docs_per_second']:.1f}", f"{r['docs_per_second'] / base:.2f}x",
                     f"{r['docs_per_second'] / results['pipeline']['docs_per_second']:.2f}x",
                     f"{r['docs_per_second'] / results['bare_forward']['docs_per_second']:.2f}",
                     f"{useful_rate / 1e9:.1f}", f"{useful_rate / matmul:.0%}",
                     f"{r['computed_flops'] / useful:.2f}" if "computed_flops" in r else "-",
                     f"{r['accuracy']:.4f}" if "accuracy" in r else "-"])
    mean_len = sum(lengths) / n
    print_table(f"{name}: {n} texts, mean {mean_len:.0f} tokens, model {args.model} "
                f"({model.config.num_hidden_layers} layers x {model.config.hidden_size}), "
                f"fp32 matmul {matmul / 1e9:.1f} GFLOP/s",
                ["method", "docs/s", "vs tutorial", "vs pipeline", "vs bare fwd", "useful GFLOP/s",
                 "of matmul", "computed/useful", "accuracy"], rows)
    return {"corpus": name, "docs": n, "mean_tokens": mean_len, "useful_flops": useful, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=384, help="texts per corpus")
    parser.add_argument("--model", default="minilm", help="minilm, bert-base (random weights) or a local folder")
    parser.add_argument("--corpus", default="rt,long", help="rt, long or both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="",
                        help="bertjobs precisions to run (default: fp32, int8, and bf16 where the CPU has it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--db", help="database URL for the bertjobs runs (default: a SQLite file in a temp folder)")
    parser.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                        help="fine-tune MiniLM for one epoch first and report each precision's accuracy")
    parser.add_argument("--train-docs", type=int, default=4000, help="texts for that fine-tuning")
    parser.add_argument("--accuracy-docs", type=int, default=2000, help="held-out Rotten Tomatoes texts to score")
    args = parser.parse_args()
    from worker.ml.device import cpu_has_fast_bf16

    args.precisions = (args.precisions.split(",") if args.precisions
                       else ["fp32", "int8"] + (["bf16"] if cpu_has_fast_bf16() else []))
    if args.device != "cpu":
        raise SystemExit("this script measures the CPU path; see bench/gpu_check.sh for the GPU")

    if args.model == "minilm" and args.accuracy:
        model, tokenizer = fine_tuned_minilm(args.train_docs)
    else:
        model, tokenizer, _ = make_model(args.model, LABELS)
        args.accuracy = args.accuracy and args.model != "bert-base"
    model.eval()
    matmul = matmul_flops_per_second()
    out = []
    for corpus in args.corpus.split(","):
        texts, gold = rt_corpus(args.docs) if corpus == "rt" else long_corpus(args.docs, tokenizer)
        # Rotten Tomatoes: accuracy on 2,000 other held-out texts (2,000-3,999; training used 5,000 on).
        held_out = rt_corpus(args.accuracy_docs, offset=2000) if corpus == "rt" else None
        out.append(bench_corpus("Rotten Tomatoes" if corpus == "rt" else "long documents (>300 tokens)",
                                texts, gold, model, tokenizer, args, matmul, held_out))
    emit_json("bulk_classify", {"model": args.model, "matmul_fp32_flops": matmul, "corpora": out})


if __name__ == "__main__":
    main()
