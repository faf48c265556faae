"""The engine's filters: keyframe gating and temporal consistency (pure logic, no ROS).

The gate decides which camera frames become place queries.  A frame passes
when at least ``min_interval_s`` seconds have passed since the last query
and, when odometry is available, the robot has moved ``min_distance_m``
metres since then.  A stationary robot therefore produces no stream of
repeated candidates.

The consistency filter accepts a match only when the top-1 map positions of
the last ``n`` queries agree: each lies within ``radius_m`` metres of the
newest one.  ``n = 1`` disables it.  The radius must allow for the robot's
motion between queries (at least ``(n - 1) * min_distance_m``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class KeyframeGate:
    """Stateful gate.  ``due``/``check`` take the frame stamp (seconds) and the robot
    position (metres, odometry frame) or None without odometry."""

    min_interval_s: float = 0.5
    min_distance_m: float = 0.0
    _last_t: float | None = None
    _last_xyz: np.ndarray | None = None

    def due(self, stamp_s: float, xyz: np.ndarray | None = None) -> str | None:
        """None if the frame should become a query, else why it is gated:
        ``"interval"`` or ``"distance"``.  Does not record the frame; call
        :meth:`mark` once the query is really made (a frame that then fails
        to decode must not hold back the next good one)."""
        if self._last_t is not None and stamp_s < self._last_t:
            # Time went backwards (bag restarted, sim reset): start over.
            self.reset()
        if self._last_t is not None and stamp_s - self._last_t < self.min_interval_s:
            return "interval"
        if (xyz is not None and self._last_xyz is not None and self.min_distance_m > 0
                and float(np.linalg.norm(np.asarray(xyz, float) - self._last_xyz)) < self.min_distance_m):
            return "distance"
        return None

    def mark(self, stamp_s: float, xyz: np.ndarray | None = None) -> None:
        """Record a frame that was queried."""
        self._last_t = stamp_s
        self._last_xyz = None if xyz is None else np.asarray(xyz, float).copy()

    def check(self, stamp_s: float, xyz: np.ndarray | None = None) -> str | None:
        """:meth:`due`, and :meth:`mark` the frame when it passes."""
        reason = self.due(stamp_s, xyz)
        if reason is None:
            self.mark(stamp_s, xyz)
        return reason

    def reset(self) -> None:
        self._last_t = None
        self._last_xyz = None


class ConsistencyFilter:
    """Accept a top-1 match only when the last ``n`` queries agree within ``radius_m``."""

    def __init__(self, n: int = 1, radius_m: float = 5.0) -> None:
        self.n = n
        self.radius_m = radius_m
        self._recent: deque[np.ndarray | None] = deque(maxlen=max(n, 1))

    def configure(self, n: int, radius_m: float) -> None:
        """Change the settings; the history is kept (trimmed to the new ``n``)."""
        self.n, self.radius_m = n, radius_m
        self._recent = deque(self._recent, maxlen=max(n, 1))

    def update(self, match_xyz: np.ndarray | None) -> bool:
        """Record this query's top-1 map position (metres, map frame), or None
        when it had no acceptable match (that breaks the streak).  Returns
        whether the current match is consistent with the previous ``n - 1``."""
        self._recent.append(None if match_xyz is None else np.asarray(match_xyz, float).copy())
        if match_xyz is None:
            return False
        if self.n <= 1:
            return True
        if len(self._recent) < self.n or any(p is None for p in self._recent):
            return False
        newest = self._recent[-1]
        return all(float(np.linalg.norm(p - newest)) <= self.radius_m for p in self._recent)


class SequenceScore:
    """How well the last ``n`` queries' top-1 map keyframes follow the odometry.

    Each query contributes (odometry position, top-1 map position, top-1
    keyframe id); for each consecutive pair in the window, the pair agrees when
    both have odometry and a match, the map step length is within
    ``tolerance_m`` of the odometry step length, and the keyframe ids move in
    the window's overall direction (or stay).  The score is the share of the
    ``n - 1`` pairs that agree, in [0, 1]; NaN until the window is full or
    with ``n = 1``.  Positions are metres (odometry frame and map frame; only
    step lengths are compared, so the frames need not be aligned).
    """

    def __init__(self, n: int = 1, tolerance_m: float = 5.0) -> None:
        self.n, self.tolerance_m = n, tolerance_m
        self._recent: deque[tuple | None] = deque(maxlen=max(n, 1))

    def configure(self, n: int, tolerance_m: float) -> None:
        self.n, self.tolerance_m = n, tolerance_m
        self._recent = deque(self._recent, maxlen=max(n, 1))

    def update(self, odom_xyz: np.ndarray | None, map_xyz: np.ndarray | None, map_id: int) -> float:
        """Record this query (``map_xyz`` None: no candidate) and return the score."""
        ok = odom_xyz is not None and map_xyz is not None
        self._recent.append((np.asarray(odom_xyz, float), np.asarray(map_xyz, float), int(map_id))
                            if ok else None)
        if self.n <= 1 or len(self._recent) < self.n:
            return float("nan")
        w = list(self._recent)
        ids = [e[2] for e in w if e is not None]
        direction = np.sign(ids[-1] - ids[0]) if len(ids) > 1 else 0
        agree = 0
        for a, b in zip(w[:-1], w[1:]):
            if a is None or b is None:
                continue
            step_odom = float(np.linalg.norm(b[0] - a[0]))
            step_map = float(np.linalg.norm(b[1] - a[1]))
            order_ok = direction == 0 or np.sign(b[2] - a[2]) in (0, direction)
            agree += int(abs(step_map - step_odom) <= self.tolerance_m and order_ok)
        return agree / (self.n - 1)
