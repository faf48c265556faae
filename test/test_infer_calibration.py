"""Calibration sources: image directory and native dataset traversal, even sampling, bad input."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distilvpr_core.data import native
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer.tensorrt.calibration import CalibrationSource, iter_batches, iter_images, source_digest
from distilvpr_core.foundation.contract import PreprocessContract


def _frame(i: int) -> np.ndarray:
    return np.full((24, 32, 3), i * 10, np.uint8)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    trav = root / "traversals" / "day"
    n = 10
    for i in range(n):
        native.write_frame(trav, i, _png(_frame(i)), np.zeros((5, 4), np.float32))
    poses = np.tile([0, 0, 0, 0, 0, 0, 1.0], (n, 1))
    native.write_traversal(trav, "day", "train", {"time": "day"}, poses, np.arange(n) * 10**8, poses)
    native.write_dataset_json(root, {"camera": {}, "lidar": {}, "traversals": [
        {"name": "day", "role": "train", "num_frames": n, "conditions": {"time": "day"}}]})
    return root


def test_dataset_traversal_is_sampled_evenly(dataset):
    imgs = list(iter_images(CalibrationSource(dataset, "day", limit=4)))
    assert [int(im[0, 0, 0]) for im in imgs] == [0, 30, 60, 90]  # frames 0, 3, 6, 9
    batches = list(iter_batches(CalibrationSource(dataset, "day", limit=5), PreprocessContract(input_size=(16, 12)), 2))
    assert [b.shape for b in batches] == [(2, 3, 12, 16), (2, 3, 12, 16), (1, 3, 12, 16)]
    with pytest.raises(UserError, match="no traversal 'night'"):
        list(iter_images(CalibrationSource(dataset, "night")))


def test_directory_source_and_digest(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(6):
        Image.fromarray(_frame(i)).save(d / f"{i}.png")
    (d / "notes.txt").write_text("ignored")
    src = CalibrationSource(d, limit=3)
    assert len(list(iter_images(src))) == 3
    before = source_digest(src)
    assert source_digest(CalibrationSource(d, limit=3)) == before
    assert source_digest(CalibrationSource(d, limit=4)) != before
    Image.fromarray(_frame(9)).save(d / "extra.png")
    assert source_digest(src) != before  # new calibration data -> new int8 engine key
    (d / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png: unreadable calibration image"):
        list(iter_images(CalibrationSource(d, limit=100)))
    with pytest.raises(UserError, match="limit must be >= 1"):
        CalibrationSource(d, limit=0)
