"""Metric pose from 2D-3D matches: PnP with RANSAC, refined, with a covariance.

The query image's keypoints are matched (features/matching.py) to a map
keyframe's features whose 3D points in the MAP frame are known (the map
stores them, from LiDAR depth, see mapdb/points3d.py).  ``cv2.solvePnPRansac``
(EPnP hypotheses, ``ransac_px`` pixel threshold) finds the inliers, a
Levenberg-Marquardt refinement on them (``cv2.solvePnPRefineLM``) gives the
map -> camera transform ``X_cam = R X_map + t`` (optical frame: x right,
y down, z forward).

Covariance (Gauss-Newton): with J [2N, 6] the reprojection Jacobian of the
inliers with respect to (rvec, tvec) (``cv2.projectPoints``) and s^2 the
residual variance sum(r^2) / (2N - 6), cov(rvec, tvec) = s^2 (J^T J)^-1.  It
is carried to the pose of a body rigidly attached to the camera (base_link,
``T_cam_body``) in the map frame by a numerical Jacobian: position x y z (m)
and a small rotation about the map's fixed x y z axes (rad), the order of
geometry_msgs/PoseWithCovariance.  s is floored at ``MIN_SIGMA_PX``: a
near-perfect fit on few points would otherwise claim millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rotations import matrix_to_pose
from .types import Intrinsics

#: Floor of the reprojection residual std-dev used for the covariance, pixels.
MIN_SIGMA_PX = 0.3


@dataclass
class PnPResult:
    """``candidates``: 2D-3D pairs with a finite 3D point; ``inliers`` after the
    refinement (reprojection within ``ransac_px``); ``T_cam_map`` float64 [4, 4]
    (None when no pose); ``sigma_px`` the inliers' reprojection residual
    std-dev; ``cov_rt`` float64 [6, 6] covariance of (rvec, tvec); ``why``
    says why there is no pose."""
    candidates: int = 0
    inliers: int = 0
    T_cam_map: np.ndarray | None = None
    sigma_px: float = float("inf")
    cov_rt: np.ndarray | None = None
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.T_cam_map is not None


def solve(pts2d: np.ndarray, pts3d: np.ndarray, cam: Intrinsics, ransac_px: float = 2.0,
          min_inliers: int = 6, seed: int = 0) -> PnPResult:
    """Camera pose from float [N, 2] pixels and float [N, 3] map-frame points (NaN rows skipped)."""
    import cv2
    p2 = np.asarray(pts2d, np.float64).reshape(-1, 2)
    p3 = np.asarray(pts3d, np.float64).reshape(-1, 3)
    good = np.all(np.isfinite(p3), axis=1) & np.all(np.isfinite(p2), axis=1)
    p2, p3 = p2[good], p3[good]
    out = PnPResult(candidates=int(len(p2)))
    if len(p2) < max(6, min_inliers):
        out.why = f"{len(p2)} 2D-3D matches"
        return out
    K = cam.matrix()
    cv2.setRNGSeed(int(seed))  # same inputs, same answer
    ok, rvec, tvec, inl = cv2.solvePnPRansac(p3, p2, K, None, iterationsCount=300,
                                             reprojectionError=float(ransac_px), confidence=0.999,
                                             flags=cv2.SOLVEPNP_EPNP)
    if not ok or inl is None or len(inl) < max(6, min_inliers):
        out.why = f"{0 if inl is None else len(inl)} PnP inliers"
        return out
    idx = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(p3[idx], p2[idx], K, None, rvec, tvec)
    # Inliers again after the refinement: the refined model decides.
    proj, _ = cv2.projectPoints(p3, rvec, tvec, K, None)
    err = np.linalg.norm(proj.reshape(-1, 2) - p2, axis=1)
    R, _ = cv2.Rodrigues(rvec)
    in_front = (p3 @ R.T + tvec.reshape(1, 3))[:, 2] > 0
    keep = (err <= ransac_px) & in_front
    out.inliers = int(keep.sum())
    if out.inliers < max(6, min_inliers):
        out.why = f"{out.inliers} PnP inliers after refinement"
        return out
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, tvec.ravel()
    out.T_cam_map = T
    out.sigma_px, out.cov_rt = _covariance(p3[keep], p2[keep], rvec, tvec, K)
    return out


def _covariance(p3: np.ndarray, p2: np.ndarray, rvec: np.ndarray, tvec: np.ndarray,
                K: np.ndarray) -> tuple[float, np.ndarray]:
    """(sigma px, cov float64 [6, 6] of rvec, tvec) from the inliers (module doc)."""
    import cv2
    proj, jac = cv2.projectPoints(p3, rvec, tvec, K, None)
    r = (proj.reshape(-1, 2) - p2).ravel()
    dof = max(r.size - 6, 1)
    sigma = max(float(np.sqrt(np.sum(r ** 2) / dof)), MIN_SIGMA_PX)
    J = jac[:, :6]
    info = J.T @ J
    try:
        cov = sigma ** 2 * np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.diag(np.full(6, 1e6))
    return sigma, (cov + cov.T) / 2


def body_pose(res: PnPResult, T_cam_body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [7] pose of the body in the map frame, float64 [6, 6] covariance in
    x y z roll pitch yaw about the map axes) of a PnP result; ``T_cam_body`` the
    4x4 body -> camera transform (inverse of the camera's mounting on the body)."""
    import cv2
    assert res.ok and res.cov_rt is not None
    T_cam_body = np.asarray(T_cam_body, np.float64)

    def body_in_map(x: np.ndarray) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = cv2.Rodrigues(x[:3])[0], x[3:]
        return np.linalg.inv(T) @ T_cam_body

    rvec = cv2.Rodrigues(res.T_cam_map[:3, :3])[0].ravel()
    x0 = np.r_[rvec, res.T_cam_map[:3, 3]]
    T0 = body_in_map(x0)
    G = np.zeros((6, 6))
    for j in range(6):
        h = 1e-6
        d = np.zeros(6)
        d[j] = h
        Tp, Tm = body_in_map(x0 + d), body_in_map(x0 - d)
        G[:3, j] = (Tp[:3, 3] - Tm[:3, 3]) / (2 * h)
        G[3:, j] = (_small_angle(Tp[:3, :3] @ T0[:3, :3].T) - _small_angle(Tm[:3, :3] @ T0[:3, :3].T)) / (2 * h)
    cov = G @ res.cov_rt @ G.T
    return matrix_to_pose(T0), (cov + cov.T) / 2


def _small_angle(R: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation within a few degrees of identity (first order;
    cv2.Rodrigues rounds angles below ~1e-5 rad to zero)."""
    return 0.5 * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
