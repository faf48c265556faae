"""Image / CompressedImage -> RGB conversion, including every malformed kind."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

from distilvpr_core.data.images import (BadImage, check_image, compressed_to_rgb, demosaic_bilinear,
                                      image_to_rgb)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


def make_image(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    h, w = array.shape[:2]
    raw = np.ascontiguousarray(array)
    if raw.dtype == np.uint16:
        raw = raw.astype(">u2" if bigendian else "<u2")
    rows = raw.reshape(h, -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("encoding,array", [
    ("rgb8", RGB), ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_give_the_same_rgb(encoding, array, pad):
    out = image_to_rgb(make_image(array, encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == RGB.shape
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_replicated():
    mono = RGB[:, :, 0]
    out = image_to_rgb(make_image(mono, "mono8"))
    np.testing.assert_array_equal(out, np.dstack([mono] * 3))


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_keeps_the_high_byte(bigendian):
    mono = (RGB[:, :, 0].astype(np.uint16) << 8) | 0x5A
    out = image_to_rgb(make_image(mono, "mono16", bigendian=bigendian))
    np.testing.assert_array_equal(out[:, :, 1], RGB[:, :, 0])


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """RGB -> Bayer raw, independent of the implementation's tables."""
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            ch = "RGB".index(pattern[2 * dy + dx].upper())
            raw[dy::2, dx::2] = rgb[dy::2, dx::2, ch]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_recovers_flat_colour_exactly_and_smooth_images_closely(pattern):
    flat = np.broadcast_to(np.array([200, 90, 30], np.uint8), (8, 12, 3)).copy()
    out = image_to_rgb(make_image(mosaic(flat, pattern), f"bayer_{pattern}8"))
    np.testing.assert_array_equal(out, flat)
    yy, xx = np.mgrid[0:32, 0:40]
    smooth = np.dstack([4 * xx + 20, 3 * yy + 40, 2 * (xx + yy) + 10]).astype(np.uint8)
    out = demosaic_bilinear(mosaic(smooth, pattern), pattern)
    err = np.abs(out[1:-1, 1:-1].astype(int) - smooth[1:-1, 1:-1])
    assert err.max() <= 4, err.max()  # linear ramps are interpolated almost exactly


def test_bayer16():
    flat = np.broadcast_to(np.array([200, 90, 30], np.uint16) << 8, (4, 6, 3)).copy()
    out = image_to_rgb(make_image(mosaic(flat, "rggb"), "bayer_rggb16"))
    np.testing.assert_array_equal(out[0, 0], [200, 90, 30])


def encode(fmt: str, array: np.ndarray, **kw) -> CompressedImage:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format=fmt.upper(), **kw)
    msg = CompressedImage(format=fmt)
    msg.data = buf.getvalue()
    return msg


def test_png_is_lossless_and_jpeg_close():
    np.testing.assert_array_equal(compressed_to_rgb(encode("png", RGB)), RGB)
    smooth = np.full((16, 16, 3), 128, np.uint8)
    out = compressed_to_rgb(encode("jpeg", smooth, quality=95))
    assert np.abs(out.astype(int) - 128).max() <= 2
    # image_transport style format strings are accepted too
    msg = encode("jpeg", smooth)
    msg.format = "rgb8; jpeg compressed bgr8"
    assert compressed_to_rgb(msg).shape == (16, 16, 3)


@pytest.mark.parametrize("mutate,kind", [
    (lambda m: setattr(m, "encoding", "yuv422_yuy2"), "encoding"),
    (lambda m: setattr(m, "encoding", ""), "encoding"),
    (lambda m: setattr(m, "width", 0), "dimensions"),
    (lambda m: (setattr(m, "width", 100_000), setattr(m, "height", 100_000)), "dimensions"),
    (lambda m: setattr(m, "step", 5), "size"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "size"),
    (lambda m: setattr(m, "height", 7), "size"),
])
def test_malformed_raw_images_raise_badimage_with_kind(mutate, kind):
    msg = make_image(RGB, "rgb8")
    mutate(msg)
    with pytest.raises(BadImage) as err:
        image_to_rgb(msg)
    assert err.value.kind == kind
    with pytest.raises(BadImage):
        check_image(msg)


def test_malformed_compressed_images():
    good = encode("jpeg", RGB)
    truncated = CompressedImage(format="jpeg")
    truncated.data = bytes(good.data)[: len(good.data) // 2]
    garbage = CompressedImage(format="png")
    garbage.data = b"\x89PNG not really" * 10
    wrong_fmt = CompressedImage(format="tiff")
    wrong_fmt.data = bytes(good.data)
    for msg, kind in ((truncated, "decode"), (garbage, "decode"), (wrong_fmt, "format")):
        with pytest.raises(BadImage) as err:
            compressed_to_rgb(msg)
        assert err.value.kind == kind


def test_huge_compressed_dimensions_are_refused_before_decoding():
    # A tiny PNG whose header claims W x H pixels (a decompression bomb).
    png = bytes(encode("png", RGB).data)
    for w, h in ((9000, 9000), (20000, 20000)):  # above our limit; above PIL's bomb limit
        ihdr = b"IHDR" + struct.pack(">II", w, h) + png[24:29]
        forged = png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
        msg = CompressedImage(format="png")
        msg.data = forged
        with pytest.raises(BadImage) as err:
            compressed_to_rgb(msg)
        assert err.value.kind == "dimensions", err.value
