"""The OpenVINO engine on the tiny BERT: fp32 agrees with torch, int8 from a fixed sample is reproducible, and a
converted model that does not check out is rebuilt (fp32) or refused in one line (int8), never used."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'bertjobs[openvino]')")
pytest.importorskip("nncf", reason="nncf is not installed (pip install 'bertjobs[openvino]')")

from worker.ml.errors import CorruptArtifact  # noqa: E402
from worker.ml.openvino_engine import converted_dir, int8_model, load_openvino  # noqa: E402
from worker.ml.loader import load_classifier  # noqa: E402
from worker.ml.predict import Classifier  # noqa: E402
from worker.ml.quantize import build_int8, calibration_sample  # noqa: E402

TEXTS = ["great excellent lovely", "awful boring miserable film film film film film film", "bad",
         "superb fantastic wonderful film film film", "dreadful poor terrible film " * 12, "brilliant delightful"]


@pytest.fixture
def artifact(saved_artifact, tmp_path):
    """A copy of the trained artifact (the shared one stays untouched): (folder, sha256)."""
    path, sha = saved_artifact
    copy = tmp_path / "store" / "model-v1"
    shutil.copytree(path, copy)
    return copy, sha


@pytest.fixture
def sample(training_run):
    return calibration_sample(training_run.texts, training_run.labels, seed=42, source="test corpus", size=60)


def _max_delta(a, b) -> float:
    return max(abs(pa.scores[k] - pb.scores[k]) for pa, pb in zip(a, b) for k in pa.scores)


def _bin_sha(path) -> str:
    return hashlib.sha256((converted_dir(path, "int8") / "model.bin").read_bytes()).hexdigest()


@pytest.mark.slow
def test_openvino_fp32_agrees_with_torch_within_1e4(artifact):
    path, sha = artifact
    torch_fp32 = Classifier.from_artifact(path, sha256=sha, device="cpu", precision="fp32")
    ov_fp32 = load_openvino(path, sha256=sha, precision="fp32")

    for batch_size in (1, 4, 64):  # dynamic batch and length: padding differs batch to batch
        ours, theirs = ov_fp32.predict(TEXTS, batch_size), torch_fp32.predict(TEXTS, batch_size)
        assert [p.label for p in ours] == [p.label for p in theirs]
        assert _max_delta(ours, theirs) <= 1e-4
    assert (ov_fp32.engine, ov_fp32.precision, torch_fp32.engine) == ("openvino", "fp32", "torch")
    assert ov_fp32.predict_or_fail(["fine film", ""])[1].error  # failure rows as with torch


@pytest.mark.slow
def test_the_converted_model_is_kept_beside_the_artifact_whose_hash_does_not_change(artifact):
    path, sha = artifact
    load_openvino(path, sha256=sha, precision="fp32")
    manifest = json.loads((converted_dir(path, "fp32") / "manifest.json").read_text())
    assert manifest["artifact_sha256"] == sha and len(manifest["sha256"]) == 64
    assert converted_dir(path, "fp32").parent.name == "model-v1.openvino"

    again = load_classifier(path, sha256=sha, device="cpu", precision="fp32", engine="openvino")  # verifies sha256
    assert again.engine == "openvino"
    assert json.loads((converted_dir(path, "fp32") / "manifest.json").read_text()) == manifest  # reused, not rebuilt


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["bytes", "version", "missing"])
def test_a_damaged_or_stale_fp32_conversion_is_rebuilt_not_used(artifact, damage):
    path, sha = artifact
    reference = load_openvino(path, sha256=sha, precision="fp32").predict(TEXTS)
    folder = converted_dir(path, "fp32")
    if damage == "bytes":
        data = bytearray((folder / "model.bin").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.bin").write_bytes(bytes(data))
    elif damage == "version":
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "openvino": "2023.0.0-0000"}))
    else:
        (folder / "model.xml").unlink()

    rebuilt = load_openvino(path, sha256=sha, precision="fp32").predict(TEXTS)

    assert _max_delta(rebuilt, reference) == 0.0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["openvino"] != "2023.0.0-0000"
    assert load_openvino(path, sha256=sha, precision="fp32").predict(TEXTS) == rebuilt


@pytest.mark.slow
def test_int8_from_a_calibration_sample_is_deterministic_and_scored_against_fp32(artifact, sample, training_run):
    path, sha = artifact
    evaluation = (training_run.texts[:40], training_run.labels[:40], "first 40 texts")
    first = build_int8(path, sha, sample, evaluation)
    weights, predictions = _bin_sha(path), load_openvino(path, sha256=sha, precision="int8").predict(TEXTS)
    second = build_int8(path, sha, sample, evaluation)

    assert second["sha256"] == first["sha256"] and _bin_sha(path) == weights  # same sample, same files
    assert load_openvino(path, sha256=sha, precision="int8").predict(TEXTS) == predictions
    assert first["calibration"] == {"source": "test corpus", "seed": 42, "size": 60,
                                    "sha256": first["calibration"]["sha256"]}
    assert first["evaluated_on"] == {"what": "first 40 texts", "texts": 40}
    assert first["int8"]["accuracy"] >= first["fp32"]["accuracy"] - 0.1 and first["fp32"]["accuracy"] >= 0.9
    other = build_int8(path, sha, calibration_sample(training_run.texts, training_run.labels, seed=7, source="x",
                                                     size=60))
    assert other["calibration"]["sha256"] != first["calibration"]["sha256"]


@pytest.mark.slow
def test_int8_that_is_missing_damaged_or_from_another_openvino_is_refused_in_one_line(artifact, sample):
    path, sha = artifact
    with pytest.raises(CorruptArtifact, match=r"int8 model of .* is missing; build it with `bertjobs models quantize"):
        load_openvino(path, sha256=sha, precision="int8")
    build_int8(path, sha, sample)
    folder = converted_dir(path, "int8")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "openvino": "2023.0.0-0000"}))
    with pytest.raises(CorruptArtifact, match="made with OpenVINO 2023.0.0-0000"):
        load_openvino(path, sha256=sha, precision="int8")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    data = bytearray((folder / "model.bin").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.bin").write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="does not match its recorded sha256") as caught:
        load_openvino(path, sha256=sha, precision="int8")
    assert "\n" not in str(caught.value)
    # An artifact replaced under the same name (another sha256) does not inherit the old int8 model.
    with pytest.raises(CorruptArtifact, match="made from another artifact"):
        int8_model(path, "0" * 64)


def test_auto_picks_openvino_on_the_cpu_and_torch_on_a_gpu():
    from worker.ml.engine import resolve_engine

    assert resolve_engine("auto", "cpu") == "openvino"
    assert resolve_engine("auto", "cuda:0") == "torch"
    assert resolve_engine("auto", "cpu", "fp16") == "torch"  # a precision only torch runs
    assert resolve_engine("torch", "cpu") == "torch"
    assert resolve_engine("openvino", "auto") == "openvino"  # on the CPU even where a GPU is
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_engine("openvino", "cuda")
