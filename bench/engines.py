"""The inference engines side by side (imported by bulk_classify.py): which runs to make, OpenVINO's one-off costs
(conversion, calibration, load), and how far each run's probabilities drift from torch fp32."""
from __future__ import annotations

import shutil
import statistics
import time

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
    """Convert and quantize the artifact once (as training or `models quantize` would) and time what a worker pays:
    conversion, calibration with quantization, and loading the converted model against loading the torch artifact."""
    from worker.ml.openvino_engine import converted_dir, fp32_model, load_openvino
    from worker.ml.predict import Classifier
    from worker.ml.quantize import build_int8

    shutil.rmtree(converted_dir(artifact, "fp32").parent, ignore_errors=True)
    start = time.perf_counter()
    fp32_model(artifact, sha)
    conversion = time.perf_counter() - start
    record = build_int8(artifact, sha, calibration)
    load_openvino(artifact, sha256=sha, precision="fp32")  # warm: OpenVINO's own start-up is paid once per worker
    return {
        "conversion_seconds": conversion, "int8_build_seconds": record["build_seconds"],
        "calibration_texts": record["calibration"]["size"],
        "load_seconds": {
            "torch": median_seconds(lambda: Classifier.from_artifact(artifact, sha256=sha, device="cpu")),
            "openvino_fp32": median_seconds(lambda: load_openvino(artifact, sha256=sha, precision="fp32")),
            "openvino_int8": median_seconds(lambda: load_openvino(artifact, sha256=sha, precision="int8")),
        },
    }


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
