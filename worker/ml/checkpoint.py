"""Per-epoch training checkpoints, each written atomically over the last one (a writer's own temporary, renamed).

A checkpoint carries a ``key`` (the data and configuration it belongs to); one with another key is ignored,
so a job whose data changed between attempts starts over instead of resuming the wrong run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

from worker.ml.files import fsync_dir, temporary_sibling

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any],
                    commit: Callable[[Callable[[], None]], None] | None = None) -> None:
    """Write the checkpoint under a name of this writer's own, then rename it into place through ``commit``
    (which may refuse by raising: a job renames only while its attempt still owns the job)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())

        def rename() -> None:
            os.replace(tmp, path)
            fsync_dir(directory)

        (commit or (lambda replace: replace()))(rename)
    finally:
        tmp.unlink(missing_ok=True)


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
