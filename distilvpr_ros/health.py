"""The localizer's health: OK, WARN or ERROR with a message naming the cause.

Pure Python (no ROS) so every rule is unit-tested; the node passes what it
knows and publishes the verdict as the level and message of its
diagnostic_msgs/DiagnosticStatus.  Levels follow diagnostic_msgs:
0 OK, 1 WARN, 2 ERROR.  ERROR means the node cannot serve (no map to match
and none being built, or the model failing on every frame); WARN means it
serves, but worse than configured (no camera, late, dropping frames, no
/clock in simulation time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OK, WARN, ERROR = 0, 1, 2
#: Consecutive frames the model must fail on before the node reports ERROR.
FAILURES_FOR_ERROR = 3


@dataclass(frozen=True)
class HealthInput:
    """What the verdict is made of (times in seconds, latency in ms)."""
    image_topic: str
    since_last_image_s: float   # since the last image, or since start if none yet
    image_timeout_s: float
    latency_p95_ms: float       # NaN before the first query
    latency_budget_ms: float
    drop_fraction: float        # estimated share of camera frames that never arrived (NaN: unknown)
    max_drop_fraction: float
    map_size: int
    online_mapping: bool
    consecutive_failures: int   # frames in a row the engine raised on
    last_failure: str
    waiting_for_clock: bool     # use_sim_time and no /clock yet
    type_conflicts: tuple[str, ...] = ()  # from type_conflicts()


def health(h: HealthInput) -> tuple[int, str]:
    """(level, message): the worst finding's level and every finding's text
    joined with '; ' ('ok' when there is none)."""
    errors, warns = [], []
    if h.map_size == 0 and not h.online_mapping:
        errors.append("the map has no keyframes and online_mapping is off: nothing can match "
                      "(load a built map or turn online mapping on)")
    if h.consecutive_failures >= FAILURES_FOR_ERROR:
        errors.append(f"the model failed on the last {h.consecutive_failures} frames: {h.last_failure}")
    if h.since_last_image_s > h.image_timeout_s:
        warns.append(f"no image on {h.image_topic} for {h.since_last_image_s:.1f} s "
                     f"(image_timeout_s {h.image_timeout_s:g})")
    if h.latency_p95_ms > h.latency_budget_ms:
        warns.append(f"latency p95 {h.latency_p95_ms:.1f} ms is over latency_budget_ms "
                     f"{h.latency_budget_ms:g}")
    if h.drop_fraction > h.max_drop_fraction:
        warns.append(f"{100 * h.drop_fraction:.0f}% of camera frames never reached the node "
                     f"(max_drop_fraction {h.max_drop_fraction:g}): the model is slower than the camera")
    warns.extend(h.type_conflicts)
    if h.waiting_for_clock:
        warns.append("use_sim_time is true but no /clock has arrived (play the bag with --clock)")
    level = ERROR if errors else WARN if warns else OK
    return level, "; ".join(errors + warns) or "ok"


class DropEstimator:
    """Camera frames that never reached the callback, from header-stamp gaps.

    The camera's period is the median gap between consecutive stamps over the
    window; a gap of k periods means k - 1 frames missing (lost by DDS or
    overwritten in the depth-``queue_depth`` queue while the node was busy).
    Stamps going backwards (a bag restart) are ignored.  Needs a camera with a
    steady rate; ``fraction`` is NaN until 10 gaps were seen.
    """

    def __init__(self, size: int = 300) -> None:
        self.size = size
        self._gaps: list[float] = []
        self._last_ns: int | None = None

    def add(self, stamp_ns: int) -> None:
        if self._last_ns is not None and stamp_ns > self._last_ns:
            self._gaps.append((stamp_ns - self._last_ns) * 1e-9)
            del self._gaps[:-self.size]
        self._last_ns = stamp_ns

    def fraction(self) -> float:
        """Missing / (missing + received) over the window, NaN when unknown."""
        if len(self._gaps) < 10:
            return float("nan")
        gaps = np.asarray(self._gaps)
        period = float(np.min(gaps)) if np.median(gaps) > 1.5 * np.min(gaps) else float(np.median(gaps))
        missing = float(np.sum(np.maximum(np.rint(gaps / period) - 1.0, 0.0)))
        return missing / (missing + len(gaps))


def type_conflicts(ours: dict[str, str], graph: dict[str, list[tuple[str, str, str]]]) -> list[str]:
    """Topics where another node uses a different message type than ours.

    ``ours``: resolved topic name -> our type (``pkg/msg/Name``); ``graph``:
    topic -> [(node name, 'publishes'|'subscribes', type), ...] of the other
    endpoints.  DDS never connects endpoints of different types, so such a
    remap would silently carry nothing; each message names the topic, both
    types and the other node.
    """
    out = []
    for topic, mine in ours.items():
        for node, role, theirs in graph.get(topic, ()):
            if theirs != mine:
                out.append(f"{topic}: {node} {role} {theirs}, this node uses {mine} "
                           "(remap it to a topic of the right type)")
    return out


UNKNOWN_NODE = "_NODE_NAME_UNKNOWN_"  # what rmw reports until the owner's name is discovered


def graph_of(node, ours: dict[str, str]) -> dict[str, list[tuple[str, str, str]]]:
    """The other endpoints of ``ours``' topics from the ROS graph of rclpy ``node``."""
    me = node.get_fully_qualified_name()
    graph: dict[str, list[tuple[str, str, str]]] = {}
    for topic in ours:
        for role, infos in (("publishes", node.get_publishers_info_by_topic(topic)),
                            ("subscribes", node.get_subscriptions_info_by_topic(topic))):
            for info in infos:
                name = (info.node_namespace.rstrip("/") + "/" + info.node_name)
                if info.node_name == UNKNOWN_NODE:  # DDS knows the endpoint before the node's name
                    name = "a node not yet discovered by name"
                if name != me:
                    graph.setdefault(topic, []).append((name, role, info.topic_type))
    return graph
