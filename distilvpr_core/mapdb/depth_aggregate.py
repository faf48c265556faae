"""Denser keyframe depth: the LiDAR scans of neighbouring frames in the keyframe's camera.

One 32-beam scan projected into the camera is sparse: its beams are rows
several pixels apart and its vertical field (e.g. +10° up) misses the upper
image, so only about a third of a keyframe's features find a return.  The
mapping drive's neighbouring frames (``frame ± 1 .. ± depth_frames``) see the
same surfaces from other places (a frame behind sees the upper facades inside
its field), and their ground-truth poses are known, so their returns are moved
into the keyframe's camera:

    X_cam_k = inv(T_map_base_k · T_base_camera) · T_map_base_j · T_base_lidar · X_lidar_j

A surface a neighbour saw but the keyframe camera does not (behind a pole, a
parked car, a building corner) would give a wrong depth, so every return goes
through a z-buffer occlusion test: the returns are projected to pixels, the
nearest depth per pixel is kept, and a return is dropped when a return within
``occlusion_px`` pixels is nearer by more than ``occlusion_rel`` (relative).
The keyframe's own scan takes part in the test like any other.  What remains
goes to points3d.keypoint_depths, whose edge test (returns within 2 px must
agree) still applies.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..features.rotations import pose_to_matrix
from ..features.types import Intrinsics

#: Neighbourhood (pixels, Chebyshev radius) of the occlusion test.
OCCLUSION_PX = 2
#: A return this much (relative) farther than the nearest return of its neighbourhood is occluded.
OCCLUSION_REL = 0.1


def scans_in_camera(scans: Iterable[tuple[np.ndarray, np.ndarray]], pose_map_base: np.ndarray,
                    T_base_lidar: np.ndarray, T_base_camera: np.ndarray) -> np.ndarray:
    """float64 [P, 3] returns of several scans in the keyframe's camera optical frame.

    ``scans``: (scan float [P_j, >=3] LiDAR frame, pose float [7] base_link in map of the
    frame that took it); ``pose_map_base``: the keyframe's pose (x y z qx qy qz qw)."""
    T_cam_map = np.linalg.inv(pose_to_matrix(pose_map_base) @ pose_to_matrix(T_base_camera))
    T_bl = pose_to_matrix(T_base_lidar)
    out = []
    for scan, pose in scans:
        T = T_cam_map @ pose_to_matrix(pose) @ T_bl
        p = np.asarray(scan, np.float64)[:, :3]
        out.append(p @ T[:3, :3].T + T[:3, 3])
    return np.concatenate(out) if out else np.zeros((0, 3))


def visible(cam_pts: np.ndarray, cam: Intrinsics, radius_px: int = OCCLUSION_PX,
            rel: float = OCCLUSION_REL) -> np.ndarray:
    """bool [P]: the return (camera frame, float [P, 3]) is in front of the camera, inside
    the image and not behind a nearer return within ``radius_px`` pixels (z-buffer test)."""
    z = cam_pts[:, 2]
    front = z > 0.1
    u = np.full(len(z), -1, np.int64)
    v = np.full(len(z), -1, np.int64)
    zf = np.where(front, z, 1.0)
    u[front] = np.floor(cam.fx * cam_pts[front, 0] / zf[front] + cam.cx + 0.5)
    v[front] = np.floor(cam.fy * cam_pts[front, 1] / zf[front] + cam.cy + 0.5)
    keep = front & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    if not keep.any():
        return keep
    r = int(radius_px)
    w, h = cam.width + 2 * r, cam.height + 2 * r
    zbuf = np.full(w * h, np.inf)
    flat = (v[keep] + r) * w + (u[keep] + r)
    np.minimum.at(zbuf, flat, z[keep])
    zbuf = zbuf.reshape(h, w)
    # Min over the (2r+1)^2 neighbourhood, separably (rows, then columns).
    rows = np.min([zbuf[:, dx:dx + cam.width] for dx in range(2 * r + 1)], axis=0)
    near = np.min([rows[dy:dy + cam.height] for dy in range(2 * r + 1)], axis=0)   # [H, W]
    idx = np.flatnonzero(keep)
    keep[idx] = z[idx] <= near[v[idx], u[idx]] * (1.0 + rel)
    return keep


def neighbour_frames(index: int, total: int, depth_frames: int) -> list[int]:
    """Frame indices ``index - depth_frames .. index + depth_frames`` that exist (index first)."""
    lo, hi = max(0, index - depth_frames), min(total - 1, index + depth_frames)
    return [index] + [j for j in range(lo, hi + 1) if j != index]
