"""Recent odometry poses, looked up by image stamp (pure logic, no ROS).

Camera frames and odometry arrive on separate topics at different rates and
latencies, so the pose for a frame is the buffered odometry whose stamp is
nearest to the frame's, if it is within ``timeout_s``.  Poses are float64
[7] x y z qx qy qz qw in the odometry frame; stamps are int nanoseconds.

A pose is taken only when it is finite and every value is within
:data:`MAX_ABS`: a finite 1e308 would overflow the gate's distance (numpy
prints an overflow warning per frame) and no robot is 1e9 m from its origin;
and only when the prior map would take it (unit quaternion,
mapdb/invariants.py), since online mapping adds it to the map.

Time can jump: a bag that restarts goes back by its length, and one message
stamped in 2038 is far ahead of every other.  Keeping the newest ``size``
stamps would then evict each new real pose at once (it is the oldest), so
no frame would find odometry again.  A pose stamped more than
:data:`RESTART_S` before the newest buffered one therefore starts the buffer
over: after a restart the new timeline is kept, and after a future-stamped
message the next real one drops it.
"""
from __future__ import annotations

import bisect

import numpy as np

from ..mapdb.invariants import MAX_POSITION_M, QUAT_NORM_TOL


#: Largest accepted |value| of a pose component (metres for x y z; a
#: quaternion component is <= 1).  Squares stay far from float64 overflow.
MAX_ABS = MAX_POSITION_M
#: A pose this many seconds older than the newest buffered one means time went
#: back (bag restart, or the newest was stamped in the future): start over.
#: Out-of-order delivery is milliseconds; a bag is longer than this.
RESTART_S = 5.0


def why_implausible(pose: np.ndarray) -> str | None:
    """Why a float64 [7] odometry pose is refused, in words for the log, or None when it
    is :func:`plausible`: a NaN/inf, a value beyond :data:`MAX_ABS`, or a quaternion
    whose norm is not 1 within the map's tolerance (the norm is named)."""
    pose = np.asarray(pose, np.float64).reshape(-1)
    with np.errstate(all="ignore"):  # the check itself must not warn on 1e308
        if not np.all(np.isfinite(pose)):
            return "odometry pose has NaN/inf"
        if not np.all(np.abs(pose) <= MAX_ABS):
            return f"odometry pose has |value| > {MAX_ABS:g}"
        norm = float(np.linalg.norm(pose[3:]))
    if abs(norm - 1.0) > QUAT_NORM_TOL:
        return (f"odometry orientation is not a unit quaternion (norm {norm:.4g}, expected 1 within "
                f"{QUAT_NORM_TOL:g}; an all-zero orientation is no rotation)")
    return None


def plausible(pose: np.ndarray) -> bool:
    """True for a finite float64 [7] pose whose values are all within :data:`MAX_ABS`
    (= the map's position bound) and whose quaternion has unit norm within the map's
    tolerance (mapdb/invariants.py): online mapping must never hand ``PriorMap.add``
    a pose it refuses (an all-zero orientation is no rotation)."""
    return why_implausible(pose) is None


class OdomBuffer:
    """The newest ``size`` odometry poses by stamp (see the module docstring)."""

    def __init__(self, size: int = 500) -> None:
        self.size = size
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []

    def add(self, stamp_ns: int, pose: np.ndarray) -> bool:
        """Insert in stamp order (out-of-order messages are fine); keeps the newest
        ``size``; a stamp :data:`RESTART_S` before the newest starts over.  False
        (nothing stored) for a pose that is not :func:`plausible`."""
        pose = np.asarray(pose, np.float64)
        if not plausible(pose):
            return False
        if self._stamps and stamp_ns < self._stamps[-1] - RESTART_S * 1e9:
            self.clear()
        i = bisect.bisect_right(self._stamps, stamp_ns)
        self._stamps.insert(i, stamp_ns)
        self._poses.insert(i, np.asarray(pose, np.float64))
        if len(self._stamps) > self.size:
            del self._stamps[0], self._poses[0]
        return True

    def at(self, stamp_ns: int, timeout_s: float) -> np.ndarray | None:
        """The pose nearest in time to ``stamp_ns``, or None if none is within ``timeout_s``."""
        if not self._stamps:
            return None
        i = bisect.bisect_left(self._stamps, stamp_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self._stamps)),
                   key=lambda j: abs(self._stamps[j] - stamp_ns))
        if abs(self._stamps[best] - stamp_ns) > timeout_s * 1e9:
            return None
        return self._poses[best]

    def clear(self) -> None:
        """Forget every pose."""
        self._stamps.clear()
        self._poses.clear()

    def __len__(self) -> int:
        return len(self._stamps)
