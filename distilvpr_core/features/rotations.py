"""Rotation matrices <-> quaternions (x y z w, the ROS order) and rigid transforms."""
from __future__ import annotations

import numpy as np


def quat_to_rotation(q: np.ndarray) -> np.ndarray:
    """[4] quaternion x y z w (any norm > 0) -> float64 [3, 3] rotation."""
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def rotation_to_quat(R: np.ndarray) -> np.ndarray:
    """float64 [3, 3] rotation -> [4] quaternion x y z w, w >= 0 (Shepperd's method: the
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


def pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """float64 [7] x y z qx qy qz qw -> float64 [4, 4] homogeneous transform."""
    p = np.asarray(pose, np.float64).reshape(7)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = quat_to_rotation(p[3:7]), p[:3]
    return T


def matrix_to_pose(T: np.ndarray) -> np.ndarray:
    """float64 [4, 4] -> [7] x y z qx qy qz qw."""
    return np.r_[np.asarray(T, np.float64)[:3, 3], rotation_to_quat(np.asarray(T)[:3, :3])]


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix, degrees in [0, 180]."""
    return float(np.degrees(np.arccos(np.clip((np.trace(np.asarray(R)) - 1) / 2, -1.0, 1.0))))
