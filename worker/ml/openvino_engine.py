"""The OpenVINO engine: an artifact's model converted once, kept beside the artifact, compiled for this CPU, behind
the same ``Classifier`` interface as torch (the job, windows, thresholds, failure rows and bisection are unchanged).

Beside ``<artifact>`` (never inside it: that would change the artifact's sha256) lives ``<artifact>.openvino/``:

    fp32/  model.xml, model.bin, manifest.json   converted from the torch weights (fp32 and bf16 run it); rebuilt
                                                 here whenever it is missing, damaged or stale
    int8/  model.xml, model.bin, manifest.json   quantized once per model version (worker/ml/quantize.py); refused,
                                                 never rebuilt here, when it does not check out
    */compiled-<key>.blob                        that model compiled for a kind of CPU (worker/ml/openvino_compiled.py);
                                                 compiled again and rewritten whenever it is missing or does not check out

A manifest records the sha256 of the artifact it was made from, the OpenVINO version, and the sha256 of its model
files; a folder is used only when all three match, and the bytes that are hashed are the bytes that are loaded. A
compiled model is used only when its own record names this host's key and the converted model's sha256, and its
bytes match the sha256 it records; it then stands in for the converted files, which are not read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from worker.ml.artifact import artifact_sha256, read_metadata, verify_artifact, write_folder
from worker.ml.batching import collate
from worker.ml.device import cpu_has_fast_bf16
from worker.ml.engine import OPENVINO_PRECISIONS, require_openvino
from worker.ml.errors import CorruptArtifact
from worker.ml.openvino_compiled import CompiledModelProblem, core, export_compiled, import_compiled
from worker.ml.predict import Classifier, metadata_options, read_tokenizer, read_torch_model

log = logging.getLogger("bertjobs.openvino")

MANIFEST = "manifest.json"
MODEL_FILES = ("model.xml", "model.bin")
QUANTIZE_HINT = "build it with `bertjobs models quantize NAME:VERSION` (--force replaces one)"


class ConvertedModelProblem(Exception):
    """A converted model folder that may not be used; the message says why, as a phrase (``is missing``)."""


def converted_dir(artifact: str | Path, kind: str) -> Path:
    """``<artifact>.openvino/<kind>``: ``fp32`` or ``int8``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".openvino") / kind


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version()


def resolve_precision(preference: str) -> str:
    """fp32, bf16 or int8. ``auto``: bf16 where the CPU has bf16 instructions, else fp32 (int8 is always opt-in)."""
    if preference == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if preference not in OPENVINO_PRECISIONS:
        raise ValueError(f"the openvino engine runs {', '.join(OPENVINO_PRECISIONS[1:])}, not {preference!r}")
    return preference


def convert(model) -> object:
    """The torch classifier as an OpenVINO model over ``input_ids`` and ``attention_mask`` of any batch size and
    length: what the torch path passes, so both engines compute the same function."""
    import openvino as ov

    example = collate([[1, 2, 3, 4], [1, 2]], 0)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent branches the model does not take
        return ov.convert_model(model.eval(), example_input=dict(example))


def files_sha256(files: dict[str, bytes]) -> str:
    """One sha256 over a ``sha256sum``-style listing of the files (``sha256sum model.*`` shows the parts)."""
    listing = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()


def _stable_names(model):
    """Name the model and its operations by position: OpenVINO numbers them from a process-wide counter, so the
    same model converted twice in one process would otherwise save different files (the inputs keep their names)."""
    model.set_friendly_name("bertjobs")
    for i, op in enumerate(model.get_ordered_ops()):
        if op.get_type_name() != "Parameter":
            op.set_friendly_name(f"{op.get_type_name()}_{i}")
    return model


def save_converted(folder: Path, model, manifest: dict) -> dict:
    """Write ``model`` and its manifest atomically at ``folder``; return the manifest (with ``sha256``). The same
    model gives the same files, so the same quantization gives the same hash."""
    import openvino as ov

    record: dict = {}

    def fill(tmp: Path) -> None:
        ov.save_model(_stable_names(model), tmp / MODEL_FILES[0], compress_to_fp16=False)
        files = {name: (tmp / name).read_bytes() for name in MODEL_FILES}
        record.update(manifest, openvino=openvino_version(), sha256=files_sha256(files))
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True))

    write_folder(folder, fill)
    return record


def read_manifest(folder: Path, artifact_sha: str) -> dict:
    """The manifest of a converted folder made from this artifact by this OpenVINO, else ConvertedModelProblem."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ConvertedModelProblem("is missing") from None
    except (OSError, ValueError) as exc:
        raise ConvertedModelProblem(f"is unreadable ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("artifact_sha256") != artifact_sha:
        raise ConvertedModelProblem("was made from another artifact")
    if manifest.get("openvino") != openvino_version():
        raise ConvertedModelProblem(f"was made with OpenVINO {manifest.get('openvino')} (this host has "
                                    f"{openvino_version()})")
    return manifest


def read_converted(folder: Path, artifact_sha: str) -> tuple[object, dict]:
    """(model, manifest) of a converted folder that checks out, else ConvertedModelProblem."""
    import numpy as np
    import openvino as ov

    manifest = read_manifest(folder, artifact_sha)
    try:
        files = {name: (folder / name).read_bytes() for name in MODEL_FILES}
    except FileNotFoundError:
        raise ConvertedModelProblem("is missing") from None
    except OSError as exc:
        raise ConvertedModelProblem(f"is unreadable ({type(exc).__name__})") from None
    if files_sha256(files) != manifest.get("sha256"):
        raise ConvertedModelProblem("does not match its recorded sha256")
    try:
        weights = ov.Tensor(np.frombuffer(files["model.bin"], dtype=np.uint8))  # a copy the model owns
        return core().read_model(files["model.xml"], weights), manifest
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError for any unreadable IR
        raise ConvertedModelProblem(f"cannot be read by OpenVINO ({' '.join(str(exc).split())[:200]})") from None


def fp32_model(path: Path, sha256: str) -> tuple[object, dict]:
    """(model, manifest): the converted fp32 model of a verified artifact: the saved one if it checks out, else
    converted again (and saved when the store is writable)."""
    folder = converted_dir(path, "fp32")
    try:
        return read_converted(folder, sha256)
    except ConvertedModelProblem as problem:
        log.info("converting %s for OpenVINO: the converted model %s", path, problem)
    model = convert(read_torch_model(path))
    manifest = {"artifact_sha256": sha256, "kind": "fp32"}
    try:
        manifest = save_converted(folder, model, manifest)
    except OSError as exc:
        log.warning("could not keep the converted model at %s (%s); it is converted again next load", folder, exc)
    return model, manifest


def int8_model(path: Path, sha256: str) -> tuple[object, dict]:
    """(model, manifest) of the int8 model quantized for this artifact; CorruptArtifact (one line) when it does not
    check out."""
    try:
        return read_converted(converted_dir(path, "int8"), sha256)
    except ConvertedModelProblem as problem:
        raise CorruptArtifact(f"the OpenVINO int8 model of {path} {problem}; {QUANTIZE_HINT}") from None


def compile_properties(precision: str) -> dict:
    """One stream with torch's thread count. fp32 keeps f32 arithmetic (OpenVINO would pick bf16 on a bf16 CPU),
    bf16 asks for it. int8 runs the rest of its graph in f32: in bf16 it drifted 7x further from fp32 (max |dp| 0.22
    against 0.03 on 600 Rotten Tomatoes texts, 21 labels changed against 8)."""
    return {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads()}


def saved_compiled(path: Path, sha256: str, precision: str):
    """The compiled model kept for this host beside the artifact's converted model, or None (the reason logged). It
    reads only the converted folder (its manifest and the compiled model, each checked against its own record), so it
    may run while the artifact itself is being verified."""
    kind = "int8" if precision == "int8" else "fp32"
    folder = converted_dir(path, kind)
    try:
        return import_compiled(folder, read_manifest(folder, sha256)["sha256"], compile_properties(precision))
    except ConvertedModelProblem as problem:
        log.info("loading the OpenVINO %s model of %s from its files: it %s", kind, path, problem)
    except CompiledModelProblem as problem:
        log.info("compiling the OpenVINO %s model of %s for this CPU: the compiled model %s", precision, path, problem)
    return None


def compile_converted(path: Path, sha256: str, precision: str):
    """The converted model of a verified artifact compiled for this CPU now, and kept for the next load when the store
    is writable (worker/ml/openvino_compiled.py)."""
    kind = "int8" if precision == "int8" else "fp32"
    folder, properties = converted_dir(path, kind), compile_properties(precision)
    model, manifest = int8_model(path, sha256) if kind == "int8" else fp32_model(path, sha256)
    compiled = core().compile_model(model, "CPU", properties)
    if "sha256" in manifest:  # kept: a model converted now but not saved has no files to compile from next time
        try:
            export_compiled(folder, compiled, manifest["sha256"], properties)
        except OSError as exc:
            log.warning("could not keep the compiled model in %s (%s); it is compiled again next load", folder, exc)
    return compiled


class OpenVINOClassifier(Classifier):
    """A ``Classifier`` whose forward pass is a compiled OpenVINO model (always on the CPU)."""

    engine = "openvino"

    def __init__(self, compiled, tokenizer, labels, max_length: int, precision: str = "fp32",
                 windows: dict | None = None, thresholds: dict[str, float] | None = None,
                 temperature: float | None = None, compiled_from: str = "compiled"):
        super().__init__(compiled, tokenizer, labels, max_length, torch.device("cpu"), precision, windows, thresholds,
                         temperature)
        self.compiled_from = compiled_from  # or "saved": see compiled_model
        self.inputs = {port.get_any_name() for port in compiled.inputs}

    def _prepare(self, model):
        return model  # compiled for this CPU and precision already

    def _logits(self, token_ids, batches) -> torch.Tensor:
        logits = torch.empty((len(token_ids), len(self.labels)), dtype=torch.float32)
        request = self.model.create_infer_request()  # one per call: concurrent callers never share one
        pad_id = self.tokenizer.pad_token_id or 0
        for batch in batches:
            tensors = collate([token_ids[i] for i in batch], pad_id)
            out = request.infer({name: t.numpy() for name, t in tensors.items() if name in self.inputs})
            logits[torch.as_tensor(batch)] = torch.from_numpy(out[self.model.output(0)].copy()).float()
        return logits


def load_openvino(path: str | Path, *, sha256: str | None = None, precision: str = "auto") -> OpenVINOClassifier:
    """Like ``Classifier.from_artifact``, on OpenVINO: the artifact is verified, then its converted model loaded.

    With the artifact's registered sha256, the compiled model kept for this host is read, checked and imported on a
    second thread while this one verifies the artifact and reads its tokenizer (two passes over ~90 MB each for
    MiniLM, at once); nothing from the artifact is read before its check, and a classifier is made only when both
    check out. Without a kept compiled model, the converted one is compiled after the artifact's check."""
    require_openvino()
    path, precision = Path(path), resolve_precision(precision)
    verified = sha256 is None
    if verified:
        verify_artifact(path, None)
        sha256 = artifact_sha256(path)
    with ThreadPoolExecutor(1, thread_name_prefix="bertjobs-openvino-load") as pool:
        saved = pool.submit(saved_compiled, path, sha256, precision)
        if not verified:
            verify_artifact(path, sha256)
        meta, tokenizer = read_metadata(path), read_tokenizer(path)
        compiled = saved.result()
    source = "saved" if compiled is not None else "compiled"
    compiled = compiled if compiled is not None else compile_converted(path, sha256, precision)
    return OpenVINOClassifier(compiled, tokenizer, meta["labels"], meta["max_length"], precision,
                              compiled_from=source, **metadata_options(meta))
