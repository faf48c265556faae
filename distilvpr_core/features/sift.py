"""RootSIFT features on a contrast-normalised (CLAHE) image (OpenCV SIFT).

Why these: across a change of illumination (dusk, night, fog) ORB's binary
intensity tests flip, while SIFT's gradient histograms, after CLAHE evens out
the local contrast, change less.  RootSIFT (Arandjelovic & Zisserman 2012):
L1-normalise the SIFT vector and take the element-wise square root, so the
Euclidean distance of two descriptors is the Hellinger distance of the
histograms.  The result has unit L2 norm and entries in [0, 1]; it is stored
quantised to uint8 (x 255, rounded): 128 bytes per feature, a quarter of
float32, at a quantisation step (1/255) far below the distances the ratio test
separates.  :func:`as_float` undoes it for matching.
"""
from __future__ import annotations

import numpy as np

from .orb import grey_upscaled, to_original_pixels
from .types import Features

KIND = "sift"
DESC_DIM = 128
QUANT = 255.0
#: SIFT's smallest useful scale needs fewer pixels than ORB's patch.
MIN_DETECT_SIDE = 240
CLAHE_CLIP = 3.0
CLAHE_TILES = (4, 4)


def empty() -> Features:
    """RootSIFT features of a frame with none: keypoints float32 [0, 2], descriptors uint8 [0, 128]."""
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESC_DIM), np.uint8), KIND)


def root_sift(desc: np.ndarray) -> np.ndarray:
    """float32 [F, 128] SIFT -> uint8 [F, 128] quantised RootSIFT (see module doc)."""
    d = np.maximum(np.asarray(desc, np.float32), 0.0)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
    return np.clip(np.rint(np.sqrt(d) * QUANT), 0, 255).astype(np.uint8)


def as_float(desc: np.ndarray) -> np.ndarray:
    """uint8 [F, 128] quantised RootSIFT -> float32 [F, 128] (about unit L2 norm)."""
    return np.asarray(desc, np.float32) / QUANT


def extract(rgb: np.ndarray, max_features: int = 500) -> Features:
    """RootSIFT features of uint8 [H, W, 3] RGB (or [H, W] grey); at most ``max_features``
    (the strongest responses).  A textureless frame gives zero features."""
    import cv2
    grey, scale = grey_upscaled(rgb, MIN_DETECT_SIDE)
    grey = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES).apply(grey)
    # contrastThreshold below OpenCV's 0.04: after CLAHE a night frame's gradients
    # are still weak, and the count limit (strongest first) bounds the noise.
    sift = cv2.SIFT_create(nfeatures=int(max_features), contrastThreshold=0.02)
    kps, desc = sift.detectAndCompute(grey, None)
    if desc is None or not kps:
        return empty()
    kps, desc = kps[:int(max_features)], desc[:int(max_features)]
    pts = to_original_pixels(np.array([k.pt for k in kps], np.float32), scale)
    return Features(pts, root_sift(desc), KIND)
