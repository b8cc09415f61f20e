"""Per-epoch training checkpoints, each written atomically over the last one (worker/ml/files.py).

A checkpoint carries a ``key`` (the data and configuration it belongs to); one with another key is ignored,
so a job whose data changed between attempts starts over instead of resuming the wrong run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from worker.ml.files import atomic_file

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_file(directory / CHECKPOINT_FILE) as fh:
        torch.save(state, fh)


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
