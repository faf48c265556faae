"""Geometric verification of a query's top candidates against the map's features,
and the metric pose when the map has the features' 3D points.

:class:`GeometricVerifier` is the engine's verification stage: it extracts
the query's local features once (the map's kind, features/registry.py),
screens the best ``verify_top_k`` candidates with a fundamental-matrix RANSAC
(:func:`features.two_view.verify`), and then

* map with 3D points: PnP with RANSAC on each screened candidate's 2D-3D
  matches (:func:`features.pnp.solve`); among the candidates whose pose is
  :func:`plausible` (tight enough, near the keyframe it matched) the one with
  most PnP inliers is the match, and its pose is the robot's metric pose in
  the map frame with a covariance from the inlier geometry;
* map without points: the essential matrix of the candidate with most
  screened inliers gives the rotation and the unit translation direction
  (:func:`relative_covariance`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..features import matching, pnp, registry, two_view
from ..features.rotations import pose_to_matrix, rotation_angle_deg, rotation_to_quat  # noqa: F401  (re-exported)
from ..features.types import Features
from .ports import PlaceMap

log = logging.getLogger("distilvpr.localize")


@dataclass
class CandidateChecks:
    """Verification of one query's candidates (retrieval order).

    inliers int64 [K] (-1: not verified; the fundamental-matrix inliers, except
    at ``best``: the essential-matrix inliers in front of both cameras, or
    with a metric map the PnP inliers), ratios float64 [K]; ``best`` is the
    chosen rank (most inliers, ties: better rank), -1 when no candidate had
    5; ``result`` its :class:`two_view.Verification`; ``query_features`` how
    many the query had; ``seconds`` wall time of extraction + verification;
    ``why`` says why nothing could be verified (image size not the map
    camera's).  Metric maps (``metric_map``): ``pnp`` the best candidate's
    :class:`pnp.PnPResult`, ``pose`` float64 [7] base_link in the map frame
    and ``pose_cov`` float64 [6, 6] (x y z roll pitch yaw), None without a pose;
    ``implausible`` counts the candidates whose PnP pose :func:`plausible` refused.
    """
    inliers: np.ndarray
    ratios: np.ndarray
    best: int
    result: two_view.Verification | None
    query_features: int
    seconds: float
    why: str = ""  # why nothing could be verified, if so
    pnp: pnp.PnPResult | None = None
    pose: np.ndarray | None = None
    pose_cov: np.ndarray | None = None
    metric_map: bool = False
    implausible: int = 0

    @property
    def metric(self) -> bool:
        """Whether the chosen candidate gave a metric (PnP) pose."""
        return self.pose is not None


class GeometricVerifier:
    """Verifies candidates against ``prior_map.features`` (a FeatureStore)."""

    def __init__(self, prior_map: PlaceMap) -> None:
        self.map = prior_map
        store = prior_map.features
        # The map's kind, with the model file the map carries (kind "learned"): a missing or
        # broken model is a UserError at start-up, not at the first query.
        self._extract = (registry.bound(store.kind, getattr(store, "model_path", None))
                         if store is not None else None)

    @property
    def available(self) -> bool:
        return self.map.features is not None

    @property
    def metric(self) -> bool:
        """Whether the map's features have 3D points (PnP poses)."""
        return self.available and self.map.features.has_points

    def extract(self, rgb: np.ndarray, max_features: int) -> Features:
        """The query's features, of the map's kind."""
        return self._extract(rgb, max_features)

    def check(self, rgb: np.ndarray, ids: np.ndarray, settings) -> tuple[CandidateChecks, Features | None]:
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
        qf = self.extract(rgb, settings.verify_max_features)
        best, screened, keys = -1, {}, {}   # keys: the screened keyframes' features, reused by PnP
        # Screen the candidates with the cheap fundamental-matrix step (stopping at
        # a clear match), then recover the pose (and the cheirality-checked inlier
        # count) of the best only, from its screened matches.
        for rank in range(min(k, settings.verify_top_k)):
            kid = int(ids[rank])
            if kid >= len(store):
                continue
            keys[rank] = store.get(kid)
            res = screened[rank] = two_view.verify(qf, keys[rank], cam, ransac_px=px, seed=kid, pose=False)
            inliers[rank], ratios[rank] = res.inliers, res.ratio
            if res.inliers >= 5 and (best < 0 or res.inliers > inliers[best]):
                best = rank
            if res.inliers >= 2 * settings.verify_min_inliers:
                break  # a clear geometric match: screening lower ranks only costs time
        if store.has_points:
            return self._metric(qf, ids, screened, keys, inliers, ratios, settings, t0), qf
        best_res = None
        if best >= 0:
            cv2_seed(int(ids[best]))
            best_res = two_view.recover_pose(screened[best], cam, px)
            inliers[best], ratios[best] = best_res.inliers, best_res.ratio
        return CandidateChecks(inliers, ratios, best, best_res, len(qf), time.perf_counter() - t0), qf

    def _metric(self, qf: Features, ids: np.ndarray, screened: dict, keys: dict, inliers: np.ndarray,
                ratios: np.ndarray, settings, t0: float) -> CandidateChecks:
        """PnP on every screened candidate (``keys``: their features, by rank); among the poses
        :func:`plausible` keeps, the one with most PnP inliers is the match."""
        store = self.map.features
        T_cam_base = np.linalg.inv(pose_to_matrix(store.T_base_camera))
        best, best_pnp, pose, cov, refused = -1, None, None, None, 0
        for rank, res in screened.items():
            kid = int(ids[rank])
            pairs = res.extra.get("pairs")
            if pairs is None or len(pairs) < 6:
                continue
            pts3d = store.points(kid)[pairs[:, 1]]
            # The query's points of the matches (refined on its fine map for coarse-to-fine
            # patch features; else its keypoints).
            pts2d = matching.query_points(qf, keys[rank], pairs)
            r = pnp.solve(pts2d, pts3d, store.camera, settings.pnp_ransac_px, seed=kid)
            inliers[rank] = r.inliers
            ratios[rank] = r.inliers / max(len(pairs), 1)
            if not r.ok or (best_pnp is not None and r.inliers <= best_pnp.inliers):
                continue
            p, c = pnp.body_pose(r, T_cam_base)
            if not plausible(p, c, np.asarray(self.map.poses[kid], np.float64), settings):
                refused += 1
                continue
            best, best_pnp, pose, cov = rank, r, p, c
        return CandidateChecks(inliers, ratios, best, screened.get(best), len(qf),
                               time.perf_counter() - t0, pnp=best_pnp, pose=pose, pose_cov=cov,
                               metric_map=True, implausible=refused)


def pose_std_m(cov: np.ndarray) -> float:
    """Position std-dev of a 6x6 pose covariance (x y z first), metres: sqrt of the xyz trace."""
    return float(np.sqrt(max(float(np.trace(np.asarray(cov)[:3, :3])), 0.0)))


def plausible(pose: np.ndarray, cov: np.ndarray, keyframe_pose: np.ndarray, settings) -> bool:
    """Whether a PnP pose (float64 [7] base_link in map, covariance float64 [6, 6]) can be a
    match to the keyframe (float64 [7]) whose 3D points gave it: its position std-dev is
    at most ``pose_max_std_m``, and it lies within ``pose_max_keyframe_m`` /
    ``pose_max_keyframe_deg`` of the keyframe (a query that sees a keyframe's points
    stands near it; a degenerate PnP on a few inliers lands metres or floors away)."""
    if pose_std_m(cov) > settings.pose_max_std_m:
        return False
    T, K = pose_to_matrix(pose), pose_to_matrix(keyframe_pose)
    return bool(np.linalg.norm(T[:3, 3] - K[:3, 3]) <= settings.pose_max_keyframe_m
                and rotation_angle_deg(K[:3, :3].T @ T[:3, :3]) <= settings.pose_max_keyframe_deg)


def cv2_seed(seed: int) -> None:
    """Seed OpenCV's RNG, which the essential-matrix RANSAC draws from, so the same inputs give the same pose."""
    import cv2
    cv2.setRNGSeed(seed)  # the essential-matrix RANSAC: same inputs, same answer


def passes(checks: CandidateChecks | None, settings) -> bool:
    """Whether the best verified candidate meets the inlier count and ratio settings
    (metric maps: a plausible PnP pose with at least ``pnp_min_inliers`` inliers)."""
    if checks is not None and checks.metric_map:
        return checks.metric and checks.pnp is not None and checks.pnp.inliers >= settings.pnp_min_inliers
    if checks is None or checks.best < 0 or checks.result is None or checks.result.rotation is None:
        return False
    return (int(checks.inliers[checks.best]) >= settings.verify_min_inliers
            and float(checks.ratios[checks.best]) >= settings.verify_min_inlier_ratio)


def relative_covariance(res: two_view.Verification, scale_sigma_m: float) -> np.ndarray:
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


def metric_relative(checks: CandidateChecks, keyframe_pose: np.ndarray,
                    T_base_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Metric pose of the query camera in the matched keyframe's camera (optical) frame:
    (rotation float64 [3, 3], position float64 [3] in m, covariance float64 [6, 6] in
    that frame's axes).  ``keyframe_pose`` float64 [7] base_link in map (taken as
    exact: it is the map's ground truth), ``T_base_camera`` float64 [7] the mounting."""
    assert checks.pnp is not None and checks.pnp.ok
    T_map_kcam = pose_to_matrix(keyframe_pose) @ pose_to_matrix(T_base_camera)
    T_map_qcam = np.linalg.inv(checks.pnp.T_cam_map)
    T_rel = np.linalg.inv(T_map_kcam) @ T_map_qcam
    _, cov_map = pnp.body_pose(checks.pnp, np.eye(4))    # camera pose covariance, map axes
    Rk = T_map_kcam[:3, :3].T                             # map axes -> keyframe camera axes
    G = np.zeros((6, 6))
    G[:3, :3] = G[3:, 3:] = Rk
    return T_rel[:3, :3], T_rel[:3, 3], G @ cov_map @ G.T
