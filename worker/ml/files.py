"""Atomic writes: a reader sees the old file or the new one, never half of one, even after a crash.

Write beside the target under a temporary name, fsync, rename over the target, fsync the folder (the rename itself
is only durable once the folder is). Pure standard library; worker/ml and the rest of the worker share it.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a file renamed into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this writer (two writers never share a temporary)."""
    return path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_file(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; when the block ends without error it replaces ``path`` durably.
    On an error the temporary is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8") as fh:
        fh.write(text)
