"""Recent odometry poses, looked up by image stamp (pure logic, no ROS).

Camera frames and odometry arrive on separate topics at different rates and
latencies, so the pose for a frame is the buffered odometry whose stamp is
nearest to the frame's, if it is within ``timeout_s``.  Poses are float64
[7] x y z qx qy qz qw in the odometry frame; stamps are int nanoseconds.
"""
from __future__ import annotations

import bisect

import numpy as np


class OdomBuffer:
    def __init__(self, size: int = 500) -> None:
        self.size = size
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []

    def add(self, stamp_ns: int, pose: np.ndarray) -> None:
        """Insert in stamp order (out-of-order messages are fine); keeps the newest ``size``."""
        i = bisect.bisect_right(self._stamps, stamp_ns)
        self._stamps.insert(i, stamp_ns)
        self._poses.insert(i, np.asarray(pose, np.float64))
        if len(self._stamps) > self.size:
            del self._stamps[0], self._poses[0]

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

    def __len__(self) -> int:
        return len(self._stamps)
