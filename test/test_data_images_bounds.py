"""Decoding is bounded by what the model needs, gives memory back, and never
fails with anything but BadImage (property-based, hypothesis)."""
from __future__ import annotations

import io
import struct
import threading
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from distilvpr_core.data import images
from distilvpr_core.data.images import BadImage, pixel_limit


def _rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def png_declaring(w: int, h: int) -> bytes:
    """A small, valid RGB PNG of w x h black pixels (compresses ~1000:1)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress((b"\0" + bytes(3 * w)) * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def compressed(data: bytes, fmt: str = "png") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data)


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return png_declaring(7999, 8000)  # the campaign's frame: under MAX_PIXELS, 64 MP


def test_the_limit_follows_the_model_input_size():
    assert pixel_limit(None) == images.MAX_PIXELS
    assert pixel_limit((320, 240)) == 256 * 320 * 240          # 16x per side
    assert pixel_limit((64, 48)) == images.MIN_PIXEL_LIMIT    # never below 4K UHD
    assert pixel_limit((1024, 1024)) == images.MAX_PIXELS     # never above the absolute cap


def test_a_frame_far_above_the_model_input_is_refused_before_decoding(huge_png, monkeypatch):
    assert len(huge_png) < 300_000
    limit = pixel_limit((320, 240))
    # Count calls of PIL's pixel decoder (it still runs for real): the refusal must come from
    # the header alone, whatever the machine's speed.
    from PIL import ImageFile
    loads = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self, *a, **k):
        loads.append(self.size)
        return real_load(self, *a, **k)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    with pytest.raises(BadImage, match=r"7999x8000 pixels \(need 1..19660800 pixels.*model input") as err:
        images.decode(compressed(huge_png), limit)
    assert err.value.kind == "dimensions" and loads == []
    # The spy does see a decode that happens: a small frame under the limit is decoded.
    small = png_declaring(64, 48)
    images.decode(compressed(small), limit)
    assert loads and set(loads) == {(64, 48)}
    raw = SimpleNamespace(encoding="rgb8", width=5000, height=4000, step=15000, data=b"", is_bigendian=0)
    with pytest.raises(BadImage, match="5000x4000 pixels"):
        images.check(raw, limit)


def _in_worker_thread(fn) -> None:
    # The node decodes on an executor thread; glibc gives such a thread its
    # own arena, which is where the freed pages stayed (main-thread frees did not show it).
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the test's thread below
            failure.append(exc)
    th = threading.Thread(target=target)
    th.start()
    th.join()
    if failure:
        raise failure[0]


@pytest.mark.slow
def test_100_oversized_frames_and_large_allowed_ones_leave_rss_within_50_mb(huge_png):
    """Without the size bound each 64 MP frame is decoded (~4 s here); without
    handing memory back, three frames at the limit leave ~+107 MB (measured)."""
    limit = pixel_limit((320, 240))
    big = png_declaring(5120, 3840)       # exactly at the limit: decoded
    growth = []

    def run():
        images.decode(compressed(png_declaring(64, 48)), limit)  # warm-up (imports, pools)
        before = _rss_mb()
        for _ in range(100):
            with pytest.raises(BadImage, match="dimensions"):
                images.decode(compressed(huge_png), limit)
        for _ in range(3):
            assert images.decode(compressed(big), limit).shape == (3840, 5120, 3)
        growth.append(_rss_mb() - before)
    _in_worker_thread(run)
    assert growth[0] <= 50, f"RSS grew {growth[0]:.0f} MB"


# -- property-based: any bytes, any header, any size: BadImage or a correct image ---------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), fmt=st.sampled_from(["png", "jpeg", "jpg", "bmp", ""]))
def test_random_bytes_decode_or_raise_bad_image(data, fmt):
    try:
        out = images.decode(compressed(data, fmt), pixel_limit((64, 48)))
    except BadImage as exc:
        assert exc.kind in ("format", "decode", "dimensions", "size")
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 3000), h=st.integers(1, 3000), flips=st.lists(st.integers(0, 10**6), max_size=3))
def test_png_headers_of_any_size_and_damage(w, h, flips):
    """Sizes around the limit and flipped bytes: a valid frame decodes to its
    declared size, anything else is BadImage; nothing else escapes."""
    data = bytearray(png_declaring(w, h))
    for f in flips:
        data[f % len(data)] ^= 0x5A
    limit = 1_000_000
    try:
        out = images.decode(compressed(bytes(data)), limit)
    except BadImage as exc:
        assert exc.kind in ("decode", "dimensions"), exc
        if not flips:
            assert exc.kind == "dimensions" and w * h > limit
        return
    assert out.shape[2] == 3 and out.shape[0] * out.shape[1] <= limit
    if not flips:
        assert out.shape[:2] == (h, w)


@settings(max_examples=100, deadline=None)
@given(enc=st.sampled_from(list(images.SUPPORTED_ENCODINGS) + ["yuv422", ""]),
       w=st.integers(-2, 40), h=st.integers(-2, 40), pad=st.integers(-3, 5), extra=st.integers(-4, 4))
def test_raw_images_of_any_geometry(enc, w, h, pad, extra):
    channels, depth = images._RAW.get(enc, (1, 2 if enc.endswith("16") else 1))
    step = max(w, 0) * channels * depth + pad
    n = max(step * max(h, 0) + extra, 0)
    msg = SimpleNamespace(encoding=enc, width=w, height=h, step=step, data=bytes(n), is_bigendian=0)
    try:
        out = images.decode(msg, pixel_limit((16, 16)))
    except BadImage:
        return
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_a_jpeg_at_the_limit_still_decodes():
    buf = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(buf, format="JPEG")
    assert images.decode(compressed(buf.getvalue(), "jpeg"), pixel_limit((64, 48))).shape == (48, 64, 3)
