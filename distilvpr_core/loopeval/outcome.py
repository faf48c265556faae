"""What happened to one query frame: its ground truth and the candidates it got.

Both evaluation paths reduce to a list of :class:`QueryOutcome`: the offline
path fills it from the localization engine it runs in-process, the ROS path
from the node's ``~/candidates`` (and ``~/match_pose``) messages matched to
the published images by header stamp.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _empty(dtype: type, *shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class QueryOutcome:
    """One query frame.

    Attributes:
        stamp_ns: image header stamp, int nanoseconds.
        position: float64 [3] ground-truth position x y z in the map frame
            (metres), or ``None`` when the bag/dataset has no pose near it.
        answered: ``True`` when a candidates answer (possibly with zero rows)
            arrived for this frame; ``False`` means dropped.
        cand_ids: int64 [k] map keyframe ids in rank order (best first).
        cand_scores: float32 [k] similarity scores, non-increasing.
        cand_positions: float64 [k, 3] map positions of the candidates (metres).
        latency_s: seconds from handing the image over to receiving its answer
            (wall clock), or ``None`` if unanswered/unknown.
        accepted: whether the localizer accepted the top-1 as a loop closure
            (every enabled stage passed), ``None`` if unknown.
        stage: offline only, what the engine's stages saw (None from ROS):
            ``match_rank`` (retrieval rank of the first candidate; >0 when
            verification promoted it), ``raw_score``, ``inliers`` of the
            first candidate (-1 not verified), ``verified``, ``rotation``
            float64 [3, 3] (query camera in the keyframe camera frame) or
            None, ``match_orientation`` float64 [4] of the first candidate,
            ``embed_s``, ``verify_s``, ``odom`` float64 [3] or None.
        orientation: float64 [4] ground-truth x y z w (map frame) or None.
        published_pose: float64 [7] the metric pose the localizer published on
            ``~/pose`` for this frame (base_link in the map frame, x y z qx qy qz
            qw), or None: offline from the engine's accepted PnP pose, on the ROS
            path from the node's ``~/pose`` messages.
    """

    stamp_ns: int
    position: np.ndarray | None
    answered: bool = True
    cand_ids: np.ndarray = field(default_factory=lambda: _empty(np.int64, 0))
    cand_scores: np.ndarray = field(default_factory=lambda: _empty(np.float32, 0))
    cand_positions: np.ndarray = field(default_factory=lambda: _empty(np.float64, 0, 3))
    latency_s: float | None = None
    accepted: bool | None = None
    stage: dict | None = None
    orientation: np.ndarray | None = None
    published_pose: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.stamp_ns = int(self.stamp_ns)
        if self.position is not None:
            self.position = np.asarray(self.position, dtype=np.float64).reshape(3)
        self.cand_ids = np.asarray(self.cand_ids, dtype=np.int64).reshape(-1)
        self.cand_scores = np.asarray(self.cand_scores, dtype=np.float32).reshape(-1)
        self.cand_positions = np.asarray(self.cand_positions, dtype=np.float64).reshape(-1, 3)
        k = len(self.cand_ids)
        assert len(self.cand_scores) == k and len(self.cand_positions) == k, \
            "candidate ids, scores and positions must have the same length"
