"""Checked reading of a rosbag2 (sqlite3 or mcap) for evaluation: images + poses.

Uses ``rosbags`` (no ROS install, no rclpy).  Every user mistake becomes a
:class:`UserError` naming the bag, the topic and what is there instead:
a missing topic lists the bag's topics with their types, a topic of the
wrong type names the accepted types, an empty bag says it is empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "nav_msgs/msg/Odometry")


@dataclass
class ImageRecord:
    """One image message: header stamp (ns), bag log time (ns), CDR bytes, type name."""

    stamp_ns: int
    log_time_ns: int
    raw: bytes
    msgtype: str


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class BagSource:
    """A bag opened for evaluation.  Use as a context manager.

    Args:
        path: rosbag2 directory (or a single .mcap/.db3 file).
        image_topic: sensor_msgs/Image or CompressedImage topic.
        pose_topic: ground-truth PoseStamped / PoseWithCovarianceStamped /
            Odometry topic (map frame), or None.
    """

    def __init__(self, path: str | Path, image_topic: str, pose_topic: str | None) -> None:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"{self.path}: bag not found; pass the rosbag2 directory "
                            "(the one holding metadata.yaml)")
        self.image_topic = image_topic
        self.pose_topic = pose_topic
        try:
            self._reader = AnyReader([self.path],
                                     default_typestore=get_typestore(Stores.ROS2_KILTED))
            self._reader.open()
        except Exception as exc:  # rosbags raises several unrelated types for bad bags
            raise UserError(f"{self.path}: not a readable rosbag2 ({type(exc).__name__}: {exc})") from None
        self.topics = {t: (info.msgtype, info.msgcount) for t, info in self._reader.topics.items()}

    def __enter__(self) -> "BagSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    def _listing(self) -> str:
        if not self.topics:
            return "the bag has no topics"
        return "topics in the bag: " + ", ".join(f"{t} ({m}, {n} msgs)"
                                                 for t, (m, n) in sorted(self.topics.items()))

    def _check(self, topic: str, accepted: tuple[str, ...], role: str, flag: str) -> str:
        if topic not in self.topics:
            raise UserError(f"{self.path}: {role} topic {topic!r} is not in the bag "
                            f"({self._listing()}); choose one with {flag}")
        msgtype = self.topics[topic][0]
        if msgtype not in accepted:
            raise UserError(f"{self.path}: {role} topic {topic!r} has type {msgtype}, expected "
                            f"one of {', '.join(accepted)}; choose another topic with {flag}")
        return msgtype

    def check_images(self) -> str:
        """Validate the image topic; return its type.  Raises UserError."""
        if not self.topics or sum(n for _, n in self.topics.values()) == 0:
            raise UserError(f"{self.path}: the bag is empty (no messages); record the camera "
                            "and ground-truth topics into it")
        msgtype = self._check(self.image_topic, IMAGE_TYPES, "image", "--image-topic")
        if self.topics[self.image_topic][1] == 0:
            raise UserError(f"{self.path}: image topic {self.image_topic!r} has no messages")
        return msgtype

    def pose_problem(self) -> str | None:
        """Why ground truth cannot be read (a sentence), or None if it can."""
        if self.pose_topic is None:
            return "no ground-truth pose topic given (--pose-topic)"
        try:
            self._check(self.pose_topic, POSE_TYPES, "ground-truth pose", "--pose-topic")
        except UserError as exc:
            return str(exc)
        if self.topics[self.pose_topic][1] == 0:
            return f"{self.path}: ground-truth pose topic {self.pose_topic!r} has no messages"
        return None

    def images(self) -> Iterator[ImageRecord]:
        """Image messages in bag order (log time), with their header stamps."""
        conns = [c for c in self._reader.connections if c.topic == self.image_topic]
        for conn, log_ns, raw in self._reader.messages(connections=conns):
            msg = self._reader.deserialize(raw, conn.msgtype)
            yield ImageRecord(_stamp_ns(msg.header), int(log_ns), bytes(raw), conn.msgtype)

    def pose_track(self) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth: (stamps_ns int64 [T], xyz float64 [T, 3]) in the poses' frame."""
        problem = self.pose_problem()
        if problem:
            raise UserError(problem)
        conns = [c for c in self._reader.connections if c.topic == self.pose_topic]
        stamps, xyz = [], []
        for conn, _, raw in self._reader.messages(connections=conns):
            msg = self._reader.deserialize(raw, conn.msgtype)
            pose = msg.pose if conn.msgtype.endswith("PoseStamped") else msg.pose.pose
            stamps.append(_stamp_ns(msg.header))
            xyz.append((pose.position.x, pose.position.y, pose.position.z))
        return np.asarray(stamps, np.int64), np.asarray(xyz, np.float64).reshape(-1, 3)

    def decode_rgb(self, rec: ImageRecord) -> np.ndarray:
        """uint8 [H, W, 3] RGB of an image record (raw rgb/bgr/mono 8-bit, jpeg/png)."""
        from ..data.bagio import image_to_rgb
        msg = self._reader.deserialize(rec.raw, rec.msgtype)
        return image_to_rgb(msg, rec.msgtype, f"{self.path} {self.image_topic}")

