"""The route: a closed loop through the street grid, and poses along it.

Frames: ``map`` is ENU with z up, metres.  Poses are base_link in map,
x forward, y left (REP 103).  Vehicles drive on the right: the lane centre is
a quarter of the street width to the right of the centre line.
"""
from __future__ import annotations

import numpy as np


def loop_nodes(bx: int, by: int) -> list[tuple[int, int]]:
    """Grid-node indices of the loop, closed (first == last).

    Up column 0, then a serpentine over rows 1..by through the interior
    columns, down the last column and back along row 0.  With ``by == 1`` it
    degenerates to the perimeter.  No street is driven twice, so a place is
    seen from one direction only (except in a partly reversed traversal).
    """
    path = [(0, j) for j in range(by + 1)]
    at_top = True
    for i in range(1, bx + 1):
        j_here = by if at_top else 1
        path.append((i, j_here))
        if i == bx:
            break
        if by > 1:
            rows = range(by - 1, 0, -1) if at_top else range(2, by + 1)
            path.extend((i, j) for j in rows)
            at_top = not at_top
    i, j = path[-1]
    path.extend((bx, jj) for jj in range(j - 1, -1, -1))
    path.extend((ii, 0) for ii in range(bx - 1, -1, -1))
    return path


def chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Corner-cut a closed polyline ``float64 [N, 2]`` (first == last) to round junction turns."""
    pts = points[:-1]
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        q = 0.75 * pts + 0.25 * nxt
        r = 0.25 * pts + 0.75 * nxt
        pts = np.stack([q, r], axis=1).reshape(-1, 2)
    return np.vstack([pts, pts[:1]])


class Loop:
    """Arc-length parametrised closed centre line ``float64 [N, 2]`` (metres, map xy)."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = points
        seg = np.diff(points, axis=0)
        self.seg_len = np.linalg.norm(seg, axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.length = float(self.cum[-1])

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position ``[K, 2]`` and unit tangent ``[K, 2]`` at arc lengths ``s`` (wrapped)."""
        s = np.mod(np.asarray(s, dtype=np.float64), self.length)
        k = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.seg_len) - 1)
        t = (s - self.cum[k]) / np.maximum(self.seg_len[k], 1e-9)
        p0, p1 = self.points[k], self.points[k + 1]
        pos = p0 + (p1 - p0) * t[:, None]
        tan = (p1 - p0) / np.maximum(self.seg_len[k], 1e-9)[:, None]
        return pos, tan


def yaw_to_quat(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """ZYX Euler angles (rad) to quaternions ``float64 [N, 4]`` as x y z w."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.stack([sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy,
                     cr * cp * cy + sr * sp * sy], axis=1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` (x y z w) to rotation matrices ``[..., 3, 3]``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def traversal_poses(loop: Loop, frames: int, spacing_m: float, street_width_m: float,
                    start_fraction: float, reverse_fraction: float, lateral_offset_m: float,
                    lane_changes: int, heading_jitter_deg: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses of one drive.

    Returns ``(poses float64 [N, 7] x y z qx qy qz qw, s float64 [N] arc length
    of the loop under each frame, reversed bool [N])``.  The last
    ``reverse_fraction`` of the frames drive the same stretch as other
    traversals, but backwards (the car got there by a detour, not recorded).
    """
    d = (frames - 1) * spacing_m
    s0 = start_fraction * loop.length
    n_rev = int(round(reverse_fraction * frames))
    n_fwd = frames - n_rev
    k = np.arange(frames, dtype=np.float64)
    s = s0 + k * spacing_m
    rev = np.zeros(frames, dtype=bool)
    if n_rev:
        # Drive [s0 + n_fwd*spacing, s0 + d] from its far end back towards the start.
        s[n_fwd:] = s0 + d - (k[n_fwd:] - n_fwd) * spacing_m
        rev[n_fwd:] = True
    pos, tan = loop.at(s)
    heading = np.where(rev[:, None], -tan, tan)
    right = np.stack([heading[:, 1], -heading[:, 0]], axis=1)
    lane = street_width_m / 4.0 + (-lateral_offset_m)
    # Lane changes: smooth ~40 m manoeuvres into the other lane and back (overtaking).
    off = np.full(frames, lane)
    travelled = k * spacing_m
    for c in rng.uniform(0.1, 0.9, size=lane_changes) * max(d, 1.0):
        off -= (street_width_m / 2.0) * np.exp(-0.5 * ((travelled - c) / 12.0) ** 2)
    xy = pos + right * off[:, None]
    jitter = np.deg2rad(heading_jitter_deg)
    # Low-pass the yaw noise so it looks like steering, not vibration.
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 3.0) ** 2)
    noise = np.convolve(rng.normal(0.0, 1.0, size=frames + 12), kernel / np.sqrt((kernel ** 2).sum()), mode="valid")
    yaw = np.arctan2(heading[:, 1], heading[:, 0]) + jitter * noise
    roll = rng.normal(0.0, np.deg2rad(0.3), size=frames)
    pitch = rng.normal(0.0, np.deg2rad(0.3), size=frames)
    poses = np.zeros((frames, 7))
    poses[:, :2] = xy
    poses[:, 3:] = yaw_to_quat(roll, pitch, yaw)
    return poses, np.mod(s, loop.length), rev


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrix -> quaternion x y z w (w >= 0)."""
    w = np.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2
    x = np.copysign(x, m[2, 1] - m[1, 2])
    y = np.copysign(y, m[0, 2] - m[2, 0])
    z = np.copysign(z, m[1, 0] - m[0, 1])
    q = np.array([x, y, z, w])
    return q / np.linalg.norm(q)
