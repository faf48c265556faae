"""Every file and directory we write follows the process umask (0644/0755 by
default), and an output directory that cannot be written is a clear error
with nothing left behind."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.foundation.atomic import (OutputNotWritable, atomic_directory, current_umask, write_bytes_atomic,
                                   write_text_atomic)
from distilvpr_core.foundation.errors import UserError


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _all_modes(root: Path) -> dict[str, int]:
    out = {".": _mode(root)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = _mode(p)
    return out


def test_current_umask_reads_the_process_umask(umask):
    assert current_umask() == umask


def test_atomic_files_and_directories_follow_the_umask(tmp_path, umask):
    f = write_text_atomic(tmp_path / "report.md", "x")
    g = write_bytes_atomic(tmp_path / "deep" / "student.onnx", b"\0")
    assert _mode(f) == _mode(g) == 0o666 & ~umask
    with atomic_directory(tmp_path / "out") as d:
        (d / "a.npy").write_bytes(b"1")
    assert _mode(tmp_path / "out") == 0o777 & ~umask
    with atomic_directory(tmp_path / "out", overwrite=True) as d:   # the swap path too
        (d / "b.npy").write_bytes(b"2")
    assert _mode(tmp_path / "out") == 0o777 & ~umask


def test_a_saved_map_is_readable_by_other_users_with_the_default_umask(tmp_path):
    from distilvpr_core.mapdb import PriorMap
    old = os.umask(0o022)
    try:
        m = PriorMap.create(8, "f" * 64, {"input_size": [32, 24]}, index="flat")
        rng = np.random.default_rng(0)
        m.add(rng.normal(size=(3, 8)).astype(np.float32), np.arange(3, dtype=np.int64) + 10**18,
              np.tile([0, 0, 0, 0, 0, 0, 1.0], (3, 1)), "s", np.arange(3, dtype=np.int64))
        m.save(tmp_path / "map")
        m.save(tmp_path / "map")  # overwrite: the exchange path
    finally:
        os.umask(old)
    modes = _all_modes(tmp_path / "map")
    dirs = {k for k in modes if (tmp_path / "map" / k).is_dir()}
    assert {modes[k] for k in dirs} == {0o755}, modes
    assert {v for k, v in modes.items() if k not in dirs} == {0o644}, modes


def test_unwritable_output_directory_is_a_clear_error_and_nothing_is_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputNotWritable, match=r"file/out/report.md: cannot write there .*writable output"):
        write_text_atomic(blocker / "out" / "report.md", "x")
    with pytest.raises(UserError, match="map: cannot write there"):
        with atomic_directory(blocker / "map"):
            pass
    assert isinstance(OutputNotWritable("x"), OSError)  # callers catching OSError still do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(OutputNotWritable, match="Permission denied"):
            write_text_atomic(ro / "x.txt", "x")
        assert list(ro.iterdir()) == []
