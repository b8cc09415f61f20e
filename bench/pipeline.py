"""The bulk job's CPU side against a simulated accelerator: pipelined and serial, side by side in one run.

    python bench/pipeline.py                                    # SQLite and PostgreSQL, short and long texts
    python bench/pipeline.py --docs 8192 --rates 50,100,200,400,800 --db sqlite

A real bulk job (documents read from the database, predictions committed to it) runs with a stand-in model whose
forward pass costs exactly tokens / R seconds of wall time in time.sleep, which holds no GIL, as a GPU kernel
would not; the tensors are still collated as for a real model. For each R (thousands of tokens per second) the
job runs pipelined (BERTJOBS_CLASSIFY_PIPELINE=on, the code as it is) and as before issue #17 (off: one stage after
another, with the previous pieces put back: the Python-loop collate, the tokenizer's own __call__ single-threaded
on whole texts (so no ASCII road), the page's softmax on torch's intra-op threads, SQLite writes through the ORM's
INSERT, the page's fence and progress as two UPDATEs; the garbage collector's freeze is the pipeline's own),
alternating, and reports the end-to-end rate and its ratio to R. Each stage's rate alone comes from timing the stages inside a serial run with a free model, and
the non-model CPU time per 1,000 documents from the process's CPU time (every thread; the model's sleep costs
none). The database server's own CPU time is not counted.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch  # noqa: I001
from common import emit_json, print_table, rt_corpus

from db import repo
from db.migrate import upgrade
from db.session import session_factory_for
from worker import jobs
from worker.client import submit_classification
from worker.config import Settings
from worker.demo import base_model_path
from worker.jobs import classification
from worker.jobs.runtime import JobContext
from worker.ml import batching, loader as loader_module, predict as predict_module
from worker.ml.predict import Classifier, read_tokenizer

_spec = importlib.util.spec_from_file_location("bench_db", Path(__file__).with_name("db.py"))
bench_db = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_db)  # bench/db.py: its name is the project's db package's

LABELS = ["fresh", "rotten"]
ARTIFACT, SHA = "/nonexistent/stand-in", "0" * 64  # never read: the stand-in waits in the classifier cache


class StandIn(Classifier):
    """A model whose forward pass costs tokens / rate seconds without holding the GIL; logits from the ids."""

    engine = "stand-in"

    def __init__(self, tokenizer, tokens_per_second: float):
        super().__init__(None, tokenizer, LABELS, 128, torch.device("cpu"), "fp32")
        self.rate = tokens_per_second

    def _prepare(self, model):
        return model

    def _logits(self, token_ids, batches):
        logits = torch.empty((len(token_ids), len(LABELS)))
        deadline = time.perf_counter()
        for batch in batches:
            tensors = batching.collate([token_ids[i] for i in batch], self.tokenizer.pad_token_id or 0)
            if self.rate:
                deadline += int(tensors["attention_mask"].sum()) / self.rate
                time.sleep(max(0.0, deadline - time.perf_counter()))
            x = tensors["input_ids"].sum(1).float()
            logits[torch.as_tensor(batch)] = torch.stack([x % 7, x % 5], 1)
        return logits


def loop_collate(ids, pad_id, pad_to_multiple=1, pin=False):
    """The collate of the previous commit (a Python loop), for the serial baseline."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def hf_tokenize(tokenizer, texts, max_length):
    """Tokenization of the previous commit: the tokenizer's __call__ (settings set per call, a BatchEncoding)."""
    if not texts:
        return []
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def upsert_before(session, rows):
    """The prediction write of the previous commit: unchanged on PostgreSQL, the ORM's INSERT on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return NOW[2](session, rows)
    return bench_db._sqlite_before(session, rows)


def fenced_before(ctx, s, **progress):
    """The page write of the previous commit: the fence its own UPDATE, the progress another (after the fence here,
    after the upsert there: the same two statements)."""
    NOW[4](ctx, s)
    if progress:
        repo.set_progress(s, ctx.job_id, ctx.attempt, **progress)


class Timed:
    """Seconds spent in the wrapped functions of a serial run: each stage alone."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, stage, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        return timed

    def pages(self, fn):
        def walk(*args, **kwargs):
            it = fn(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.seconds["read"] = self.seconds.get("read", 0.0) + time.perf_counter() - start
                yield item
        return walk


class Bench:
    def __init__(self, url: str, tokenizer, texts: list[str], workdir: Path, page: int = 512):
        self.url, self.tokenizer, self.n, self.page = url, tokenizer, len(texts), page
        upgrade(url)
        self.collection = f"pipe-{time.time_ns()}"
        with session_factory_for(url).begin() as s:
            repo.upsert_documents(s, self.collection, [{"external_id": str(i), "text": t} for i, t in enumerate(texts)])
        self.workdir = workdir

    def job(self, pipelined: bool, rate: float) -> tuple[float, float]:
        """(documents per second, CPU seconds) of one bulk job over the collection."""
        settings = Settings(database_url=self.url, data_dir=self.workdir, model_store=self.workdir / "models",
                            classify_chunk_size=self.page, classify_batch_size=64, classify_shard_size=10**9,
                            lease_seconds=600, heartbeat_seconds=60, classify_pipeline=pipelined)
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if pipelined else "false"  # read by the tokenizer per call
        (batching.collate, batching.tokenize, repo.upsert_predictions, predict_module.one_cpu_thread,
         JobContext.fenced) = NOW if pipelined else BEFORE
        loader_module._cache.clear()
        key = (ARTIFACT, SHA, settings.device, settings.classify_precision, settings.classify_engine)
        loader_module._cache[key] = StandIn(self.tokenizer, rate)
        with session_factory_for(self.url).begin() as s:  # a new version each run, so every document is new
            mv = repo.register_model_version(s, name="standin", base_model="bench", status="ready",
                                             artifact_path=ARTIFACT, artifact_sha256=SHA, labels=LABELS,
                                             hyperparameters={}, metrics={}, lineage={})
            ref = f"{mv.name}:{mv.version}"
        job = submit_classification(self.collection, ref, settings=settings, enqueue=False)
        wall, cpu = time.perf_counter(), time.process_time()
        assert jobs.run_classification(job.id, settings=settings) is jobs.Outcome.succeeded
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert job.snapshot().result["classified"] == self.n
        return self.n / wall, cpu

    def stages_alone(self) -> dict[str, float]:
        """Docs/s of each stage, timed inside a serial job with a free model (nothing overlaps)."""
        timed = Timed()
        saved = classification.walk_pages, predict_module.encode, StandIn._logits, classification._commit_page
        classification.walk_pages = timed.pages(saved[0])
        predict_module.encode = timed.wrap("tokenize", saved[1])
        StandIn._logits = timed.wrap("collate", saved[2])
        classification._commit_page = timed.wrap("write", saved[3])
        try:
            self.job(False, 0.0)
        finally:
            classification.walk_pages, predict_module.encode, StandIn._logits, classification._commit_page = saved
        return {stage: self.n / seconds for stage, seconds in timed.seconds.items()}


NOW = (batching.collate, batching.tokenize, repo.upsert_predictions, predict_module.one_cpu_thread,
       JobContext.fenced)  # the code as it is
BEFORE = loop_collate, hf_tokenize, upsert_before, contextlib.nullcontext, fenced_before  # as before issue #17


def run_db(name: str, url: str, tokenizer, corpora: dict, rates: list[float], repeats: int, workdir: Path) -> list:
    results = []
    for corpus, texts in corpora.items():
        bench = Bench(url, tokenizer, texts, workdir)
        mean_tokens = statistics.mean(len(t) for t in batching.tokenize(tokenizer, texts[:2000], 128))
        alone = bench.stages_alone()
        print(f"\n{name} {corpus}: {len(texts)} docs, {mean_tokens:.0f} tokens/doc; each stage alone, docs/s: "
              + ", ".join(f"{k} {v:,.0f}" for k, v in alone.items()), flush=True)
        rows = []
        for rate in rates:
            runs = {True: [], False: []}
            for _ in range(repeats):
                for pipelined in (False, True):  # alternating, so the machine's load hits both alike
                    runs[pipelined].append(bench.job(pipelined, rate * 1000))
            row = {"db": name, "corpus": corpus, "R_ktok_s": rate, "R_docs_s": round(rate * 1000 / mean_tokens)}
            for pipelined, label in ((False, "serial"), (True, "pipelined")):
                rate_docs = statistics.median(r for r, _ in runs[pipelined])
                cpu = statistics.median(c for _, c in runs[pipelined])
                row[f"{label}_docs_s"] = round(rate_docs)
                row[f"{label}_ratio"] = round(rate_docs / (rate * 1000 / mean_tokens), 2)
                row[f"{label}_cpu_s_per_1k"] = round(cpu / len(texts) * 1000, 3)
            rows.append(row)
            print_table("", list(row), [list(row.values())])
        results.append({"db": name, "corpus": corpus, "docs": len(texts), "mean_tokens": mean_tokens,
                        "stages_alone_docs_s": alone, "rows": rows})
    return results


def corpora(short: int, long: int) -> dict:
    texts, _ = rt_corpus(max(short, 4000))
    rng = random.Random(0)
    out = {"short": [texts[i % len(texts)] for i in range(short)]}
    if long:
        out["long"] = [" ".join(rng.choice(texts) for _ in range(40)) for _ in range(long)]  # ~5,000 chars each
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=4096, help="short documents (Rotten Tomatoes snippets)")
    parser.add_argument("--long-docs", type=int, default=1024, help="long documents (~5,000 characters)")
    parser.add_argument("--rates", default="50,100,200,400,800", help="R, thousands of tokens per second")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--db", default="sqlite,postgresql://postgres@127.0.0.1:5432/test",
                        help="comma-separated: sqlite and/or a PostgreSQL admin URL (a fresh database is made)")
    args = parser.parse_args()
    tokenizer = read_tokenizer(base_model_path())
    rates = [float(r) for r in args.rates.split(",")]
    texts = corpora(args.docs, args.long_docs)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for db in args.db.split(","):
            if db == "sqlite":
                results += run_db("sqlite", f"sqlite:///{tmp}/bench.db", tokenizer, texts, rates, args.repeats,
                                  Path(tmp))
                continue
            url, drop = bench_db._fresh_database(db.replace("postgresql://", "postgresql+psycopg://", 1))
            try:
                results += run_db("postgresql", url, tokenizer, texts, rates, args.repeats, Path(tmp))
            finally:
                drop()
    emit_json("pipeline", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
