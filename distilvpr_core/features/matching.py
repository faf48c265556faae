"""Putative matches between two feature sets of one kind.

Mutual nearest neighbours whose best distance is below ``ratio`` x the second
best (Lowe's ratio test), in the distance that suits the descriptor: Hamming
for binary ORB, Euclidean for RootSIFT (= Hellinger on the SIFT histograms) and
for the learned unit-norm descriptors.

``"patch"`` features (the student's layer-3 cells) are matched by mutual nearest
neighbours alone, as in Patch-NetVLAD: neighbouring cells see overlapping
windows, so the second-nearest keyframe patch is often the true one's
neighbour and the ratio test would drop the good matches with the bad.
"""
from __future__ import annotations

import numpy as np

from . import sift
from .learned import runtime as learned
from .patch import runtime as patch
from .types import Features


def match(query: Features, key: Features, ratio: float = 0.8) -> np.ndarray:
    """int64 [M, 2] (query row, keyframe row); ValueError for features of two kinds
    (a programming error: the engine checks kinds at start-up)."""
    import cv2
    if query.kind != key.kind:
        raise ValueError(f"cannot match {query.kind!r} features against {key.kind!r}")
    if len(query) < 2 or len(key) < 2:
        return np.zeros((0, 2), np.int64)
    if query.kind == sift.KIND:
        qd, kd, norm = sift.as_float(query.descriptors), sift.as_float(key.descriptors), cv2.NORM_L2
    elif query.kind == learned.KIND:
        qd, kd, norm = learned.as_float(query.descriptors), learned.as_float(key.descriptors), cv2.NORM_L2
    elif query.kind == patch.KIND:
        qd, kd, norm = patch.as_float(query.descriptors), patch.as_float(key.descriptors), cv2.NORM_L2
        ratio = float("inf")  # mutual nearest neighbours only (module doc)
    else:
        qd, kd, norm = query.descriptors, key.descriptors, cv2.NORM_HAMMING
    bf = cv2.BFMatcher(norm)
    fwd = bf.knnMatch(qd, kd, k=2)
    back = bf.match(kd, qd)
    best_back = {m.queryIdx: m.trainIdx for m in back}
    pairs = [(m[0].queryIdx, m[0].trainIdx) for m in fwd
             if len(m) == 2 and (ratio == float("inf") or m[0].distance < ratio * m[1].distance)
             and best_back.get(m[0].trainIdx) == m[0].queryIdx]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def query_points(query: Features, key: Features, pairs: np.ndarray) -> np.ndarray:
    """float32 [M, 2] the query's image points of the matches ``pairs`` int [M, 2] (query row,
    keyframe row), for PnP against the keyframe's 3D points: the query keypoints, or, when
    the query carries a fine map (the patch kind's coarse-to-fine, features/patch/
    coarse_to_fine.py), each moved to where the keyframe feature's descriptor fits best."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    pts = query.keypoints[pairs[:, 0]]
    if query.dense is None or not len(pairs):
        return pts
    from .patch.coarse_to_fine import refine_points
    return refine_points(query.dense, pts, patch.as_float(key.descriptors[pairs[:, 1]]))
