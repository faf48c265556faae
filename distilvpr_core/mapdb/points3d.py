"""Each keyframe feature's 3D point in the map frame, from a LiDAR scan taken with the image.

The scan (float32 [P, 3], LiDAR frame) is moved into the camera's optical
frame through the dataset's extrinsics (``T_base_lidar``, ``T_base_camera``:
poses on base_link, x y z qx qy qz qw) and projected with the intrinsics.
A keypoint takes the depth of the projected returns within
``radius_px``: the nearest return's depth, provided every return in the
radius lies within ``max_spread`` (relative) of the nearest depth.  At a
depth edge (a facade against the sky, a pole before a wall) the returns
disagree and the point is NaN rather than a blend of two surfaces; so is a
keypoint with no return near it (sky, beyond the LiDAR's vertical field).
Dense returns (several scans, mapdb/depth_aggregate.py) on a surface seen at a
grazing angle (a wall along the road, the road far ahead) spread more than that
over 2 px without any edge, and the nearest return's depth is off by the
slope; so where at least ``PLANE_MIN`` returns (not on one line) are near, a
plane is fitted (inverse depth is affine in the pixel coordinates on a plane)
and the keypoint takes the plane's depth at its pixel if every return lies
within ``PLANE_TOL`` (relative) of it; two surfaces at an edge do not fit one
plane and fall back to the rule above (NaN when they disagree).
The pixel ray scaled to that depth is the point in the camera frame, and the
keyframe's ground-truth pose (base_link in map) takes it to the map frame.
"""
from __future__ import annotations

import numpy as np

from ..features.rotations import pose_to_matrix
from ..features.types import Intrinsics

#: Returns within this many pixels of a keypoint give its depth.
RADIUS_PX = 2.0
#: Relative depth spread allowed among those returns (an edge beyond it: NaN).
MAX_SPREAD = 0.05
#: Relative depth residual allowed for the plane fit (at least PLANE_MIN returns, not on a line).
PLANE_TOL = 0.01
PLANE_MIN = 4


def camera_points(scan_xyz: np.ndarray, T_base_lidar: np.ndarray, T_base_camera: np.ndarray) -> np.ndarray:
    """float64 [P, 3] LiDAR points in the camera's optical frame (from [P, >=3] LiDAR frame)."""
    T = np.linalg.inv(pose_to_matrix(T_base_camera)) @ pose_to_matrix(T_base_lidar)
    p = np.asarray(scan_xyz, np.float64)[:, :3]
    return p @ T[:3, :3].T + T[:3, 3]


def keypoint_depths(keypoints: np.ndarray, cam_pts: np.ndarray, cam: Intrinsics,
                    radius_px: float | None = None, max_spread: float | None = None) -> np.ndarray:
    """float64 [F] depth (m, along the optical axis) of each keypoint float [F, 2]; NaN: none.
    ``radius_px`` / ``max_spread``: None = the module's :data:`RADIUS_PX` / :data:`MAX_SPREAD`."""
    radius_px = RADIUS_PX if radius_px is None else radius_px
    max_spread = MAX_SPREAD if max_spread is None else max_spread
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    out = np.full(len(kp), np.nan)
    z = cam_pts[:, 2]
    front = z > 0.1
    if not len(kp) or not front.any():
        return out
    p, z = cam_pts[front], z[front]
    uv = np.c_[cam.fx * p[:, 0] / z + cam.cx, cam.fy * p[:, 1] / z + cam.cy]
    inside = (uv[:, 0] > -radius_px) & (uv[:, 0] < cam.width - 1 + radius_px) & \
             (uv[:, 1] > -radius_px) & (uv[:, 1] < cam.height - 1 + radius_px)
    uv, z = uv[inside], z[inside]
    if not len(z):
        return out
    # Brute force, in chunks: F <= a few hundred keypoints, P a few thousand returns.
    for start in range(0, len(kp), 64):
        block = kp[start:start + 64]
        d2 = ((block[:, None, :] - uv[None, :, :]) ** 2).sum(-1)          # [b, P]
        near = d2 <= radius_px ** 2
        lo = np.where(near, z[None, :], np.inf).min(axis=1)                 # inf where none
        hi = np.where(near, z[None, :], -np.inf).max(axis=1)
        ok = near.any(axis=1) & (hi <= lo * (1.0 + max_spread))
        out[start:start + len(block)] = np.where(ok, lo, np.nan)
        for b in np.flatnonzero(near.sum(axis=1) >= PLANE_MIN):
            d = _plane_depth(block[b], uv[near[b]], z[near[b]])
            if np.isfinite(d):
                out[start + b] = d
    return out


def _plane_depth(kp: np.ndarray, uv: np.ndarray, z: np.ndarray) -> float:
    """Depth at pixel kp [2] of the plane through returns at pixels uv [n, 2] with depths
    z [n] (1/z = a u + b v + c), or NaN when they are not one plane within PLANE_TOL."""
    A = np.c_[uv - kp, np.ones(len(z))]
    if np.linalg.matrix_rank(A[:, :2] - A[:, :2].mean(0), tol=0.5) < 2:
        return np.nan   # returns on a line (one beam): the plane is not determined
    coef, *_ = np.linalg.lstsq(A, 1.0 / z, rcond=None)
    fit = A @ coef
    if coef[2] <= 0 or np.any(fit <= 0) or np.max(np.abs(z * fit - 1.0)) > PLANE_TOL:
        return np.nan
    return float(1.0 / coef[2])


def keypoint_points_map(keypoints: np.ndarray, scan_xyz: np.ndarray, cam: Intrinsics,
                        T_base_lidar: np.ndarray, T_base_camera: np.ndarray,
                        pose_map_base: np.ndarray) -> np.ndarray:
    """float32 [F, 3] map-frame point of each keypoint (NaN where no depth), see module doc."""
    return points_from_camera(keypoints, camera_points(scan_xyz, T_base_lidar, T_base_camera), cam,
                              T_base_camera, pose_map_base)


def points_from_camera(keypoints: np.ndarray, cam_pts: np.ndarray, cam: Intrinsics,
                       T_base_camera: np.ndarray, pose_map_base: np.ndarray) -> np.ndarray:
    """float32 [F, 3] map-frame point of each keypoint float [F, 2] from returns already in
    the keyframe's camera frame (float [P, 3], e.g. several scans, mapdb/depth_aggregate.py)."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    depth = keypoint_depths(kp, cam_pts, cam)
    rays = np.c_[(kp[:, 0] - cam.cx) / cam.fx, (kp[:, 1] - cam.cy) / cam.fy, np.ones(len(kp))]
    p_cam = rays * depth[:, None]
    T = pose_to_matrix(pose_map_base) @ pose_to_matrix(T_base_camera)
    return (p_cam @ T[:3, :3].T + T[:3, 3]).astype(np.float32)
