"""The inference engines side by side (imported by bulk_classify.py): which runs to make, OpenVINO's one-off costs
(conversion, calibration, load), and how far each run's probabilities drift from torch fp32.

Run as a script it is one worker process's loads (what ``load_rounds`` starts, round after round):

    python bench/engines.py ENGINE PRECISION ARTIFACT SHA256 [saved|compile|cache_dir]

prints one JSON line: the first load in this fresh process (libraries imported as a worker has them: torch and the
job code; OpenVINO's own start-up is part of its first load) and a second load of the same artifact, both through
``load_classifier``. ``compile`` loads OpenVINO without the compiled models kept beside the converted one (compiled
from the converted files every time, as before they were kept); ``cache_dir`` the same with OpenVINO's own model
cache (``CACHE_DIR``, blobs loaded unchecked) instead.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit_json  # noqa: F401 - sets sys.path and the offline Hugging Face settings first

from worker.ml.device import cpu_has_fast_bf16
from worker.ml.engine import installed


def engine_runs(engines: list[str], torch_precisions: list[str]) -> list[tuple[str, str]]:
    """(engine, precision) pairs: torch at the asked precisions, OpenVINO at fp32, bf16 (where the CPU has it) and
    int8. Torch fp32 comes first: every ratio and drift is against it."""
    runs = [("torch", p) for p in ["fp32"] + [p for p in torch_precisions if p != "fp32"]]
    if "openvino" in engines:
        if not (installed("openvino") and installed("nncf")):
            raise SystemExit("--engines openvino: pip install -e '.[openvino]'")
        runs += [("openvino", p) for p in ["fp32"] + (["bf16"] if cpu_has_fast_bf16() else []) + ["int8"]]
    return runs


def run_name(engine: str, precision: str) -> str:
    return f"bertjobs_{precision}" if engine == "torch" else f"{engine}_{precision}"


def median_seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepare_openvino(artifact, sha: str, calibration: dict) -> dict:
    """Convert and quantize the artifact once (as training or `models quantize` would) and time it: conversion, and
    calibration with quantization (which also scores nothing here; it loads fp32 to calibrate)."""
    from worker.ml.openvino_engine import converted_dir, fp32_model
    from worker.ml.quantize import build_int8

    shutil.rmtree(converted_dir(artifact, "fp32").parent, ignore_errors=True)
    start = time.perf_counter()
    fp32_model(artifact, sha)
    conversion = time.perf_counter() - start
    record = build_int8(artifact, sha, calibration)
    return {"conversion_seconds": conversion, "int8_build_seconds": record["build_seconds"],
            "calibration_texts": record["calibration"]["size"]}


def load_methods() -> list[tuple[str, str, str]]:
    """(engine, precision, mode) of every load measured; torch fp32 first, the reference."""
    precisions = ["fp32"] + (["bf16"] if cpu_has_fast_bf16() else []) + ["int8"]
    return ([("torch", "fp32", "saved")] + [("openvino", p, "saved") for p in precisions]
            + [("openvino", p, "compile") for p in ("fp32", "int8")] + [("openvino", "fp32", "cache_dir")])


def load_rounds(artifact, sha: str, rounds: int) -> dict[str, list[dict]]:
    """Each method's loads, each in a fresh process, the methods taking turns round after round. A first round primes
    the compiled models (and OpenVINO's cache for ``cache_dir``) and is not counted."""
    cache = tempfile.mkdtemp(prefix="bench-ov-cache-")
    results: dict[str, list[dict]] = {}
    for round_ in range(rounds + 1):
        for engine, precision, mode in load_methods():
            out = subprocess.run([sys.executable, __file__, engine, precision, str(artifact), sha, mode, cache],
                                 check=True, capture_output=True, text=True).stdout
            if round_:
                results.setdefault(f"{engine}_{precision}_{mode}", []).append(json.loads(out.splitlines()[-1]))
    shutil.rmtree(cache, ignore_errors=True)
    return results


def _one_process(engine: str, precision: str, artifact: str, sha: str, mode: str, cache: str) -> dict:
    import worker.jobs  # noqa: F401 - what a worker process has imported before its first job
    from worker.ml import loader

    if mode != "saved":  # OpenVINO as before compiled models were kept: compiled from the converted files
        from worker.ml import openvino_compiled, openvino_engine

        def unkept(*args):
            raise openvino_compiled.CompiledModelProblem("is not used in this measurement")

        openvino_engine.import_compiled, openvino_engine.export_compiled = unkept, lambda *args: None
        if mode == "cache_dir":
            openvino_compiled.core().set_property({"CACHE_DIR": cache})
    times, sources = [], []
    for _ in range(2):
        loader._cache.clear()
        start = time.perf_counter()
        classifier = loader.load_classifier(artifact, sha256=sha, device="cpu", precision=precision, engine=engine)
        times.append(time.perf_counter() - start)
        sources.append(getattr(classifier, "compiled_from", "-"))
    return {"first": times[0], "second": times[1], "compiled_from": sources}


def max_delta(predictions, reference) -> float:
    """Largest difference of any label's probability between two prediction lists over the same texts."""
    return max(abs(p.scores[k] - r.scores[k]) for p, r in zip(predictions, reference) for k in r.scores)


def alternating_rates(runs: dict, items: int, rounds: int) -> dict[str, list[float]]:
    """Items per second of every run, the runs taking turns round after round (a loaded machine's drift spreads
    over all of them instead of favouring whichever ran first)."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            rates[name].append(items / (time.perf_counter() - start))
    return rates


if __name__ == "__main__":
    print(json.dumps(_one_process(*sys.argv[1:])))
