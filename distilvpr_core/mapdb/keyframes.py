"""Keyframe selection and image-pose association for map building.

A keyframe is taken when the robot has travelled ``min_distance_m`` along its
path since the last keyframe and/or ``min_interval_s`` has passed, so a
stationary robot does not fill the map with copies of one place.  Bags carry
images and poses on separate topics: each image takes the pose with the
nearest stamp, if that is within a tolerance.
"""
from __future__ import annotations

import numpy as np

from ..foundation.errors import UserError


class KeyframeSelector:
    """Online keyframe decision over a stream of (stamp, pose).

    min_distance_m: path length (m, map frame xyz) since the last keyframe;
    min_interval_s: time since the last keyframe (s); a criterion set to 0 is
    off.  combine "or": either enabled criterion triggers; "and": all enabled
    criteria must hold.  With both off every frame is a keyframe.  The first
    frame is always a keyframe.
    """

    def __init__(self, min_distance_m: float = 1.0, min_interval_s: float = 0.0,
                 combine: str = "or"):
        if combine not in ("or", "and"):
            raise UserError(f"keyframes.combine: expected 'or' or 'and', got {combine!r}")
        self.min_distance_m = float(min_distance_m)
        self.min_interval_s = float(min_interval_s)
        self.combine = combine
        self._last_xyz: np.ndarray | None = None
        self._travelled = 0.0
        self._last_key_ns: int | None = None

    def accept(self, stamp_ns: int, pose: np.ndarray) -> bool:
        """True if the frame at ``stamp_ns`` with pose float64 [7] is a keyframe."""
        xyz = np.asarray(pose[:3], np.float64)
        if self._last_xyz is not None:
            self._travelled += float(np.linalg.norm(xyz - self._last_xyz))
        self._last_xyz = xyz
        if self._last_key_ns is None:
            return self._take(stamp_ns)
        checks = []
        if self.min_distance_m > 0:
            checks.append(self._travelled >= self.min_distance_m)
        if self.min_interval_s > 0:
            checks.append((stamp_ns - self._last_key_ns) >= self.min_interval_s * 1e9)
        if not checks or (any(checks) if self.combine == "or" else all(checks)):
            return self._take(stamp_ns)
        return False

    def _take(self, stamp_ns: int) -> bool:
        self._last_key_ns = int(stamp_ns)
        self._travelled = 0.0
        return True


def select_keyframes(stamps_ns: np.ndarray, poses: np.ndarray, min_distance_m: float = 1.0,
                     min_interval_s: float = 0.0, combine: str = "or") -> np.ndarray:
    """Indices (int64 [K]) of keyframes among frames with stamps int64 [N], poses float64 [N, 7]."""
    sel = KeyframeSelector(min_distance_m, min_interval_s, combine)
    return np.asarray([i for i in range(len(stamps_ns)) if sel.accept(int(stamps_ns[i]), poses[i])],
                      dtype=np.int64)


def nearest_pose(pose_stamps_ns: np.ndarray, stamp_ns: int, tolerance_s: float) -> int:
    """Row of the pose stamp (sorted int64 [M]) nearest ``stamp_ns``, or -1 if farther than the tolerance."""
    j = int(np.searchsorted(pose_stamps_ns, stamp_ns))
    best, best_dt = -1, None
    for c in (j - 1, j):
        if 0 <= c < pose_stamps_ns.shape[0]:
            dt = abs(int(pose_stamps_ns[c]) - int(stamp_ns))
            if best_dt is None or dt < best_dt:
                best, best_dt = c, dt
    if best_dt is None or best_dt > tolerance_s * 1e9:
        return -1
    return best
