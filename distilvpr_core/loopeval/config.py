"""Settings of the loop-closure evaluation (shared by the offline and ROS paths)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import ConfigError, spec


@dataclass
class EvalConfig:
    """How query frames are scored against ground truth.

    A candidate is a *true* loop closure when its map keyframe position lies
    within ``radius_m`` of the query's ground-truth position (both in the map
    frame, metres, 3-D Euclidean distance).
    """

    radius_m: float = field(default=25.0, metadata=spec(
        "a candidate within this many metres of the query's true position is correct", gt=0))
    recall_ns: list[int] = field(default_factory=lambda: [1, 5, 10], metadata=spec(
        "N values of Recall@N (each >= 1)"))
    fp_examples: int = field(default=10, metadata=spec(
        "how many highest-scoring false positives the report lists", ge=0))
    gt_max_gap_s: float = field(default=0.5, metadata=spec(
        "a query more than this many seconds from the nearest ground-truth pose gets no "
        "ground truth (it is excluded from recall and precision)", gt=0))

    def __post_init__(self) -> None:
        if not self.recall_ns or any(n < 1 for n in self.recall_ns):
            raise ConfigError(f"eval.recall_ns: expected a non-empty list of integers >= 1, "
                              f"got {self.recall_ns!r}")
        self.recall_ns = sorted(set(self.recall_ns))
