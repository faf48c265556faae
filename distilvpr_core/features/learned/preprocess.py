"""Image preparation shared by training and the runtime, and the keypoint detector.

Both the network and the detector see the same contrast-normalised grey image:
grey (OpenCV's RGB -> grey weights), then CLAHE (the same clip and tiles as the
RootSIFT extractor, features/sift.py), scaled to float32 [0, 1].  The network
normalises its input once more per image (model.py), so a night frame's low
mean and spread do not reach the convolutions.

Keypoints: Shi-Tomasi corners (``cv2.goodFeaturesToTrack``) on that image,
refined to sub-pixel (``cv2.cornerSubPix``).  Corners of windows, doors, kerbs
and roof lines are where the geometry is, in every light; the learned score
(model.py) then ranks the candidates by how likely their descriptor matches.
"""
from __future__ import annotations

import numpy as np

from ..sift import CLAHE_CLIP, CLAHE_TILES  # one contrast normalisation for both kinds
#: Smallest distance between two corners, pixels of the image as captured.
MIN_CORNER_DISTANCE = 3
#: Corner quality relative to the strongest corner of the image (OpenCV's qualityLevel).
CORNER_QUALITY = 0.001


def normalised_grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W] CLAHE-normalised grey of uint8 [H, W, 3] RGB (or [H, W] grey)."""
    import cv2
    img = np.asarray(rgb)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES).apply(grey)


def network_input(grey: np.ndarray) -> np.ndarray:
    """float32 [1, 1, H, W] in [0, 1] of a uint8 [H, W] normalised grey image."""
    return (np.asarray(grey, np.float32) / 255.0)[None, None]


def corners(grey: np.ndarray, count: int) -> np.ndarray:
    """float32 [<= count, 2] sub-pixel corner positions (x, y pixels, pixel centre at integer
    coordinates) of a uint8 [H, W] normalised grey image; strongest first."""
    import cv2
    if count <= 0:
        return np.zeros((0, 2), np.float32)
    # A light blur first: at night the sensor noise would otherwise make corners of its own.
    smooth = cv2.GaussianBlur(grey, (3, 3), 0.8)
    pts = cv2.goodFeaturesToTrack(smooth, maxCorners=int(count), qualityLevel=CORNER_QUALITY,
                                  minDistance=MIN_CORNER_DISTANCE, blockSize=5)
    if pts is None:
        return np.zeros((0, 2), np.float32)
    pts = pts.reshape(-1, 1, 2).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.03)
    cv2.cornerSubPix(smooth, pts, (2, 2), (-1, -1), crit)
    return pts.reshape(-1, 2)


def sample_map(dense: np.ndarray, pts: np.ndarray, stride: int) -> np.ndarray:
    """float32 [N, C]: bilinear samples of a dense map float32 [C, h, w] (cell (i, j) centred
    on image pixel (stride * j + (stride - 1) / 2, stride * i + (stride - 1) / 2)) at image
    pixels float [N, 2] (x, y); positions outside the cell centres are clamped to the border."""
    c, h, w = dense.shape
    gx = (np.asarray(pts, np.float64)[:, 0] - (stride - 1) / 2.0) / stride
    gy = (np.asarray(pts, np.float64)[:, 1] - (stride - 1) / 2.0) / stride
    gx, gy = np.clip(gx, 0, w - 1), np.clip(gy, 0, h - 1)
    x0, y0 = np.minimum(np.floor(gx).astype(np.int64), w - 2 if w > 1 else 0), \
        np.minimum(np.floor(gy).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (gx - x0)[None], (gy - y0)[None]
    out = (dense[:, y0, x0] * (1 - fx) * (1 - fy) + dense[:, y0, x1] * fx * (1 - fy)
           + dense[:, y1, x0] * (1 - fx) * fy + dense[:, y1, x1] * fx * fy)
    return np.ascontiguousarray(out.T, np.float32)
