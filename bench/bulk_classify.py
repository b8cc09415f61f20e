"""Bulk classification, end to end, against the usual ways, side by side in one run.

    python bench/bulk_classify.py                      # MiniLM, Rotten Tomatoes + long documents, CPU
    python bench/bulk_classify.py --model bert-base --docs 256 --corpus rt
    python bench/bulk_classify.py --precisions fp32,int8 --accuracy

Methods, all on the same texts and weights:
- tutorial: one text at a time, padded to 128 tokens (what most tutorials show);
- pipeline: transformers.pipeline("text-classification", batch_size=64);
- bare forward: the model alone over pre-tokenized, length-sorted batches of 64 (the ceiling for any
  pipeline around this model);
- bertjobs: a real classification job: documents read from the database, predictions committed to it, with each
  engine (torch; OpenVINO with `--engines torch,openvino`, the default where it is installed) and precision.

    python bench/bulk_classify.py --no-baselines --docs 256 --repeats 4   # the engines only, alternating rounds
    python bench/bulk_classify.py --load-only --load-rounds 5             # conversion, calibration and loading only

Loading is measured in fresh processes (bench/engines.py), the engines taking turns: a worker's first load after it
starts, and a second load of the same artifact in that process.
"""
from __future__ import annotations

import argparse
import statistics
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
from engines import alternating_rates, engine_runs, load_rounds, max_delta, prepare_openvino, run_name

from db import repo
from db.migrate import upgrade
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_classification
from worker.config import Settings
from worker.ml.artifact import save_artifact
from worker.ml.batching import sorted_batches, token_budget_batches, tokenize
from worker.ml import loader as loader_module
from worker.ml.engine import installed
from worker.ml.loader import load_classifier
from worker.ml.quantize import calibration_sample

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
    """A real bulk job over a collection in a database (SQLite file by default, or --db URL), on one engine."""

    def __init__(self, artifact: tuple[Path, str], texts, db_url: str | None, precision: str, workdir: Path,
                 engine: str = "torch"):
        self.url = db_url or f"sqlite:///{workdir / 'bench.db'}"
        upgrade(self.url)
        self.settings = Settings(database_url=self.url, data_dir=workdir, model_store=workdir / "models",
                                 classify_chunk_size=512, classify_batch_size=64, classify_precision=precision,
                                 classify_engine=engine, lease_seconds=600, heartbeat_seconds=60,
                                 classify_shard_size=10**9)
        self.artifact, self.sha = artifact
        self.collection = f"bench-{time.time_ns()}"
        with session_factory_for(self.url).begin() as s:
            repo.upsert_documents(s, self.collection, [{"external_id": str(i), "text": t} for i, t in enumerate(texts)])
        # Warm, as a worker would be. A worker keeps its one model across jobs; here the runs take turns, so each
        # puts its own warm classifier back in the cache (the key load_classifier uses) before its job starts.
        self.key = (str(self.artifact), self.sha, self.settings.device, precision, engine)
        self.classifier = load_classifier(self.artifact, sha256=self.sha, precision=precision, engine=engine)

    def __call__(self):
        loader_module._cache.clear()
        loader_module._cache[self.key] = self.classifier
        with session_factory_for(self.url).begin() as s:  # a new version each run, so every document is new
            mv = repo.register_model_version(s, name="bench", base_model="bench", status="ready",
                                             artifact_path=str(self.artifact), artifact_sha256=self.sha,
                                             labels=LABELS, hyperparameters={}, metrics={}, lineage={})
            ref = f"{mv.name}:{mv.version}"
        job = submit_classification(self.collection, ref, settings=self.settings, enqueue=False)
        assert jobs.run_classification(job.id, settings=self.settings) is jobs.Outcome.succeeded


def fine_tuned_minilm(train_docs: int):
    """MiniLM fine-tuned for one epoch on Rotten Tomatoes, so the dtype comparisons measure a real accuracy."""
    from worker.demo import base_model_path
    from worker.ml.config import TrainConfig
    from worker.ml.train import fine_tune

    texts, labels = rt_corpus(train_docs, offset=5000)
    result = fine_tune(texts, labels, TrainConfig(base_model=base_model_path(), epochs=1, batch_size=32,
                                                  device="cpu", precision="fp32"))
    return result.model, result.tokenizer


def bench_corpus(name, texts, gold, model, tokenizer, args, matmul, artifact, held_out=None):
    """``held_out``: (texts, labels) to score each run's accuracy on; default: the benchmark's own texts."""
    held_out = held_out or (texts, gold)
    token_ids = tokenize(tokenizer, texts, 128)
    lengths = [len(t) for t in token_ids]
    batches = sorted_batches(lengths, 64)
    useful = forward_flops(model.config, [(n, n) for n in lengths])
    def computed(batch_list):
        return forward_flops(model.config, [(max(lengths[i] for i in b),) * 2 for b in batch_list for _ in b])

    # What a job computes: token-budget batches within each page of 512 documents.
    computed_job = computed([[page + i for i in b] for page in range(0, len(lengths), 512)
                             for b in token_budget_batches(lengths[page:page + 512], 64)])
    results = {}
    n = len(texts)
    if args.baselines:
        rate, runs = median_rate(lambda: tutorial_loop(model, tokenizer, texts), n, args.repeats)
        results["tutorial"] = {"docs_per_second": rate, "runs": runs,
                               "computed_flops": forward_flops(model.config, [(128, 128)] * n)}
        rate, runs = median_rate(lambda: hf_pipeline(model, tokenizer)(texts), n, args.repeats)
        results["pipeline"] = {"docs_per_second": rate, "runs": runs}
        rate, runs = median_rate(bare_forward(model, token_ids, batches, tokenizer.pad_token_id or 0), n, args.repeats)
        results["bare_forward"] = {"docs_per_second": rate, "runs": runs, "computed_flops": computed(batches)}
    runs = {run_name(e, p): BertjobsRun(artifact, texts, args.db, p, args.workdir, e) for e, p in args.runs}
    rates = alternating_rates(runs, n, args.repeats)
    reference = None
    for (engine, precision), (method, run) in zip(args.runs, runs.items()):
        entry = {"engine": engine, "precision": precision, "docs_per_second": statistics.median(rates[method]),
                 "runs": rates[method]}
        if method == "bertjobs_fp32":
            entry["computed_flops"] = computed_job
        predictions = run.classifier.predict(held_out[0], 64)
        reference = reference or predictions  # torch fp32 runs first
        entry["max_dp_vs_torch_fp32"] = max_delta(predictions, reference)
        if args.accuracy and gold is not None:
            entry["accuracy"] = sum(p.label == g for p, g in zip(predictions, held_out[1])) / len(held_out[1])
        results[method] = entry
    print_results(name, results, n, useful, lengths, model, args, matmul)
    return {"corpus": name, "docs": n, "mean_tokens": sum(lengths) / n, "useful_flops": useful, "results": results}


def print_results(name, results, n, useful, lengths, model, args, matmul) -> None:
    def ratio(r, base):
        return f"{r['docs_per_second'] / results[base]['docs_per_second']:.2f}x" if base in results else "-"

    best_torch = max((r for r in results.values() if r.get("engine") == "torch"), key=lambda r: r["docs_per_second"])
    fp32_accuracy = results["bertjobs_fp32"].get("accuracy")
    rows = []
    for method, r in results.items():
        useful_rate = useful / n * r["docs_per_second"]
        accuracy = "-"
        if "accuracy" in r:
            accuracy = f"{r['accuracy']:.4f}" + (f" ({100 * (r['accuracy'] - fp32_accuracy):+.2f} pt)"
                                                 if method != "bertjobs_fp32" else "")
        rows.append([method, f"{r['docs_per_second']:.1f}", ratio(r, "tutorial"), ratio(r, "pipeline"),
                     ratio(r, "bare_forward"), f"{useful_rate / 1e9:.1f}", f"{useful_rate / matmul:.0%}",
                     f"{r['computed_flops'] / useful:.2f}" if "computed_flops" in r else "-",
                     ratio(r, "bertjobs_fp32") if "engine" in r else "-",
                     f"{r['docs_per_second'] / best_torch['docs_per_second']:.2f}x" if "engine" in r else "-",
                     f"{r['max_dp_vs_torch_fp32']:.1e}" if "engine" in r else "-", accuracy])
    print_table(f"{name}: {n} texts, mean {sum(lengths) / n:.0f} tokens, model {args.model} "
                f"({model.config.num_hidden_layers} layers x {model.config.hidden_size}), "
                f"fp32 matmul {matmul / 1e9:.1f} GFLOP/s, {args.repeats} alternating rounds",
                ["method", "docs/s", "vs tutorial", "vs pipeline", "vs bare fwd", "useful GFLOP/s", "of matmul",
                 "computed/useful", "vs torch fp32", "vs best torch", "max |dp| vs torch fp32", "accuracy"], rows)


def print_loads(loads: dict[str, list[dict]], rounds: int) -> None:
    """Each method's first and second load (medians, with every round) and their ratio to torch's."""
    def median(method, which):
        return statistics.median(r[which] for r in loads[method])

    rows = []
    for method, runs in loads.items():
        row = [method.removesuffix("_saved"), "/".join(sorted({s for r in runs for s in r["compiled_from"]}))]
        for which in ("first", "second"):
            row += [f"{median(method, which):.2f} ({', '.join(f'{r[which]:.2f}' for r in runs)})",
                    f"{median(method, which) / median('torch_fp32_saved', which):.2f}x"]
        rows.append(row)
    print_table(f"Loading a converted model in a worker (seconds; medians of {rounds} rounds, fresh processes taking "
                f"turns)", ["method", "compiled from", "first load in the process", "vs torch", "second load",
                            "vs torch"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=384, help="texts per corpus")
    parser.add_argument("--model", default="minilm", help="minilm, bert-base (random weights) or a local folder")
    parser.add_argument("--corpus", default="rt,long", help="rt, long or both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="",
                        help="torch precisions to run (default: fp32, int8, and bf16 where the CPU has it)")
    parser.add_argument("--engines", default="torch,openvino" if installed("openvino") else "torch",
                        help="torch, openvino (fp32, bf16 where the CPU has it, int8) or both (default where installed)")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the tutorial loop, the pipeline and the bare forward pass")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the bertjobs runs take turns in each")
    parser.add_argument("--db", help="database URL for the bertjobs runs (default: a SQLite file in a temp folder)")
    parser.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                        help="fine-tune MiniLM for one epoch first and report each precision's accuracy")
    parser.add_argument("--train-docs", type=int, default=4000, help="texts for that fine-tuning")
    parser.add_argument("--accuracy-docs", type=int, default=2000, help="held-out Rotten Tomatoes texts to score")
    parser.add_argument("--load-rounds", type=int, default=3, help="rounds of loads, each in fresh processes")
    parser.add_argument("--load-only", action="store_true",
                        help="only convert, quantize and time loading (MiniLM with a new head; no classification)")
    args = parser.parse_args()
    from worker.ml.device import cpu_has_fast_bf16

    precisions = (args.precisions.split(",") if args.precisions
                  else ["fp32", "int8"] + (["bf16"] if cpu_has_fast_bf16() else []))
    args.runs = engine_runs(args.engines.split(","), precisions)
    if args.device != "cpu":
        raise SystemExit("this script measures the CPU path; see bench/gpu_check.sh for the GPU")

    if args.load_only:
        args.accuracy, args.runs = False, [("openvino", "fp32")]
    if args.model == "minilm" and args.accuracy:
        model, tokenizer = fine_tuned_minilm(args.train_docs)
    else:
        model, tokenizer, _ = make_model(args.model, LABELS)
        args.accuracy = args.accuracy and args.model != "bert-base"
    model.eval()
    args.workdir = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    artifact = args.workdir / "artifact"
    artifact = (artifact, save_artifact(model, tokenizer, {"labels": LABELS, "max_length": 128}, artifact))
    costs = None
    if any(engine == "openvino" for engine, _ in args.runs):
        # int8 once per model version, from a fixed sample of its training texts (those fine-tuning used).
        sample = calibration_sample(*rt_corpus(args.train_docs, offset=5000), seed=42, source="training texts")
        costs = prepare_openvino(*artifact, sample)
        print(f"\nOpenVINO: conversion {costs['conversion_seconds']:.1f} s, int8 calibration and quantization "
              f"{costs['int8_build_seconds']:.1f} s ({costs['calibration_texts']} texts)")
        costs["loads"] = load_rounds(*artifact, args.load_rounds)
        print_loads(costs["loads"], args.load_rounds)
    if args.load_only:
        emit_json("bulk_classify_load", {"model": args.model, "openvino": costs})
        return
    matmul = matmul_flops_per_second()
    out = []
    for corpus in args.corpus.split(","):
        texts, gold = rt_corpus(args.docs) if corpus == "rt" else long_corpus(args.docs, tokenizer)
        # Rotten Tomatoes: accuracy on 2,000 other held-out texts (2,000-3,999; training used 5,000 on).
        held_out = rt_corpus(args.accuracy_docs, offset=2000) if corpus == "rt" else None
        out.append(bench_corpus("Rotten Tomatoes" if corpus == "rt" else "long documents (>300 tokens)",
                                texts, gold, model, tokenizer, args, matmul, artifact, held_out))
    emit_json("bulk_classify", {"model": args.model, "matmul_fp32_flops": matmul, "openvino": costs,
                                "corpora": out})


if __name__ == "__main__":
    main()
