"""Image -> scored, filtered place candidates: the node's work without ROS.

:class:`PlaceMatcher` embeds one query image with the Embedder, searches the
PriorMap (excluding the most recent keyframes), applies the score threshold
and the temporal-consistency filter, and with online mapping adds the query
to the map at its odometry pose.  The node feeds it decoded images and turns
:class:`QueryResult` into messages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .gating import ConsistencyFilter


@dataclass
class MatchSettings:
    """Runtime-changeable search/filter settings (see params.py for meanings)."""
    top_k: int = 5
    score_threshold: float = 0.5
    exclude_recent_s: float = 30.0
    exclude_recent_n: int = 0
    consistency_n: int = 1
    consistency_radius_m: float = 5.0
    online_mapping: bool = False


@dataclass
class QueryResult:
    """Top-k candidates of one query, best first (K <= top_k; padding removed).

    ids int64 [K], scores float32 [K], poses float64 [K, 7] (x y z qx qy qz qw,
    map frame), stamps_ns int64 [K].  ``accepted`` says whether the top-1
    passed the threshold and the consistency filter; otherwise ``reject``
    is ``"empty"``, ``"score"`` or ``"consistency"``.  ``embed_s`` and
    ``search_s`` are wall-clock seconds; ``added_id`` is the new keyframe id
    with online mapping, else -1.
    """
    ids: np.ndarray
    scores: np.ndarray
    poses: np.ndarray
    stamps_ns: np.ndarray
    accepted: bool
    reject: str | None
    embed_s: float
    search_s: float
    added_id: int = -1


class PlaceMatcher:
    """Stateful matcher over one Embedder and one PriorMap (not thread-safe)."""

    def __init__(self, embedder: Any, prior_map: Any, settings: MatchSettings, source: str = "online") -> None:
        self.embedder = embedder
        self.map = prior_map
        self.settings = settings
        self.source = source
        self.consistency = ConsistencyFilter(settings.consistency_n, settings.consistency_radius_m)
        self._frame = 0

    def configure(self, settings: MatchSettings) -> None:
        self.settings = settings
        self.consistency.configure(settings.consistency_n, settings.consistency_radius_m)

    def query(self, rgb: np.ndarray, stamp_ns: int, odom_pose: np.ndarray | None = None) -> QueryResult:
        """Match uint8 [H, W, 3] RGB taken at ``stamp_ns``; ``odom_pose`` is the
        robot pose float64 [7] used for online mapping, or None."""
        s = self.settings
        t0 = time.perf_counter()
        desc = self.embedder.embed(rgb)                      # float32 [1, D], L2-normalised
        t1 = time.perf_counter()
        ids = np.zeros(0, np.int64)
        scores = np.zeros(0, np.float32)
        if len(self.map):
            res = self.map.search(desc, s.top_k, query_stamp_ns=int(stamp_ns),
                                  exclude_within_s=s.exclude_recent_s, exclude_last_n=s.exclude_recent_n)
            keep = res.ids[0] >= 0
            ids, scores = res.ids[0][keep].astype(np.int64), res.scores[0][keep].astype(np.float32)
        t2 = time.perf_counter()
        # Keyframe id == row of the map's arrays (PriorMap contract).
        poses = self.map.poses[ids] if len(ids) else np.zeros((0, 7))
        stamps = self.map.stamps_ns[ids] if len(ids) else np.zeros(0, np.int64)
        if len(ids) == 0:
            reject = "empty"
        elif scores[0] < s.score_threshold:
            reject = "score"
        else:
            reject = None
        consistent = self.consistency.update(None if reject else poses[0, :3])
        if reject is None and not consistent:
            reject = "consistency"
        added = -1
        if s.online_mapping and odom_pose is not None:
            added = int(self.map.add(desc, np.array([stamp_ns], np.int64),
                                     np.asarray(odom_pose, np.float64).reshape(1, 7), self.source,
                                     np.array([self._frame], np.int64))[0])
        self._frame += 1
        return QueryResult(ids, scores, np.asarray(poses, np.float64), np.asarray(stamps, np.int64),
                           reject is None, reject, t1 - t0, t2 - t1, added)
