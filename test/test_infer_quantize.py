"""INT8 (ONNX Runtime QDQ) vs fp32 on the real student: cosine, retrieval R@1, metadata, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer import load_embedder
from distilvpr_core.infer.tensorrt.calibration import CalibrationSource
from distilvpr_core.infer.model_meta import read_model_info
from distilvpr_core.infer.quantize import cosine_rows, quantize_int8


def place_frame(seed: int, shift: int = 0, gain: float = 1.0) -> np.ndarray:
    """A synthetic 'place' (240x320 rgb8): sky/ground + coloured blocks; revisits shift and relight it."""
    rng = np.random.default_rng(seed)
    img = np.zeros((240, 360, 3), np.float32)
    img[:120] = np.linspace(210, 130, 120)[:, None, None] * np.array([0.6, 0.8, 1.0])
    img[120:] = np.linspace(90, 40, 120)[:, None, None]
    for _ in range(10):
        x, y = rng.integers(0, 330), rng.integers(40, 200)
        img[y:y + rng.integers(15, 90), x:x + rng.integers(8, 50)] = rng.integers(0, 255, 3)
    return (img[:, 20 + shift:340 + shift] * gain).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    import torch
    from distilvpr_core.export.random_student import export_random_student
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("q")
    _, fp32 = export_random_student(d, (160, 120), seed=1)
    calib = d / "calib"
    calib.mkdir()
    for i in range(16):  # calibration traversal: other places than the ones evaluated
        Image.fromarray(place_frame(1000 + i)).save(calib / f"{i:03d}.png")
    quantize_int8(fp32, d / "s.int8.onnx", CalibrationSource(calib, limit=16))
    return fp32, d / "s.int8.onnx"


def test_int8_keeps_descriptors_and_recall(models):
    fp32_path, int8_path = models
    fp32 = load_embedder(fp32_path, intra_op_threads=1)
    int8 = load_embedder(int8_path, intra_op_threads=1)
    assert int8.precision == "int8" and int8.fingerprint == fp32.fingerprint
    db_imgs = [place_frame(i) for i in range(24)]
    q_imgs = [place_frame(i, shift=6, gain=0.85) for i in range(24)]  # revisits
    db32, q32, q8, db8 = fp32.embed(db_imgs), fp32.embed(q_imgs), int8.embed(q_imgs), int8.embed(db_imgs)
    assert cosine_rows(q32, q8).min() >= 0.97
    assert cosine_rows(db32, db8).min() >= 0.97
    # A random-init student's descriptors share a large common component, which
    # alone would make the cosine high; the place-specific part must survive too.
    mean = db32.mean(0)
    assert cosine_rows(q32 - mean, q8 - mean).min() >= 0.97
    truth = np.arange(24)
    r1_fp32 = float(((q32 @ db32.T).argmax(1) == truth).mean())
    r1_int8 = float(((q8 @ db8.T).argmax(1) == truth).mean())
    assert r1_fp32 >= 0.5  # the benchmark is not degenerate
    assert r1_fp32 - r1_int8 <= 1 / 24 + 1e-9  # at most one query of 24 lost


def test_int8_model_metadata_and_refusals(models, tmp_path):
    fp32_path, int8_path = models
    info = read_model_info(int8_path)
    assert info.precision == "int8" and info.contract == read_model_info(fp32_path).contract
    with pytest.raises(UserError, match="already int8"):
        quantize_int8(int8_path, tmp_path / "x.onnx", CalibrationSource(tmp_path))
    with pytest.raises(UserError, match="calib_missing: calibration image directory not found"):
        CalibrationSource(tmp_path / "calib_missing")
    with pytest.raises(UserError, match="no images"):
        quantize_int8(fp32_path, tmp_path / "x.onnx", CalibrationSource(tmp_path))


def _write_places_dataset(root: Path, n: int = 12) -> None:
    """A native dataset with two test traversals revisiting n places 10 m apart."""
    import io

    from distilvpr_core.data import native
    trav_meta = []
    for name, shift, gain in (("test_a", 0, 1.0), ("test_b", 6, 0.85)):
        d = root / "traversals" / name
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(place_frame(i, shift, gain)).save(buf, format="PNG")
            native.write_frame(d, i, buf.getvalue(), np.zeros((1, 4), np.float32))
        poses = np.zeros((n, 7))
        poses[:, 0], poses[:, 6] = 10.0 * np.arange(n), 1.0
        native.write_traversal(d, name, "test", {}, poses, np.arange(n) * 10**9, poses)
        trav_meta.append({"name": name, "role": "test", "num_frames": n, "conditions": {}})
    native.write_dataset_json(root, {"camera": {}, "lidar": {}, "traversals": trav_meta})


def test_accuracy_report_on_a_native_dataset(models, tmp_path):
    from distilvpr_core.bench.accuracy import compare_on_dataset
    fp32_path, int8_path = models
    _write_places_dataset(tmp_path / "ds")
    fp32 = load_embedder(fp32_path, intra_op_threads=1)
    same = compare_on_dataset(fp32, fp32, tmp_path / "ds", radius_m=4.0)
    assert same["r1_drop"] == 0 and same["cosine_min"] > 0.99999 and same["frames"] == 24
    assert same["ref"]["queries"] == 24 and same["ref"]["R@1"] >= 50
    res = compare_on_dataset(fp32, load_embedder(int8_path, intra_op_threads=1), tmp_path / "ds", radius_m=4.0)
    assert res["traversals"] == ["test_a", "test_b"] and res["cosine_min"] >= 0.97
    assert res["r1_drop"] <= 100 / 12 + 1e-9  # at most one of 12 queries per pair
