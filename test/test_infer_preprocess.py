"""Preprocessing + contract: odd sizes, mono/RGBA, policies, exact values, bad input, no torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.foundation.contract import PreprocessContract
from distilvpr_core.foundation.preprocess import preprocess

C = PreprocessContract(input_size=(64, 48))


def _expected_uniform(value: tuple[int, int, int], c: PreprocessContract) -> np.ndarray:
    v = np.asarray(value, np.float64) / 255.0
    return ((v - np.asarray(c.mean)) / np.asarray(c.std)).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3000, 4000, 3), (48, 64, 3), (481, 643, 3), (7, 300, 3)])
def test_any_size_gives_contract_shape_and_exact_values_on_uniform_frames(shape):
    img = np.empty(shape, np.uint8)
    img[...] = (200, 30, 90)
    x = preprocess(img, C)
    assert x.shape == (1, 3, 48, 64) and x.dtype == np.float32
    want = _expected_uniform((200, 30, 90), C)
    np.testing.assert_allclose(x[0].reshape(3, -1).mean(1), want, atol=1e-5)
    np.testing.assert_allclose(x[0].reshape(3, -1).std(1), 0, atol=1e-5)


def test_mono_rgba_and_single_channel_match_rgb():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (120, 160), np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((120, 160, 1), 7, np.uint8)], axis=2)
    ref = preprocess(rgb, C)
    np.testing.assert_allclose(preprocess(gray, C), ref, atol=1e-6)
    np.testing.assert_allclose(preprocess(gray[:, :, None], C), ref, atol=1e-6)
    np.testing.assert_allclose(preprocess(rgba, C), ref, atol=1e-6)


def test_batch_array_and_mixed_size_list():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (96, 128, 3), np.uint8)
    b = rng.integers(0, 256, (30, 500), np.uint8)
    batch = preprocess(np.stack([a, a]), C)
    assert batch.shape == (2, 3, 48, 64)
    np.testing.assert_array_equal(batch[0], batch[1])
    mixed = preprocess([a, b], C)
    np.testing.assert_array_equal(mixed[0], batch[0])
    np.testing.assert_array_equal(mixed[1], preprocess(b, C)[0])


def test_center_crop_cuts_the_sides_and_stretch_keeps_them():
    # 200x100 frame into a square input: the outer quarters are red, the centre green.
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = (255, 0, 0)
    img[:, 150:] = (255, 0, 0)
    img[:, 50:150] = (0, 255, 0)
    sq = PreprocessContract(input_size=(32, 32))
    crop = preprocess(img, sq)[0]
    green = _expected_uniform((0, 255, 0), sq)
    # The outermost columns blend with their neighbours (like resize-then-crop would).
    inner = crop[:, :, 1:-1].reshape(3, -1)
    np.testing.assert_allclose(inner, np.repeat(green[:, None], inner.shape[1], 1), atol=1e-4)
    stretch = preprocess(img, PreprocessContract(input_size=(32, 32), resize="stretch"))[0]
    red = _expected_uniform((255, 0, 0), sq)
    np.testing.assert_allclose(stretch[:, :, 0], np.repeat(red[:, None], 32, 1), atol=1e-4)


def test_bgr_contract_swaps_channels():
    img = np.zeros((48, 64, 3), np.uint8)
    img[..., 0] = 250  # red
    bgr = PreprocessContract(input_size=(64, 48), channel_order="BGR", mean=(0, 0, 0), std=(1, 1, 1))
    x = preprocess(img, bgr)[0]
    assert x[2].min() == pytest.approx(250 / 255) and x[0].max() == 0.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8),
                                 np.zeros((0, 10, 3), np.uint8), [], "frame.png",
                                 np.zeros((2, 3, 4, 5, 3), np.uint8)])
def test_bad_images_raise_user_error(bad):
    with pytest.raises(UserError, match="images"):
        preprocess(bad, C)


def test_contract_round_trip_and_validation():
    c = PreprocessContract(input_size=(320, 240), resize="stretch", descriptor_dim=256)
    assert PreprocessContract.from_json(c.to_json()) == c
    assert c.to_dict()["input_size"] == [320, 240]
    with pytest.raises(UserError, match="m.onnx: resize must be one of"):
        PreprocessContract.from_dict({**c.to_dict(), "resize": "squash"}, source="m.onnx")
    with pytest.raises(UserError, match="unknown preprocessing contract key"):
        PreprocessContract.from_dict({**c.to_dict(), "gamma": 2.2})
    with pytest.raises(UserError, match="v2"):
        PreprocessContract.from_dict({**c.to_dict(), "version": 2})
    with pytest.raises(UserError, match="std values must be > 0"):
        PreprocessContract(std=(0.2, 0.0, 0.2))
    with pytest.raises(UserError, match="input_size"):
        PreprocessContract(input_size=(0, 240))


def test_runtime_modules_do_not_import_torch():
    code = ("import sys\n"
            "import distilvpr_core.infer, distilvpr_core.foundation.preprocess, distilvpr_core.infer.ort_backend\n"
            "import distilvpr_core.infer.tensorrt.backend, distilvpr_core.infer.tensorrt.calibration\n"
            "import distilvpr_core.infer.tensorrt.engine_cache, distilvpr_core.infer.tensorrt.build\n"
            "import distilvpr_core.infer.tensorrt.engines, distilvpr_core.bench.accuracy\n"
            "import distilvpr_core.infer.quantize\n"
            "import numpy as np\n"
            "from distilvpr_core.foundation.contract import PreprocessContract\n"
            "distilvpr_core.infer.preprocess(np.zeros((9, 9, 3), np.uint8), PreprocessContract())\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
