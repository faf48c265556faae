"""Atomic writes: a failure inside the block leaves the previous version."""
from __future__ import annotations

from pathlib import Path

import pytest

from distilvpr_core.foundation.atomic import atomic_directory, write_text_atomic


def test_write_text_atomic_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "f.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_directory_keeps_old_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "map"
    with atomic_directory(target) as tmp:
        (tmp / "x").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "x").write_text("v2")
            raise RuntimeError("crash mid-write")
    assert (target / "x").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map"]


def test_atomic_directory_refuses_non_empty_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("k")
    with pytest.raises(FileExistsError, match="--overwrite"):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new").write_text("n")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def test_overwrite_swaps_atomically_on_linux(tmp_path: Path) -> None:
    from distilvpr_core.foundation.atomic import _exchange
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("A")
    (b / "x").write_text("B")
    assert _exchange(a, b), "renameat2(RENAME_EXCHANGE) should work on Linux tmpfs/ext4"
    assert (a / "x").read_text() == "B" and (b / "x").read_text() == "A"
