"""Atomic writes: the target holds the old content or the new, and no temporary is left behind."""
from __future__ import annotations

import pytest

from worker.ml.files import atomic_file, write_text_atomic


def test_an_atomic_write_replaces_the_file_and_leaves_only_the_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")

    write_text_atomic(target, "new")

    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_write_that_fails_midway_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"epoch 1")

    with pytest.raises(RuntimeError):
        with atomic_file(target) as fh:
            fh.write(b"half of epoch")
            raise RuntimeError("killed while writing")

    assert target.read_bytes() == b"epoch 1"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
