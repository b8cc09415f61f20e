"""Model artifacts on disk: written to a temporary folder, fsynced, hashed, then renamed into place.

A folder that exists under its final name is complete; its sha256 (over file names and contents) is what
the registry stores and what loading verifies.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from worker.ml.errors import CorruptArtifact, artifact_read_error
from worker.ml.files import fsync_dir, temporary_sibling

METADATA_FILE = "bertjobs.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", METADATA_FILE)


def artifact_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


def write_folder(destination: Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` write a temporary folder beside ``destination``, fsync it, then rename it into place (an older
    folder of that name is replaced): a folder under its final name is always complete."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(destination)
    try:
        tmp.mkdir()
        fill(tmp)
        _fsync_tree(tmp)
        if destination.exists():  # e.g. a previous attempt finished writing but not registering
            shutil.rmtree(destination)
        os.rename(tmp, destination)
        fsync_dir(destination.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_artifact(model, tokenizer, metadata: dict, destination: Path, extra_files: dict[str, str] | None = None) -> str:
    """Save model (safetensors), tokenizer, metadata and ``extra_files`` (name: text, e.g. the calibration sample)
    atomically at ``destination``; return its sha256."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")

    write_folder(destination, fill)
    return artifact_sha256(destination)


def verify_artifact(path: Path, expected_sha256: str | None) -> None:
    path = Path(path)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise CorruptArtifact(f"model artifact {path} is missing {', '.join(missing)}")
    try:
        actual = artifact_sha256(path) if expected_sha256 else None
    except OSError as exc:
        raise artifact_read_error(exc, f"model artifact {path}") from exc
    if expected_sha256 and actual != expected_sha256:
        raise CorruptArtifact(f"model artifact {path} does not match its registered sha256")


def read_metadata(path: Path) -> dict:
    try:
        meta = json.loads((Path(path) / METADATA_FILE).read_text())
    except OSError as exc:
        raise artifact_read_error(exc, f"model artifact {path}: {METADATA_FILE}") from exc
    except ValueError as exc:
        raise CorruptArtifact(f"model artifact {path}: unreadable {METADATA_FILE}: {exc}") from exc
    if not (isinstance(meta, dict) and isinstance(meta.get("labels"), list) and isinstance(meta.get("max_length"), int)):
        raise CorruptArtifact(f"model artifact {path}: {METADATA_FILE} lacks labels or max_length")
    return meta
