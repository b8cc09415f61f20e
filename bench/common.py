"""Shared pieces of the benchmarks: corpora, models, FLOP counts, the machine's matmul ceiling, reporting."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from worker.demo import base_model_path, load_corpus  # noqa: E402
from worker.ml.hf import quiet_transformers  # noqa: E402

quiet_transformers()


def rt_corpus(n: int, offset: int = 0) -> tuple[list[str], list[str]]:
    rows = load_corpus()[offset:offset + n]
    return [r["text"] for r in rows], [r["category"] for r in rows]


def long_corpus(n: int, tokenizer, min_tokens: int = 300) -> tuple[list[str], list[str]]:
    """Texts over ``min_tokens`` tokens, made by joining consecutive snippets of the same label."""
    rows = load_corpus()
    texts, labels, i = [], [], 0
    while len(texts) < n and i < len(rows):
        label, parts = rows[i]["category"], []
        while i < len(rows) and len(tokenizer(" ".join(parts))["input_ids"]) < min_tokens:
            if rows[i]["category"] == label:
                parts.append(rows[i]["text"])
            i += 1
        texts.append(" ".join(parts))
        labels.append(label)
    return texts, labels


def make_model(kind: str, labels: list[str]):
    """(model, tokenizer, folder) for ``minilm`` (real weights, new head), ``bert-base`` (random, BERT-base
    shape, MiniLM's uncased vocabulary) or a local folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    if kind == "bert-base":
        tokenizer = AutoTokenizer.from_pretrained(base_model_path())
        model = BertForSequenceClassification(BertConfig(num_labels=len(labels), id2label=id2label, label2id=label2id))
        folder = Path(tempfile.mkdtemp(prefix="bench-bert-base-"))
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return model.eval(), tokenizer, str(folder)
    path = base_model_path() if kind == "minilm" else kind
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels), id2label=id2label,
                                                               label2id=label2id)
    return model.eval(), tokenizer, path


def forward_flops(config, sequences: list[tuple[int, int]]) -> float:
    """Forward FLOPs of a BERT encoder over sequences given as (tokens computed, positions attended).

    Per token and layer: 2 x (4 h^2 projections + 2 h i feed-forward), plus 4 w h for the attention scores and
    the weighted sum over the w positions. Useful FLOPs: (length, length) per text; computed FLOPs: (width,
    width) per row of a padded batch.
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 2 * (4 * h * h + 2 * h * i)
    return float(layers * sum(n * dense + 4 * n * w * h for n, w in sequences))


def matmul_flops_per_second(dtype=torch.float32, size: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - start)


def median_rate(fn, items: int, repeats: int) -> tuple[float, list[float]]:
    """Items per second of ``fn()``, median of ``repeats`` runs (each run's rate is kept)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates), rates


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d")}


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def emit_json(name: str, payload: dict) -> None:
    print("JSON " + json.dumps({"bench": name, "machine": machine(), **payload}, default=str))
