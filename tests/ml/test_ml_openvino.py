"""The OpenVINO engine on the tiny BERT: fp32 agrees with torch, int8 from a fixed sample is reproducible, a
converted model that does not check out is rebuilt (fp32) or refused in one line (int8), never used, and a compiled
model kept for this host is imported on the next load only when its record and sha256 check out."""
from __future__ import annotations

import hashlib
import json
import re
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
    # The compiled model kept for this host stands in for the converted files (they are not read while it checks
    # out), unless the manifest says they were made by another OpenVINO: then everything is made again.
    kept = load_openvino(path, sha256=sha, precision="fp32")
    assert kept.compiled_from == ("compiled" if damage == "version" else "saved")
    for compiled in folder.glob("compiled-*.blob"):
        compiled.unlink()

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


def _compiled_files(path, kind="fp32") -> list:
    return sorted(converted_dir(path, kind).glob("compiled-*.blob"))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_second_load_imports_the_compiled_model_kept_beside_the_converted_one(artifact, sample, precision):
    path, sha = artifact
    if precision == "int8":
        build_int8(path, sha, sample)
    first = load_openvino(path, sha256=sha, precision=precision)
    [kept] = _compiled_files(path, precision)
    record = json.loads(kept.read_bytes().split(b"\n", 1)[0])

    second = load_openvino(path, sha256=sha, precision=precision)

    assert (first.compiled_from, second.compiled_from) == ("compiled", "saved")
    assert second.predict(TEXTS) == first.predict(TEXTS)  # imported and freshly compiled: the same numbers
    assert record["converted_sha256"] == json.loads((converted_dir(path, precision) / "manifest.json").read_text())[
        "sha256"]
    assert record["key"]["properties"]["INFERENCE_PRECISION_HINT"] == "f32" and record["key"]["isa"]
    assert record["bytes"] == len(kept.read_bytes().split(b"\n", 1)[1])


def _flip(path, where: int) -> None:
    data = bytearray(path.read_bytes())
    data[where] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage, reason", [
    ("bytes", "does not match its recorded sha256"), ("record", "is unreadable|another host"),
    ("truncated", "is not as long as its record says"), ("converted", "compiled from another converted model")])
def test_a_damaged_compiled_model_is_caught_before_import_and_compiled_again(artifact, caplog, damage, reason):
    path, sha = artifact
    reference = load_openvino(path, sha256=sha, precision="fp32").predict(TEXTS)
    [kept] = _compiled_files(path)
    header, body = kept.read_bytes().split(b"\n", 1)
    if damage == "bytes":
        _flip(kept, len(header) + 1 + len(body) // 2)
    elif damage == "record":
        _flip(kept, 1)
    elif damage == "truncated":
        kept.write_bytes(header + b"\n" + body[:-1000])
    else:  # recorded as compiled from other converted files than the folder's
        record = json.loads(header)
        kept.write_bytes(json.dumps({**record, "converted_sha256": "0" * 64}).encode() + b"\n" + body)

    with caplog.at_level("INFO", logger="bertjobs.openvino"):
        rebuilt = load_openvino(path, sha256=sha, precision="fp32")

    assert rebuilt.compiled_from == "compiled" and rebuilt.predict(TEXTS) == reference
    assert re.search(f"the compiled model .*({reason})", caplog.text)
    assert load_openvino(path, sha256=sha, precision="fp32").compiled_from == "saved"  # rewritten, and it checks out
    assert _compiled_files(path) == [kept]


@pytest.mark.slow
def test_a_compiled_model_for_another_openvino_or_setting_is_not_used(artifact, monkeypatch):
    import torch

    from worker.ml import openvino_compiled

    path, sha = artifact
    with monkeypatch.context() as m:
        m.setattr(openvino_compiled, "openvino_build", lambda: "2023.0.0-0000")
        other = load_openvino(path, sha256=sha, precision="fp32")
    [elsewhere] = _compiled_files(path)
    assert json.loads(elsewhere.read_bytes().split(b"\n", 1)[0])["key"]["openvino"] == "2023.0.0-0000"

    here = load_openvino(path, sha256=sha, precision="fp32")  # this OpenVINO looks for its own file, not that one
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        more_threads = load_openvino(path, sha256=sha, precision="fp32")
    finally:
        torch.set_num_threads(threads)

    assert (other.compiled_from, here.compiled_from, more_threads.compiled_from) == ("compiled",) * 3
    assert len(_compiled_files(path)) == 3
    assert load_openvino(path, sha256=sha, precision="fp32").compiled_from == "saved"
    # Converted again (here: made by another OpenVINO), the folder is replaced, compiled models and all.
    manifest = json.loads((converted_dir(path, "fp32") / "manifest.json").read_text())
    (converted_dir(path, "fp32") / "manifest.json").write_text(json.dumps({**manifest, "openvino": "2023.0.0-0000"}))
    assert load_openvino(path, sha256=sha, precision="fp32").compiled_from == "compiled"
    assert len(_compiled_files(path)) == 1


@pytest.mark.slow
def test_a_compiled_model_that_cannot_be_kept_is_compiled_again_next_time_and_leaves_nothing_behind(artifact, caplog):
    from worker.ml.openvino_compiled import cache_key, compiled_path
    from worker.ml.openvino_engine import compile_properties

    path, sha = artifact
    reference = load_openvino(path, sha256=sha, precision="fp32").predict(TEXTS)
    [kept] = _compiled_files(path)
    kept.unlink()
    assert compiled_path(converted_dir(path, "fp32"), cache_key(compile_properties("fp32"))) == kept
    kept.mkdir()  # something in the way that cannot be read as a compiled model nor replaced by one

    with caplog.at_level("INFO", logger="bertjobs.openvino"):
        loads = [load_openvino(path, sha256=sha, precision="fp32") for _ in range(2)]

    assert [c.compiled_from for c in loads] == ["compiled", "compiled"]
    assert loads[1].predict(TEXTS) == reference
    assert "could not keep the compiled model" in caplog.text and kept.is_dir()
    assert not list(converted_dir(path, "fp32").glob(".tmp-*"))
