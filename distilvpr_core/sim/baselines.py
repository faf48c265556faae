"""The two reference baselines of the difficulty report, and their Recall@1 (recall.py's).

(a) tiny image: grayscale 32x24 thumbnail, zero-mean unit-norm, nearest
    neighbour in L2 -- a camera method with no learning at all;
(b) LiDAR ring spectrum: a polar max-height grid (rings x sectors) whose
    per-ring azimuthal DFT magnitudes make it yaw-invariant, so a drive in the
    opposite direction still matches.  The nearest 8 m are left out: they
    change most with the lane (a reversed drive is ~6 m to the side).
Both are deliberately simple: they measure the world, not a method.
"""
from __future__ import annotations

import numpy as np

TINY_SIZE = (32, 24)
RINGS, SECTORS, HARMONICS, MIN_R, MAX_R = 12, 60, 3, 8.0, 96.0


def tiny_image(image: np.ndarray) -> np.ndarray:
    """float32 [768] descriptor of a uint8 [H, W, 3] RGB image."""
    from PIL import Image
    g = np.asarray(Image.fromarray(image).convert("L").resize(TINY_SIZE, Image.Resampling.BOX), dtype=np.float32)
    v = g.reshape(-1) - g.mean()
    return (v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32)


def lidar_ring_spectrum(points: np.ndarray, sensor_height: float = 1.9) -> np.ndarray:
    """float32 [RINGS * (HARMONICS + 1)] yaw-invariant descriptor of float32 [P, 4] lidar-frame points."""
    h = points[:, 2] + sensor_height
    r = np.hypot(points[:, 0], points[:, 1])
    keep = (h > 0.3) & (r < MAX_R) & (r >= MIN_R)
    ring = np.minimum(((r[keep] - MIN_R) / (MAX_R - MIN_R) * RINGS).astype(np.int64), RINGS - 1)
    az = np.arctan2(points[keep, 1], points[keep, 0])
    sector = np.minimum(((az + np.pi) / (2 * np.pi) * SECTORS).astype(np.int64), SECTORS - 1)
    grid = np.zeros((RINGS, SECTORS), dtype=np.float64)
    np.maximum.at(grid, (ring, sector), np.minimum(h[keep], 30.0))
    spec = np.abs(np.fft.rfft(grid, axis=1))[:, :HARMONICS + 1] / SECTORS
    v = spec.reshape(-1)
    return (v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32)


def recall_at_1(q_desc: np.ndarray, q_xy: np.ndarray, d_desc: np.ndarray, d_xy: np.ndarray,
                radius_m: float = 25.0) -> float:
    """Fraction of queries whose nearest database descriptor lies within ``radius_m`` (ground truth xy).

    Queries with no database frame within ``radius_m`` are left out, as in the
    standard VPR protocol (NaN when none is left).  Descriptors float32 [Q, D] /
    [M, D] (cosine nearest neighbour, as :func:`distilvpr_core.evaluation.recall.recall_one_pair`);
    xy float64 [., 2].
    """
    from ..evaluation.recall import recall_one_pair
    hits, _, n = recall_one_pair(q_desc, q_xy, d_desc, d_xy, top_k=1, radius_m=radius_m)
    return float(hits[0]) / n if n else float("nan")
