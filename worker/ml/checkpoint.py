"""Per-epoch training checkpoints: written to a temporary file, fsynced, then renamed over the last one.

A checkpoint carries a ``key`` (the data and configuration it belongs to); one with another key is ignored,
so a job whose data changed between attempts starts over instead of resuming the wrong run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT_FILE}.tmp"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / CHECKPOINT_FILE)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(directory: Path | None, key: str) -> dict[str, Any] | None:
    """The last complete checkpoint for ``key``, or None (no folder, no file, another key, unreadable)."""
    if directory is None:
        return None
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged checkpoint means starting over, not failing the job
        return None
    return state if isinstance(state, dict) and state.get("key") == key else None
