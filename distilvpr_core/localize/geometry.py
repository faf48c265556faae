"""Geometric verification of a query's top candidates against the map's features.

:class:`GeometricVerifier` is the engine's verification stage: it extracts
the query's ORB features once, verifies the best ``verify_top_k`` candidates
(:func:`.verify.verify` with the map's intrinsics), picks the one with the
most inliers, and turns its rotation and translation direction into a
relative pose with covariance (see :func:`relative_covariance`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..features import orb as V

log = logging.getLogger("distilvpr.localize")


@dataclass
class CandidateChecks:
    """Verification of one query's candidates (retrieval order).

    inliers int64 [K] (-1: not verified; the fundamental-matrix inliers, except
    at ``best``: the essential-matrix inliers in front of both cameras),
    ratios float64 [K]; ``best`` is the rank with most fundamental-matrix
    inliers (ties: better rank), -1 when no candidate had 5;
    ``result`` its :class:`.verify.Verification`; ``query_features`` how many
    the query had; ``seconds`` wall time of extraction + verification;
    ``why`` says why nothing could be verified (image size not the map camera's).
    """
    inliers: np.ndarray
    ratios: np.ndarray
    best: int
    result: V.Verification | None
    query_features: int
    seconds: float
    why: str = ""  # why nothing could be verified, if so


class GeometricVerifier:
    """Verifies candidates against ``prior_map.features`` (a FeatureStore)."""

    def __init__(self, prior_map) -> None:
        self.map = prior_map

    @property
    def available(self) -> bool:
        return self.map.features is not None

    def check(self, rgb: np.ndarray, ids: np.ndarray, settings) -> tuple[CandidateChecks, V.Features | None]:
        """Verify the first ``settings.verify_top_k`` of ``ids`` (keyframe ids, retrieval order)."""
        t0 = time.perf_counter()
        store = self.map.features
        k = len(ids)
        inliers, ratios = np.full(k, -1, np.int64), np.zeros(k)
        cam, px = store.camera, settings.verify_ransac_px
        if tuple(rgb.shape[:2]) != (cam.height, cam.width):
            # Another image size than the map's camera: the intrinsics do not apply,
            # so nothing can be verified (and nothing is claimed to be).
            return CandidateChecks(inliers, ratios, -1, None, 0, time.perf_counter() - t0,
                                   f"image {rgb.shape[1]}x{rgb.shape[0]}, map camera "
                                   f"{cam.width}x{cam.height}"), None
        qf = V.extract(rgb, settings.verify_max_features)
        best, screened = -1, {}
        # Screen the candidates with the cheap fundamental-matrix step (stopping at
        # a clear match), then recover the pose (and the cheirality-checked inlier
        # count) of the best only, from its screened matches.
        for rank in range(min(k, settings.verify_top_k)):
            kid = int(ids[rank])
            if kid >= len(store):
                continue
            res = screened[rank] = V.verify(qf, store.get(kid), cam, ransac_px=px, seed=kid, pose=False)
            inliers[rank], ratios[rank] = res.inliers, res.ratio
            if res.inliers >= 5 and (best < 0 or res.inliers > inliers[best]):
                best = rank
            if res.inliers >= 2 * settings.verify_min_inliers:
                break  # a clear geometric match: screening lower ranks only costs time
        best_res = None
        if best >= 0:
            cv2_seed(int(ids[best]))
            best_res = V.recover_pose(screened[best], cam, px)
            inliers[best], ratios[best] = best_res.inliers, best_res.ratio
        return CandidateChecks(inliers, ratios, best, best_res, len(qf), time.perf_counter() - t0), qf


def cv2_seed(seed: int) -> None:
    import cv2
    cv2.setRNGSeed(seed)  # the essential-matrix RANSAC: same inputs, same answer


def passes(checks: CandidateChecks | None, settings) -> bool:
    """Whether the best verified candidate meets the inlier count and ratio settings."""
    if checks is None or checks.best < 0 or checks.result is None or checks.result.rotation is None:
        return False
    return (int(checks.inliers[checks.best]) >= settings.verify_min_inliers
            and float(checks.ratios[checks.best]) >= settings.verify_min_inlier_ratio)


def relative_covariance(res: V.Verification, scale_sigma_m: float) -> np.ndarray:
    """6x6 covariance (x y z roll pitch yaw, keyframe camera frame) of a relative pose
    whose position is the unit translation direction ``d`` (1 m nominal).

    Position: ``scale_sigma_m**2`` along ``d`` (the scale is unobservable from
    two views) plus ``sigma_dir**2`` across it, where ``sigma_dir`` is the
    inliers' RMS angular residual (radians, at the 1 m nominal distance)
    inflated by ``1 / sqrt(inliers - 5)``: fewer spare inliers, less trust.
    Orientation: ``sigma_dir`` on each axis (isotropic; the residuals do not
    separate the axes).
    """
    d = np.asarray(res.direction, np.float64).reshape(3)
    spare = max(res.inliers - 5, 1)
    sigma = max(float(res.angle_sigma_rad), 1e-3) * np.sqrt(10.0 / spare)
    cov = np.zeros((6, 6))
    cov[:3, :3] = scale_sigma_m ** 2 * np.outer(d, d) + sigma ** 2 * (np.eye(3) - np.outer(d, d))
    cov[3:, 3:] = sigma ** 2 * np.eye(3)
    return cov


def rotation_to_quat(R: np.ndarray) -> np.ndarray:
    """float64 [3, 3] rotation -> [4] quaternion x y z w (Shepperd's method: the
    largest of w, x, y, z is computed first, so angles near 180 deg stay exact)."""
    m = np.asarray(R, np.float64)
    tr = np.trace(m)
    cand = [tr, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(cand))
    if i == 0:
        w = np.sqrt(1.0 + tr) / 2
        q = [(m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w), w]
    else:
        j, k = (i % 3) + 1, ((i + 1) % 3) + 1  # the other two axes, 1-based like i
        a, b, c = i - 1, j - 1, k - 1
        v = np.sqrt(max(1.0 + m[a, a] - m[b, b] - m[c, c], 0.0)) / 2
        q = [0.0, 0.0, 0.0, (m[c, b] - m[b, c]) / (4 * v)]
        q[a], q[b], q[c] = v, (m[a, b] + m[b, a]) / (4 * v), (m[a, c] + m[c, a]) / (4 * v)
    q = np.asarray(q, np.float64)
    return (q if q[3] >= 0 else -q) / np.linalg.norm(q)
