"""Publish a bag's images to a live node and collect its ``~/candidates`` answers.

Three pacings (``BagPlayer.play``):

* ``rate``: the recorded timing (bag log times) scaled by ``rate`` (1 = real
  time, 2 = twice as fast); frames the node cannot keep up with are dropped
  by its queue, exactly as on the robot.
* ``lockstep``: send a frame, wait for its answer, send the next: nothing is
  dropped and the timing is the node's own ("as fast as the node answers").

Images go out as the bag's own CDR bytes (``Publisher.publish(bytes)``), so
header stamps, encodings and sizes are exactly what was recorded and the
stamp is the key that joins each answer to its frame.  Wall times are
``time.monotonic()`` seconds in this process, for both sending and receiving.
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.data.bags import ImageRecord
from distilvpr_core.loopeval.matching import Answer, SentFrame

from ..candidates_table import from_pointcloud2

PACINGS = ("rate", "lockstep")


class NodeNotAnswering(UserError):
    """The node published no candidates for a frame within the timeout."""


def message_class(msgtype: str) -> type:
    """``"sensor_msgs/msg/Image"`` -> the rclpy message class."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class AnswerCollector:
    """Subscribes to a candidates topic and records every answer (thread-safe).

    The subscription's reliability follows the node's publisher so it never
    silently receives nothing (a reliable subscriber gets nothing from a
    best-effort publisher); depth 1000 keeps every answer of a replay.  With
    ``accept_topic`` (the node's ``~/match_pose``, published only for an
    accepted loop closure, stamped with the query's stamp) the stamps of the
    accepted queries are recorded in ``accepted``; with ``pose_topic`` (the node's
    ``~/pose``) every published metric pose, ``poses``: stamp -> float64 [7]
    x y z qx qy qz qw (base_link in the map frame).
    """

    def __init__(self, node: Any, topic: str, reliable: bool = True, accept_topic: str | None = None,
                 pose_topic: str | None = None) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2
        self.topic = topic
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self.accepted: set[int] = set()
        self.poses: dict[int, np.ndarray] = {}
        self._stamps: set[int] = set()
        self._cond = threading.Condition()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.subscription = node.create_subscription(PointCloud2, topic, self._on_msg, qos)
        if accept_topic:
            from geometry_msgs.msg import PoseWithCovarianceStamped
            node.create_subscription(PoseWithCovarianceStamped, accept_topic, self._on_accept,
                                     QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))

        if pose_topic:
            from geometry_msgs.msg import PoseWithCovarianceStamped
            node.create_subscription(PoseWithCovarianceStamped, pose_topic, self._on_pose,
                                     QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))

    def _on_pose(self, msg: Any) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        with self._cond:
            self.poses[int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)] = \
                np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], np.float64)

    def _on_accept(self, msg: Any) -> None:
        with self._cond:
            self.accepted.add(int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec))

    def _on_msg(self, msg: Any) -> None:
        now = time.monotonic()
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        try:
            rows = from_pointcloud2(msg)
            ans = Answer(stamp, now, rows["map_id"].astype(np.int64), rows["score"].astype(np.float32),
                         np.stack([rows[a].astype(np.float64) for a in "xyz"], axis=-1).reshape(-1, 3))
        except (ValueError, KeyError) as exc:  # a malformed table is recorded, not fatal
            with self._cond:
                self.errors.append(f"stamp {stamp}: {exc}")
            return
        with self._cond:
            self.answers.append(ans)
            self._stamps.add(stamp)
            self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self.answers)

    def has(self, stamp_ns: int) -> bool:
        with self._cond:
            return int(stamp_ns) in self._stamps

    def wait_for(self, stamp_ns: int, timeout_s: float) -> bool:
        """Block until an answer with this stamp arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: int(stamp_ns) in self._stamps, timeout=timeout_s)

    def wait_quiet(self, expected: Sequence[int], quiet_s: float, max_s: float) -> None:
        """Wait until every expected stamp is answered, or no answer came for ``quiet_s``."""
        deadline = time.monotonic() + max_s
        with self._cond:
            last_n = len(self.answers)
            while time.monotonic() < deadline:
                if all(int(s) in self._stamps for s in expected):
                    return
                self._cond.wait(timeout=min(quiet_s, max(0.0, deadline - time.monotonic())))
                if len(self.answers) == last_n:
                    return
                last_n = len(self.answers)


@dataclass
class PlayResult:
    """What was sent, and whether playback stopped early (``stopped`` says why)."""

    sent: list[SentFrame] = field(default_factory=list)
    stopped: str | None = None


def wait_for_subscriber(publisher: Any, topic: str, timeout_s: float,
                        alive: Callable[[], str | None] = lambda: None) -> None:
    """Wait until a subscription matches ``publisher`` (on ``topic``); NodeNotAnswering naming
    the topic if none does within ``timeout_s``.

    Why: a message published before DDS discovery has matched the node's subscription is
    lost (volatile durability), so the first frames or odometry poses of a replay would
    silently never reach the node.  ``alive`` returns a reason when the node process has
    died, to stop early.
    """
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0:
        dead = alive()
        if dead:
            raise UserError(dead)
        if time.monotonic() > deadline:
            raise NodeNotAnswering(
                f"no node subscribed to {topic} within {timeout_s:g} s; start the "
                "localizer (or check its topic remapping, ROS_DOMAIN_ID and "
                "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)")
        time.sleep(0.05)


class OdomFeeder:
    """Publishes, just before each frame, the bag odometry pose nearest that frame's stamp,
    re-stamped to it, as ``nav_msgs/Odometry`` on the node's ``odom`` topic.

    This is exactly what offline evaluation feeds the engine
    (loopeval/offline.py, ``frames_from_bag``), so the keyframe gate and the
    sequence score see the same odometry on both paths.  ``stamps`` int64 [M]
    ns, ``poses`` float64 [M, 7] (x y z qx qy qz qw, odometry frame).
    """

    SETTLE_S = 0.03

    def __init__(self, node: Any, topic: str, stamps: np.ndarray, poses: np.ndarray) -> None:
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        if len(stamps) == 0:
            raise UserError(f"odometry for {topic}: the bag's odometry topic holds no messages")
        self.topic, self._stamps, self._poses, self._msg = topic, stamps, poses, Odometry
        self.publisher = node.create_publisher(
            Odometry, topic, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    def send(self, stamp_ns: int) -> None:
        """Publish the pose nearest ``stamp_ns``, stamped ``stamp_ns``."""
        x, y, z, qx, qy, qz, qw = (float(v) for v in self._poses[int(np.argmin(np.abs(self._stamps - stamp_ns)))])
        msg = self._msg()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.header.frame_id = "odom"
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        p.x, p.y, p.z, q.x, q.y, q.z, q.w = x, y, z, qx, qy, qz, qw
        self.publisher.publish(msg)
        # Odometry and image arrive on two subscriptions whose callbacks the node may run in
        # either order; a short head start lets the pose reach the engine before its frame.
        time.sleep(self.SETTLE_S)


class BagPlayer:
    """Publishes image records on ``topic`` (reliable, depth ``depth``).

    The node's sensor-data subscription is best effort, which a reliable
    publisher serves; reliable lets the last frames be acknowledged.
    """

    def __init__(self, node: Any, topic: str, msgtype: str, depth: int = 100) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.topic = topic
        self.msg_class = message_class(msgtype)
        self.publisher = node.create_publisher(
            self.msg_class, topic, QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE))

    def wait_for_subscriber(self, timeout_s: float, alive: Callable[[], str | None] = lambda: None) -> None:
        """Wait until the node subscribes to ``topic`` (:func:`wait_for_subscriber`)."""
        wait_for_subscriber(self.publisher, self.topic, timeout_s, alive)

    def warm_up(self, record: ImageRecord, collector: AnswerCollector, timeout_s: float,
                stamp_ns: int) -> float:
        """Send one frame re-stamped to ``stamp_ns`` and wait for its answer.

        Loads the node's lazy parts (first inference) outside the measurement
        and proves the node answers.  Returns its latency (s); raises
        NodeNotAnswering with the topic names on timeout.
        """
        from rclpy.serialization import deserialize_message
        msg = deserialize_message(record.raw, self.msg_class)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        t0 = time.monotonic()
        self.publisher.publish(msg)
        if not collector.wait_for(stamp_ns, timeout_s):
            raise NodeNotAnswering(
                f"the node never answered: no message on {collector.topic} within {timeout_s:g} s "
                f"of sending a frame on {self.topic} ({self.publisher.get_subscription_count()} "
                "subscriber(s)); check the node's log, its map/model parameters and that it "
                "publishes candidates (raise --answer-timeout for a slow first inference)")
        return time.monotonic() - t0

    def play(self, records: Iterable[ImageRecord], collector: AnswerCollector, pacing: str = "rate",
             rate: float = 1.0, answer_timeout_s: float = 10.0, silence_s: float = 30.0,
             alive: Callable[[], str | None] = lambda: None, total: int | None = None,
             before_send: Callable[[int], None] = lambda stamp_ns: None) -> PlayResult:
        """Send every record; stop early (``stopped`` set) if the node dies or goes silent.

        ``records`` may be a stream (a long bag is never held in memory);
        ``total`` (their number, if known) only makes messages more helpful.
        ``before_send(stamp_ns)`` runs just before each frame goes out
        (``OdomFeeder.send``: the frame's odometry first).

        In ``lockstep`` a frame unanswered after ``answer_timeout_s`` is a drop
        and playback continues; in both pacings ``silence_s`` seconds without
        any answer stops playback (the node hung or died).
        """
        if pacing not in PACINGS:
            raise ValueError(f"pacing {pacing!r}: expected one of {PACINGS}")
        if rate <= 0:
            raise ValueError(f"rate {rate!r}: expected > 0")
        result = PlayResult()
        t_start = last_progress = time.monotonic()
        log0 = None
        last_count = collector.count()
        for rec in records:
            if log0 is None:
                log0 = rec.log_time_ns
            if pacing == "rate":
                due = t_start + (rec.log_time_ns - log0) / 1e9 / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            before_send(rec.stamp_ns)
            sent_s = time.monotonic()
            self.publisher.publish(rec.raw)
            result.sent.append(SentFrame(rec.stamp_ns, sent_s))
            if pacing == "lockstep":
                collector.wait_for(rec.stamp_ns, answer_timeout_s)
            dead = alive()
            if dead:
                result.stopped = dead
                return result
            now, count = time.monotonic(), collector.count()
            if count != last_count:
                last_count, last_progress = count, now
            elif now - last_progress > silence_s:
                result.stopped = (f"the node stopped answering: no message on {collector.topic} "
                                  f"for {now - last_progress:.1f} s (after {count} answers, "
                                  f"{len(result.sent)} of {total or '?'} frames sent)")
                return result
        return result

    def finish(self, timeout_s: float = 5.0) -> None:
        """Wait until the node's reader acknowledged everything (reliable QoS)."""
        from rclpy.duration import Duration
        self.publisher.wait_for_all_acked(Duration(seconds=timeout_s))
