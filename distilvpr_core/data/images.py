"""The one image decoder: sensor_msgs Image / CompressedImage -> uint8 RGB numpy.

Used by the node, the offline evaluation and the map builder alike; it reads
rclpy messages and rosbags messages (same field names), without cv_bridge.
``rosbags-image`` needs OpenCV, which this package does not depend on, so the
conversions are written here with numpy (raw encodings, Bayer demosaicing) and
PIL (jpeg/png).  Every failure raises :class:`BadImage` with a short ``kind``
so the node can count and log each kind of malformed input once.

Validation (:func:`check`) is O(1) and runs on every message; the decoding
(:func:`decode`) runs only for frames that pass keyframe gating.
"""
from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

#: Largest accepted image, in pixels: protects against huge-dimension headers
#: and decompression bombs (64 MP is far above any camera this runs on).
MAX_PIXELS = 64_000_000
#: With a known model input, frames may have this many times its pixels (16x
#: per side) and at least 4K UHD; a 62 KB PNG declaring 8000 x 8000 would
#: otherwise cost ~0.5 GB and seconds of decoding to be shrunk to 320 x 240.
MODEL_PIXEL_FACTOR = 256
MIN_PIXEL_LIMIT = 3840 * 2160
#: After decoding a frame of more pixels than this, freed memory is handed
#: back to the OS (glibc keeps a worker thread's freed arena pages otherwise:
#: +550 MB RSS for good after one 8000 x 8000 PNG, measured).
TRIM_PIXELS = 2_000_000

# encoding -> (channels, bytes per channel)
_RAW = {"rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1),
        "mono8": (1, 1), "8UC1": (1, 1), "mono16": (1, 2), "16UC1": (1, 2)}
# Bayer pattern -> (row, col) of R and of B in the 2x2 tile; G fills the rest.
_BAYER = {"rggb": ((0, 0), (1, 1)), "bggr": ((1, 1), (0, 0)),
          "gbrg": ((1, 0), (0, 1)), "grbg": ((0, 1), (1, 0))}
SUPPORTED_ENCODINGS = tuple(_RAW) + tuple(f"bayer_{p}{b}" for p in _BAYER for b in (8, 16))


class BadImage(ValueError):
    """A malformed image message.  ``kind`` is one of: ``encoding``,
    ``dimensions``, ``size``, ``format``, ``decode``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _layout(encoding: str) -> tuple[int, int]:
    """(channels, bytes per channel) of a raw encoding, or BadImage."""
    if encoding in _RAW:
        return _RAW[encoding]
    if encoding.startswith("bayer_") and encoding[6:10] in _BAYER and encoding[10:] in ("8", "16"):
        return 1, int(encoding[10:]) // 8
    raise BadImage("encoding", f"unsupported encoding {encoding[:40]!r}; "
                               f"supported: {', '.join(SUPPORTED_ENCODINGS)}")


def pixel_limit(input_size: tuple[int, int] | None = None) -> int:
    """Most pixels a frame may have for a model of ``input_size`` (W, H)
    pixels: :data:`MODEL_PIXEL_FACTOR` x its pixels, at least
    :data:`MIN_PIXEL_LIMIT`, at most :data:`MAX_PIXELS` (also without a model)."""
    if input_size is None:
        return MAX_PIXELS
    w, h = (int(v) for v in input_size)
    return min(MAX_PIXELS, max(MIN_PIXEL_LIMIT, MODEL_PIXEL_FACTOR * w * h))


def _check_dims(w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0 or w * h > max_pixels:
        why = "" if max_pixels == MAX_PIXELS else " (the limit follows the model input size)"
        raise BadImage("dimensions", f"{w}x{h} pixels (need 1..{max_pixels} pixels{why})")


def release_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def check_image(msg: Any, max_pixels: int = MAX_PIXELS) -> None:
    """Cheap structural check of a sensor_msgs/Image; raises BadImage."""
    channels, depth = _layout(msg.encoding)
    h, w = int(msg.height), int(msg.width)
    _check_dims(w, h, max_pixels)
    if msg.step < w * channels * depth:
        raise BadImage("size", f"step {msg.step} < width {w} x {channels * depth} bytes")
    if len(msg.data) != msg.step * h:
        raise BadImage("size", f"data has {len(msg.data)} bytes, step x height = {msg.step * h}")


def image_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> uint8 [H, W, 3] RGB (a new array).

    mono8 is replicated to three channels; 16-bit data keeps its high byte;
    alpha is dropped; Bayer is demosaiced bilinearly.
    """
    check_image(msg, max_pixels)
    channels, depth = _layout(msg.encoding)
    h, w = int(msg.height), int(msg.width)
    buf = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, msg.step)[:, : w * channels * depth]
    if depth == 2:
        order = ">u2" if msg.is_bigendian else "<u2"
        buf = (np.ascontiguousarray(buf).view(order) >> 8).astype(np.uint8)
    img = buf.reshape(h, w, channels)
    enc = msg.encoding
    if enc.startswith("bayer_"):
        return demosaic_bilinear(img[:, :, 0], enc[6:10])
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if enc.startswith("bgr"):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def demosaic_bilinear(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Bayer uint8 [H, W] -> uint8 [H, W, 3] RGB by normalised bilinear interpolation.

    Each channel is the 3x3 weighted mean (weights 1-2-1 x 1-2-1) of the
    neighbouring samples of that colour, so measured samples keep their value
    up to their neighbours' smoothing and borders need no special case.
    """
    (ry, rx), (by, bx) = _BAYER[pattern]
    h, w = raw.shape
    masks = np.zeros((3, h, w), np.float32)
    masks[0, ry::2, rx::2] = 1
    masks[2, by::2, bx::2] = 1
    masks[1] = 1 - masks[0] - masks[2]
    vals = masks * raw.astype(np.float32)
    k = np.array([1.0, 2.0, 1.0], np.float32)

    def blur(a: np.ndarray) -> np.ndarray:  # separable 3x3, zero padding
        p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
        rows = k[0] * p[:, :-2] + k[1] * p[:, 1:-1] + k[2] * p[:, 2:]
        return k[0] * rows[:, :, :-2] + k[1] * rows[:, :, 1:-1] + k[2] * rows[:, :, 2:]

    out = blur(vals) / np.maximum(blur(masks), 1e-6)
    # Measured samples keep their exact value.
    out = np.where(masks > 0, vals, out)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def compressed_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> uint8 [H, W, 3] RGB.

    The size in the header is checked against ``max_pixels`` before any
    pixel is decoded."""
    fmt = msg.format.lower()
    if "jpeg" in fmt or "jpg" in fmt:
        formats = ["JPEG"]
    elif "png" in fmt:
        formats = ["PNG"]
    else:
        raise BadImage("format", f"unsupported compressed format {msg.format[:40]!r}; use jpeg or png")
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(bytes(msg.data)), formats=formats) as img:
            _check_dims(*img.size, max_pixels)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage("dimensions", str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise BadImage("decode", f"{formats[0].lower()} does not decode: {exc}") from None


def check_compressed(msg: Any) -> None:
    """Cheap structural check of a CompressedImage; raises BadImage."""
    fmt = msg.format.lower()
    if not any(f in fmt for f in ("jpeg", "jpg", "png")):
        raise BadImage("format", f"unsupported compressed format {msg.format[:40]!r}; use jpeg or png")
    if len(msg.data) == 0:
        raise BadImage("size", "empty data")


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage (it has ``format`` and no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def check(msg: Any, max_pixels: int = MAX_PIXELS) -> None:
    """Cheap structural check of an Image or CompressedImage; raises BadImage.
    (A compressed image's size is only known, and checked, in :func:`decode`.)"""
    if is_compressed(msg):
        check_compressed(msg)
    else:
        check_image(msg, max_pixels)


def decode(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image or CompressedImage -> uint8 [H, W, 3] RGB; raises BadImage.

    ``max_pixels``: see :func:`pixel_limit`.  After a frame of more than
    :data:`TRIM_PIXELS` pixels the decoder's freed memory goes back to the OS.
    """
    try:
        rgb = (compressed_to_rgb if is_compressed(msg) else image_to_rgb)(msg, max_pixels)
    except MemoryError:
        release_memory()
        raise BadImage("dimensions", "not enough memory to decode this frame") from None
    if rgb.shape[0] * rgb.shape[1] > TRIM_PIXELS:
        release_memory()
    return rgb


def read_rgb_file(path: Any, hint: str = "") -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of an image file (PNG/JPEG) at ``path``.

    An unreadable file is a UserError naming it; ``hint`` says what to do or
    which frame it belongs to.
    """
    from PIL import Image
    from ..foundation.errors import UserError
    from ..foundation.safe_files import open_regular
    what = f"{path}: cannot read image{' ' + hint if hint else ''}"
    fd = open_regular(path, what, follow_symlinks=True)  # a FIFO behind a link would hang PIL
    try:
        with os.fdopen(fd, "rb") as fh, Image.open(fh) as im:
            if im.width * im.height > MAX_PIXELS:  # header only: refused before decoding
                raise UserError(f"{what}: {im.width}x{im.height} pixels, more than {MAX_PIXELS}; refused")
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{path}: cannot read image{' ' + hint if hint else ''} ({exc})") from None
