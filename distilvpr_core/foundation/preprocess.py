"""The one preprocessing implementation (numpy + PIL, never torch).

Shared by every inference backend and by the training data pipeline, so a
frame is fed to the network identically everywhere:

    uint8 RGB (mono/RGBA converted) -> resize (contract policy, PIL, antialiased
    when shrinking) -> float32 / 255 -> (x - mean) / std -> CHW.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
from PIL import Image

from .errors import UserError
from .contract import PreprocessContract

ImageInput = Union[np.ndarray, Sequence[np.ndarray]]

# name -> (PIL filter, reducing_gap); see contract.INTERPOLATIONS.
_FILTERS = {"area": (Image.Resampling.BILINEAR, 1.0),
            "bilinear": (Image.Resampling.BILINEAR, None),
            "bicubic": (Image.Resampling.BICUBIC, None),
            "nearest": (Image.Resampling.NEAREST, None)}


def _as_list(images: ImageInput) -> list[np.ndarray]:
    """Split the accepted input forms into a list of single images."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            return [images]
        if images.ndim == 3 and images.shape[2] in (1, 3, 4):
            return [images]
        if images.ndim == 4:
            return list(images)
        raise UserError(f"images: expected uint8 [H, W], [H, W, 3|4] or a batch [N, H, W, 3|4], "
                        f"got an array of shape {images.shape}; pass a mono batch as a list")
    if isinstance(images, (list, tuple)):
        return list(images)
    raise UserError(f"images: expected a numpy uint8 array or a list of them, got {type(images).__name__}")


def _check(img: np.ndarray, i: int) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise UserError(f"images[{i}]: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise UserError(f"images[{i}]: expected dtype uint8 (0..255), got {img.dtype}; "
                        "convert e.g. 16-bit mono with (img >> 8).astype(np.uint8)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise UserError(f"images[{i}]: expected [H, W] mono, [H, W, 3] RGB or [H, W, 4] RGBA, "
                        f"got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise UserError(f"images[{i}]: empty image of shape {img.shape}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # alpha is dropped, not composited: camera RGBA is opaque
    return img


def _crop_box(w: int, h: int, contract: PreprocessContract) -> tuple[float, float, float, float] | None:
    """Source region (left, top, right, bottom) in pixels for the resize, None = whole frame."""
    tw, th = contract.input_size
    if contract.resize == "stretch" or tw * h == th * w:
        return None  # same aspect: the whole frame (PIL's fast path)
    scale = max(tw / w, th / h)  # cover the target, cut the excess symmetrically
    cw, ch = tw / scale, th / scale
    left, top = (w - cw) / 2.0, (h - ch) / 2.0
    return (left, top, left + cw, top + ch)


def resize_image(img: np.ndarray, contract: PreprocessContract) -> np.ndarray:
    """uint8 [h, w] or [h, w, 3] (any size) -> uint8 [H, W] or [H, W, 3] per the contract policy."""
    h, w = img.shape[:2]
    tw, th = contract.input_size
    if (w, h) == (tw, th):
        return img
    pil = Image.fromarray(np.ascontiguousarray(img))
    # Crop and resize in one resampling step (PIL's box argument) so the crop
    # costs nothing and sub-pixel centring is exact.
    resample, gap = _FILTERS[contract.interpolation]
    out = pil.resize((tw, th), resample, box=_crop_box(w, h, contract), reducing_gap=gap)
    return np.asarray(out)


def _scale_bias(contract: PreprocessContract) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel: y = x_uint8 * scale - bias == (x/255 - mean)/std."""
    std = np.asarray(contract.std, np.float32)
    mean = np.asarray(contract.mean, np.float32)
    return (1.0 / (255.0 * std)).astype(np.float32), (mean / std).astype(np.float32)


def preprocess(images: ImageInput, contract: PreprocessContract) -> np.ndarray:
    """Camera frames -> network input float32 [N, 3, H, W] (H, W from ``contract.input_size``).

    ``images``: uint8 [H, W, 3] RGB, [H, W] mono, [H, W, 4] RGBA (alpha
    dropped), [H, W, 1], a batch [N, H, W, C], or a list of such arrays of any
    sizes.  Mono is replicated to three channels.  Raises UserError for other
    dtypes/shapes or an empty list.
    """
    items = _as_list(images)
    if not items:
        raise UserError("images: empty batch; pass at least one image")
    tw, th = contract.input_size
    scale, bias = _scale_bias(contract)
    order = (2, 1, 0) if contract.channel_order == "BGR" else (0, 1, 2)
    out = np.empty((len(items), 3, th, tw), np.float32)
    for n, raw in enumerate(items):
        img = resize_image(_check(raw, n), contract)
        for c_out, c_in in enumerate(order):
            src = img if img.ndim == 2 else img[:, :, c_in]
            dst = out[n, c_out]
            np.multiply(src, scale[c_in], out=dst, casting="unsafe")
            dst -= bias[c_in]
    return out
