"""Model artifacts: atomic save, a stable sha256, verification and refusal of damaged folders."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from worker.ml.artifact import (  # noqa: E402
    METADATA_FILE,
    REQUIRED_FILES,
    artifact_sha256,
    read_metadata,
    save_artifact,
    verify_artifact,
)
from worker.ml.errors import CorruptArtifact  # noqa: E402

METADATA = {"labels": ["neg", "pos"], "max_length": 128}


@pytest.fixture
def fresh_artifact(training_run, tmp_path) -> tuple[Path, str]:
    """A private copy of the trained artifact, which the test may damage."""
    result = training_run.result
    destination = tmp_path / "store" / "model-v2"
    sha = save_artifact(result.model, result.tokenizer, METADATA, destination)
    return destination, sha


def test_a_saved_artifact_holds_the_required_files_and_verifies_against_its_sha(fresh_artifact):
    path, sha = fresh_artifact

    assert all((path / name).is_file() for name in REQUIRED_FILES)
    verify_artifact(path, sha)
    verify_artifact(path, None)


def test_the_returned_sha_is_the_sha_of_the_folder_under_its_final_name(fresh_artifact):
    path, sha = fresh_artifact

    assert re.fullmatch("[0-9a-f]{64}", sha)
    assert artifact_sha256(path) == sha
    moved = shutil.copytree(path, path.with_name("elsewhere"))
    assert artifact_sha256(moved) == sha  # the folder's own name is not part of it
    (moved / "config.json").write_text((moved / "config.json").read_text() + " ")
    assert artifact_sha256(moved) != sha  # one byte more is another sha


def test_the_same_model_saved_twice_has_the_same_sha(training_run, tmp_path):
    result = training_run.result

    first = save_artifact(result.model, result.tokenizer, METADATA, tmp_path / "a")
    second = save_artifact(result.model, result.tokenizer, METADATA, tmp_path / "b")

    assert first == second


def test_different_metadata_gives_a_different_sha(training_run, tmp_path):
    result = training_run.result

    first = save_artifact(result.model, result.tokenizer, METADATA, tmp_path / "a")
    second = save_artifact(result.model, result.tokenizer, {**METADATA, "max_length": 64}, tmp_path / "b")

    assert first != second


def test_metadata_is_read_back_as_saved(fresh_artifact):
    path, _ = fresh_artifact

    assert read_metadata(path) == METADATA
    assert (path / METADATA_FILE).is_file()


def test_no_temporary_folder_is_left_beside_the_artifact(fresh_artifact):
    path, _ = fresh_artifact

    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_failed_save_leaves_neither_the_artifact_nor_a_temporary_folder(training_run, tmp_path):
    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_artifact(training_run.result.model, BrokenTokenizer(), METADATA, tmp_path / "store" / "model")

    assert list((tmp_path / "store").iterdir()) == []


def test_saving_over_an_existing_artifact_replaces_it(training_run, tmp_path):
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "stale.bin").write_bytes(b"left over from an earlier attempt")
    result = training_run.result

    sha = save_artifact(result.model, result.tokenizer, METADATA, destination)

    assert not (destination / "stale.bin").exists()
    verify_artifact(destination, sha)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", METADATA_FILE, "tokenizer_config.json"])
def test_changing_one_byte_of_any_file_fails_verification(fresh_artifact, name):
    path, sha = fresh_artifact
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / name).write_bytes(bytes(data))

    with pytest.raises(CorruptArtifact, match="does not match its registered sha256"):
        verify_artifact(path, sha)


def test_an_added_file_fails_verification(fresh_artifact):
    path, sha = fresh_artifact
    (path / "extra.txt").write_text("surprise")

    with pytest.raises(CorruptArtifact):
        verify_artifact(path, sha)


def test_renaming_a_file_changes_the_sha(fresh_artifact):
    path, sha = fresh_artifact
    (path / "tokenizer.json").rename(path / "tokenizer2.json")

    assert artifact_sha256(path) != sha


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_a_missing_required_file_is_corrupt_even_without_a_sha(fresh_artifact, name):
    path, _ = fresh_artifact
    (path / name).unlink()

    with pytest.raises(CorruptArtifact, match=f"missing {name}"):
        verify_artifact(path, None)


def test_a_missing_folder_is_corrupt(tmp_path):
    with pytest.raises(CorruptArtifact, match="missing"):
        verify_artifact(tmp_path / "never-saved", None)


def test_a_missing_tokenizer_file_fails_verification_against_the_sha(fresh_artifact):
    path, sha = fresh_artifact
    (path / "tokenizer.json").unlink()

    with pytest.raises(CorruptArtifact):
        verify_artifact(path, sha)


def test_copying_an_artifact_keeps_its_sha(fresh_artifact, tmp_path):
    path, sha = fresh_artifact
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(path, copy)

    verify_artifact(copy, sha)
