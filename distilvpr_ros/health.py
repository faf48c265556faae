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

from collections import deque
from dataclasses import dataclass

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
    drop_fraction: float        # share of camera frames the node skipped (NaN: unknown)
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
    """Camera frames the node skipped: published, but never reached its callback.

    Counted from the publisher's sequence numbers (rmw's message info,
    ``publication_sequence_number``): a jump of k + 1 between two frames of
    one publisher means k frames were lost by DDS or overwritten in the
    depth-``queue_depth`` queue while the node was busy.  Exact, whatever the
    camera's rate or jitter: an early or late frame is no drop (the stamp-gap
    estimate this replaces warned about 92 % drops on a stream the node
    received whole).  Per publisher (a bag restart or a second camera starts
    its own count; a sequence number going backwards restarts the count).
    ``fraction`` is over the last ``size`` frames received, NaN until one
    frame carried a sequence number (an rmw without them, or Humble's rclpy,
    which passes no message info).
    """

    def __init__(self, size: int = 300) -> None:
        self._last: dict[bytes, int] = {}
        self._window: deque[int] = deque(maxlen=size)  # frames skipped before each received frame

    def add(self, sequence: int | None, publisher: bytes = b"") -> None:
        """One frame received; ``sequence``: its publication sequence number (None: unknown)."""
        if sequence is None or sequence <= 0 or sequence >= 2**63:  # rmw's "unsupported"
            return
        last = self._last.get(publisher)
        self._last[publisher] = sequence
        self._window.append(sequence - last - 1 if last is not None and sequence > last else 0)

    def skipped(self) -> int:
        """Frames skipped over the window."""
        return int(sum(self._window))

    def fraction(self) -> float:
        """Skipped / (skipped + received) over the window, NaN when unknown."""
        if not self._window:
            return float("nan")
        skipped = self.skipped()
        return skipped / (skipped + len(self._window))


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
