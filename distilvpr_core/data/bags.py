"""The one rosbag2 reader (sqlite3 or mcap): topics, types, stamps, images, poses, clouds.

Used by the map builder, the replay and the offline evaluation alike, with
``rosbags`` (no ROS install, no rclpy).  Every user mistake becomes a
:class:`UserError` naming the bag and the topic: a missing topic lists the
bag's topics with their types, a topic of the wrong type names the accepted
types, an empty topic says so.  Images are decoded by the one decoder,
:mod:`distilvpr_core.data.images`.  Stamps are header stamps in int ns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..foundation.errors import UserError
from . import images

# Default topics (what ``distilvpr synth`` records; see data/bagio.py).
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
LIDAR_TOPIC = "/lidar/points"
ODOM_TOPIC = "/odom"
GT_POSE_TOPIC = "/ground_truth/pose"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
ODOMETRY = "nav_msgs/msg/Odometry"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
POSE_COV_STAMPED = "geometry_msgs/msg/PoseWithCovarianceStamped"
IMAGE_TYPES = (IMAGE, COMPRESSED)
POSE_TYPES = (POSE_STAMPED, POSE_COV_STAMPED, ODOMETRY)


def typestore() -> Any:
    """The rosbags type store for ROS 2 Kilted (standard messages only)."""
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


@dataclass
class ImageRecord:
    """One image message: header stamp (ns), bag log time (ns), CDR bytes, type name."""

    stamp_ns: int
    log_time_ns: int
    raw: bytes
    msgtype: str


def stamp_ns(header: Any) -> int:
    """std_msgs/Header -> int nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def pose7(msg: Any, msgtype: str) -> tuple[float, ...]:
    """x y z qx qy qz qw of a PoseStamped, PoseWithCovarianceStamped or Odometry."""
    pose = msg.pose if msgtype == POSE_STAMPED else msg.pose.pose
    p, q = pose.position, pose.orientation
    return (p.x, p.y, p.z, q.x, q.y, q.z, q.w)


class BagReader:
    """An open bag (use as a context manager; :meth:`close` when done).

    ``path``: rosbag2 directory (or a single .mcap/.db3 file).
    """

    def __init__(self, path: str | Path) -> None:
        from rosbags.highlevel import AnyReader
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"{self.path}: bag not found; pass the rosbag2 directory "
                            "(the one holding metadata.yaml) or its .mcap/.db3 file")
        try:
            self._reader = AnyReader([self.path], default_typestore=typestore())
            self._reader.open()
        except Exception as exc:  # rosbags raises several unrelated types for bad bags
            raise UserError(f"{self.path}: not a readable rosbag2 ({type(exc).__name__}: {exc})") from None
        self.topics: dict[str, tuple[str, int]] = {}
        for c in self._reader.connections:
            typ, n = self.topics.get(c.topic, (c.msgtype, 0))
            self.topics[c.topic] = (typ, n + c.msgcount)

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    def listing(self) -> str:
        if not self.topics:
            return "the bag is empty: it has no topics"
        return "topics in the bag: " + ", ".join(f"{t} ({m}, {n} msgs)"
                                                 for t, (m, n) in sorted(self.topics.items()))

    def check(self, topic: str, accepted: tuple[str, ...], hint: str = "", role: str = "") -> str:
        """The topic's type; UserError when the bag is empty or the topic is missing,
        of another type or empty.  ``role`` ("image", ...) and ``hint`` (how to
        choose another topic) make the message say what the topic was for."""
        what = f"{role} topic" if role else "topic"
        if topic not in self.topics:
            raise UserError(f"{self.path}: {what} {topic!r} is not in the bag ({self.listing()}){hint}")
        msgtype, count = self.topics[topic]
        if msgtype not in accepted:
            raise UserError(f"{self.path}: {what} {topic!r} has type {msgtype}, expected one of "
                            f"{', '.join(accepted)}{hint}")
        if count == 0:
            empty = "" if any(n for _, n in self.topics.values()) else \
                " (the bag is empty: record the camera and ground-truth topics into it)"
            raise UserError(f"{self.path}: {what} {topic!r} has no messages{empty}{hint}")
        return msgtype

    def messages(self, topic: str) -> Iterator[tuple[str, int, bytes]]:
        """``(msgtype, log time ns, CDR bytes)`` of a topic in bag order."""
        conns = [c for c in self._reader.connections if c.topic == topic]
        for conn, log_ns, raw in self._reader.messages(connections=conns):
            yield conn.msgtype, int(log_ns), raw

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self._reader.deserialize(raw, msgtype)

    def image_records(self, topic: str) -> Iterator[ImageRecord]:
        """Image messages of a checked topic in bag order, with their header stamps."""
        for msgtype, log_ns, raw in self.messages(topic):
            msg = self.deserialize(raw, msgtype)
            yield ImageRecord(stamp_ns(msg.header), log_ns, bytes(raw), msgtype)

    def image_message(self, rec: ImageRecord) -> Any:
        """The (rosbags) Image / CompressedImage message of a record."""
        return self.deserialize(rec.raw, rec.msgtype)

    def decode(self, msg: Any, topic: str) -> np.ndarray:
        """uint8 [H, W, 3] RGB of an image message; UserError naming bag and topic."""
        try:
            return images.decode(msg)
        except images.BadImage as exc:
            raise UserError(f"{self.path} {topic}: {exc}") from None

    def poses(self, topic: str, hint: str = "", role: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(stamps_ns int64 [N], poses float64 [N, 7] x y z qx qy qz qw)`` of a pose topic."""
        self.check(topic, POSE_TYPES, hint, role)
        stamps, poses = [], []
        for msgtype, _, raw in self.messages(topic):
            msg = self.deserialize(raw, msgtype)
            stamps.append(stamp_ns(msg.header))
            poses.append(pose7(msg, msgtype))
        return np.asarray(stamps, np.int64), np.asarray(poses, np.float64).reshape(-1, 7)


def bag_topics(bag: str | Path) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` of a bag."""
    with BagReader(bag) as reader:
        return dict(reader.topics)


def read_image_stream(bag: str | Path, topic: str = IMAGE_TOPIC) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(stamp_ns, uint8 [H, W, 3] RGB)`` in bag order (every encoding the node
    accepts).  The bag and topic are checked when this is called, before iteration."""
    reader = BagReader(bag)
    try:
        reader.check(topic, IMAGE_TYPES)
    except BaseException:
        reader.close()
        raise

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        try:
            for rec in reader.image_records(topic):
                yield rec.stamp_ns, reader.decode(reader.image_message(rec), topic)
        finally:
            reader.close()
    return frames()


def read_pose_stream(bag: str | Path, topic: str = GT_POSE_TOPIC) -> tuple[np.ndarray, np.ndarray]:
    """``(stamps_ns int64 [N], poses float64 [N, 7])`` of a PoseStamped,
    PoseWithCovarianceStamped or Odometry topic."""
    with BagReader(bag) as reader:
        return reader.poses(topic)


def read_pointcloud_stream(bag: str | Path, topic: str = LIDAR_TOPIC) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(stamp_ns, float32 [P, 4] x y z intensity)`` from a PointCloud2 topic
    (intensity 0 if absent).  The bag and topic are checked before iteration."""
    reader = BagReader(bag)
    try:
        reader.check(topic, (POINTCLOUD2,))
    except BaseException:
        reader.close()
        raise

    def clouds() -> Iterator[tuple[int, np.ndarray]]:
        try:
            for msgtype, _, raw in reader.messages(topic):
                msg = reader.deserialize(raw, msgtype)
                yield stamp_ns(msg.header), pointcloud2_to_xyzi(msg, f"{reader.path} {topic}")
        finally:
            reader.close()
    return clouds()


def pointcloud2_to_xyzi(msg: Any, where: str = "") -> np.ndarray:
    """float32 [P, 4] from a PointCloud2 whose x, y, z (and optional intensity) are FLOAT32."""
    offsets = {f.name: f.offset for f in msg.fields if f.datatype == 7}
    missing = [n for n in ("x", "y", "z") if n not in offsets]
    if missing:
        raise UserError(f"{where}: PointCloud2 lacks float32 fields {missing}")
    n = msg.width * msg.height
    data = np.asarray(msg.data, dtype=np.uint8)
    rows = data[:n * msg.point_step].reshape(n, msg.point_step)
    order = ">f4" if msg.is_bigendian else "<f4"
    out = np.zeros((n, 4), dtype=np.float32)
    for k, name in enumerate(("x", "y", "z", "intensity")):
        if name in offsets:
            out[:, k] = rows[:, offsets[name]:offsets[name] + 4].copy().view(order).reshape(-1)
    return out


def read_camera_info(bag: str | Path, topic: str = CAMERA_INFO_TOPIC) -> dict[str, Any]:
    """The first CameraInfo as ``{width, height, k: float64 [3, 3], frame_id}``."""
    with BagReader(bag) as reader:
        reader.check(topic, (CAMERA_INFO,))
        for msgtype, _, raw in reader.messages(topic):
            msg = reader.deserialize(raw, msgtype)
            return {"width": int(msg.width), "height": int(msg.height),
                    "k": np.asarray(msg.k, dtype=np.float64).reshape(3, 3), "frame_id": msg.header.frame_id}
    raise UserError(f"{bag}: topic {topic!r} has no messages")
