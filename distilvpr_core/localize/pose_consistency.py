"""Accept a metric closure only when it agrees with the odometry (pure logic, no ROS).

Each query with a PnP pose (base_link in map) and an odometry pose
(base_link in odom) implies the map -> odom transform
``T_map_odom = T_map_base @ inv(T_odom_base)``.  Odometry drifts slowly, so
over a few consecutive queries a right localization implies (nearly) the
same transform, while a wrong one (a look-alike place, a bad PnP) implies a
transform metres or degrees away from its neighbours'.  :class:`PoseConsistency`
keeps the last ``n`` queries' transforms (None for a query without a pose)
and passes the newest when all ``n`` exist and each, applied to the newest
odometry pose, puts the robot within ``max_m`` / ``max_deg`` of the newest
PnP pose (compared at the robot, not at the odometry origin, where a small
rotation difference would be magnified by the lever arm).  Without odometry there is nothing to compare: the check
is skipped (``update`` returns None) and PnP inliers alone decide.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..features.rotations import pose_to_matrix, rotation_angle_deg


def map_to_odom(pose_map_base: np.ndarray, pose_odom_base: np.ndarray) -> np.ndarray:
    """float64 [4, 4] map -> odom transform implied by two float64 [7] poses of base_link."""
    return pose_to_matrix(pose_map_base) @ np.linalg.inv(pose_to_matrix(pose_odom_base))


class PoseConsistency:
    """The last ``n`` queries' map -> odom transforms; ``n = 1`` passes every pose."""

    def __init__(self, n: int = 2, max_m: float = 1.0, max_deg: float = 5.0) -> None:
        self.configure(n, max_m, max_deg)

    def configure(self, n: int, max_m: float, max_deg: float) -> None:
        self.n, self.max_m, self.max_deg = int(n), float(max_m), float(max_deg)
        old = list(getattr(self, "_hist", []))
        self._hist: deque = deque(old[-self.n:], maxlen=self.n)

    def update(self, pose_map_base: np.ndarray | None, pose_odom_base: np.ndarray | None) -> bool | None:
        """Record one query (poses float64 [7] or None); whether its pose is consistent,
        or None when there is no odometry (not checked)."""
        if pose_odom_base is None:
            self._hist.clear()  # a gap in odometry breaks the chain
            return None
        T = None if pose_map_base is None else map_to_odom(pose_map_base, pose_odom_base)
        self._hist.append(T)
        if T is None or len(self._hist) < self.n:
            return False
        here = pose_to_matrix(pose_odom_base)
        now = T @ here                                  # == pose_map_base as a matrix
        for other in self._hist:
            if other is None:
                return False
            pred = other @ here
            if np.linalg.norm(pred[:3, 3] - now[:3, 3]) > self.max_m \
                    or rotation_angle_deg(pred[:3, :3].T @ now[:3, :3]) > self.max_deg:
                return False
        return True

    def reset(self) -> None:
        self._hist.clear()
