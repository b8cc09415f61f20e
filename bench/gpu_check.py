"""GPU check of the ML path (worker/ml only: no Celery, SQLAlchemy or database), for a bare GPU machine.

    python bench/gpu_check.py --out $OUT/gpu.json        # needs torch + transformers, and this repository

Measures, with the code bulk jobs and training use: bf16 autocast on/off, bulk classification docs/s for a
BERT-base-shaped model (random weights) on real-length texts, the batch halving on CUDA out-of-memory, and
fine-tuning examples/s, each next to the GPU's measured bf16 matmul rate. ``pipelined_*``: the bulk job's page
loop itself (worker/jobs/pipeline.py, loaded by path: it needs nothing but the standard library) with a reader
thread tokenizing 512-document pages, the model on the main thread and a writer thread building the prediction
rows; only the database is missing (none on a bare machine). ``gpu_busy_share``: the forward pass's share of the
wall time (each page ends with one synchronising copy of its logits, so this is the GPU's busy share to within
the kernel-launch gaps).

    python bench/gpu_check.py --device cpu --docs 1024 --quick --out /tmp/gpu.json   # a smoke run without a GPU Texts are synthetic sentences with the
Rotten Tomatoes length distribution (mean ~30 tokens) unless --corpus points at the bz2 CSV.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from worker.ml.batching import tokenize  # noqa: E402
from worker.ml.predict import Classifier  # noqa: E402

WORDS = ("the film is a good bad long short funny dull story cast plot scene actor music ending world "
         "never quite enough more than its own best worst part of all").split()


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(3, int(rng.lognormvariate(3.2, 0.5))))) for _ in range(n)]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(dtype) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * n / (time.perf_counter() - start)


def load_pipeline():
    """worker/jobs/pipeline.py without worker/jobs/__init__ (which needs the database libraries)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "worker" / "jobs" / "pipeline.py"
    spec = importlib.util.spec_from_file_location("bulk_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pipelined_bulk(clf, corpus: list[str], batch: int, page: int = 512) -> dict:
    """Docs/s of the bulk page loop (read + tokenize, forward, rows) and the forward pass's share of its wall time."""
    pipeline = load_pipeline()
    pages = [([(i, t) for i, t in enumerate(corpus[lo:lo + page], lo)], lo + page, None)
             for lo in range(0, len(corpus), page)]
    forward_seconds, rows = [0.0], []

    def forward(_item, encoded):
        start = time.perf_counter()
        out = clf.run(encoded, batch)  # ends with the page's one device-to-host copy
        forward_seconds[0] += time.perf_counter() - start
        return out

    def commit(item, predictions):
        rows.extend({"document_id": d, "label": p.label, "score": p.score, "scores": p.scores, "error": p.error}
                    for (d, _), p in zip(item[0], predictions))

    with clf.own_tokenizer() as tokenizer:
        start = time.perf_counter()
        pipeline.run_pipeline(iter(pages), lambda p: clf.prepare([t for _, t in p], 100_000, tokenizer), forward,
                              commit, depth=2)
        wall = time.perf_counter() - start
    assert len(rows) == len(corpus) and all(r["error"] is None for r in rows)
    return {"docs_per_second": len(corpus) / wall, "gpu_busy_share": forward_seconds[0] / wall}


def main() -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--tokenizer", help="a folder with vocab.txt (default: a small synthetic vocabulary)")
    parser.add_argument("--out", default="gpu.json")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of the script itself")
    parser.add_argument("--quick", action="store_true", help="the classification numbers only")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # as in a worker's child: nothing forks after this
    device = torch.device(args.device)
    assert device.type != "cuda" or torch.cuda.is_available(), "no CUDA device"
    report: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "docs": args.docs}
    report["matmul_bf16_tflops"] = matmul_rate(torch.bfloat16) / 1e12 if device.type == "cuda" else None

    if args.tokenizer:
        tokenizer = BertTokenizerFast.from_pretrained(args.tokenizer)
    else:
        vocab = Path("/tmp/gpu-check-vocab.txt")
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
        tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    config = BertConfig(vocab_size=max(tokenizer.vocab_size, 30522), num_labels=2)
    model = BertForSequenceClassification(config)
    corpus = texts(args.docs)
    lengths = [len(t) for t in tokenize(tokenizer, corpus[:5000], 128)]
    report["mean_tokens"] = sum(lengths) / len(lengths)
    dense = 2 * (4 * 768 * 768 + 2 * 768 * 3072) * 12

    matmul = (report["matmul_bf16_tflops"] or float("nan")) * 1e12
    for precision in ("fp32", "bf16"):
        clf = Classifier(model, tokenizer, ["a", "b"], 128, device, precision)
        clf.predict(corpus[:2048], 256)
        sync(device)
        for batch in (256, 1024):
            start = time.perf_counter()
            clf.predict(corpus, batch)
            sync(device)
            rate = len(corpus) / (time.perf_counter() - start)
            report[f"classify_{precision}_batch{batch}_docs_per_second"] = rate
            report[f"classify_{precision}_batch{batch}_share_of_bf16_matmul"] = rate * report["mean_tokens"] * dense / matmul
            piped = pipelined_bulk(clf, corpus, batch)
            report[f"pipelined_{precision}_batch{batch}_docs_per_second"] = piped["docs_per_second"]
            report[f"pipelined_{precision}_batch{batch}_gpu_busy_share"] = piped["gpu_busy_share"]
            print(precision, batch, f"{rate:,.0f} docs/s forward only; pipelined page loop "
                  f"{piped['docs_per_second']:,.0f} docs/s, forward busy {piped['gpu_busy_share']:.0%}", flush=True)
            Path(args.out).write_text(json.dumps(report, indent=2))  # what is measured so far survives a timeout
    if args.quick or device.type != "cuda":
        print(json.dumps(report, indent=2))
        return

    # Out-of-memory handling: a huge batch must be halved, not fail.
    clf = Classifier(model, tokenizer, ["a", "b"], 128, torch.device("cuda"), "bf16")
    long_texts = [" ".join(["word"] * 120)] * 4096
    start = time.perf_counter()
    out = clf.predict_or_fail(long_texts, batch_size=1 << 20)
    report["oom_halving_ok"] = all(p.error is None for p in out)
    report["oom_halving_seconds"] = time.perf_counter() - start

    from worker.ml.config import TrainConfig  # noqa: F401 - fine-tuning speed with the same loop
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    from worker.ml.batching import iter_batches, length_grouped_batches
    from worker.ml.device import autocast

    ids = tokenize(tokenizer, corpus[:20_000], 128)
    batches = length_grouped_batches([len(t) for t in ids], 64, random.Random(0))
    labels = torch.randint(0, 2, (len(ids),))
    torch.cuda.synchronize()
    start, seen = time.perf_counter(), 0
    for batch, tensors in iter_batches(ids, batches, 0, torch.device("cuda")):
        with autocast(torch.device("cuda"), "bf16"):
            logits = model(**tensors).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].cuda())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch)
    torch.cuda.synchronize()
    rate = seen / (time.perf_counter() - start)
    report["train_bf16_examples_per_second"] = rate
    report["train_share_of_bf16_matmul"] = 3 * rate * report["mean_tokens"] * dense / (report["matmul_bf16_tflops"] * 1e12)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
