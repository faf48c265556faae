"""ORB features (OpenCV): 256-bit binary descriptors, matched in Hamming distance.

Per image at most ``max_features`` keypoints with uint8 [F, 32] descriptors.
Small images are upscaled by an integer factor before detection so ORB's
patches fit; keypoints are mapped back to the original pixels.
"""
from __future__ import annotations

import numpy as np

from .types import Features

KIND = "orb"
DESC_DIM = 32
#: Side (pixels) below which the shorter image side is upscaled before detection.
MIN_DETECT_SIDE = 240


def grey_upscaled(rgb: np.ndarray, min_side: int = MIN_DETECT_SIDE) -> tuple[np.ndarray, int]:
    """uint8 [H*s, W*s] grey image of uint8 [H, W, 3] RGB (or [H, W] grey) and the
    integer upscale factor ``s`` that brings the shorter side to ``min_side``."""
    import cv2
    img = np.asarray(rgb)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    scale = max(1, int(np.ceil(min_side / max(1, min(grey.shape[:2])))))
    if scale > 1:
        grey = cv2.resize(grey, (grey.shape[1] * scale, grey.shape[0] * scale),
                          interpolation=cv2.INTER_LINEAR)
    return grey, scale


def to_original_pixels(pts: np.ndarray, scale: int) -> np.ndarray:
    """float32 [F, 2] keypoints of the ``scale``-times upscaled grid -> original pixels."""
    # Pixel centres: (x + 0.5) / scale - 0.5 maps the upscaled grid back.
    return ((np.asarray(pts, np.float32) + 0.5) / scale - 0.5).astype(np.float32)


def empty() -> Features:
    """ORB features of a frame with none: keypoints float32 [0, 2], descriptors uint8 [0, 32]."""
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESC_DIM), np.uint8), KIND)


def extract(rgb: np.ndarray, max_features: int = 500) -> Features:
    """ORB features of uint8 [H, W, 3] RGB (or [H, W] grey); at most ``max_features``.

    A frame with no texture (black night frame, blank wall) gives zero
    features, never an error.
    """
    import cv2
    grey, scale = grey_upscaled(rgb)
    # Patch 15 px (ORB's default is 31) on the upscaled image: small images keep
    # keypoints near the border, which have no descriptor with a larger patch.
    orb = cv2.ORB_create(nfeatures=int(max_features), scaleFactor=1.2, nlevels=6,
                         edgeThreshold=15, patchSize=15, fastThreshold=10)
    kps, desc = orb.detectAndCompute(grey, None)
    if desc is None or not kps:
        return empty()
    pts = to_original_pixels(np.array([k.pt for k in kps], np.float32), scale)
    return Features(pts, np.ascontiguousarray(desc, np.uint8), KIND)
