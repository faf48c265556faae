"""rosbag2 I/O with ``rosbags`` (pure Python, no rclpy): write synthetic drives, read streams back.

Topics written per traversal (frame ids in brackets)::

    /camera/image_raw             sensor_msgs/Image rgb8            [camera]  (or)
    /camera/image_raw/compressed  sensor_msgs/CompressedImage png|jpeg [camera]
    /camera/camera_info           sensor_msgs/CameraInfo            [camera]
    /lidar/points                 sensor_msgs/PointCloud2 x y z intensity float32 [lidar]
    /odom                         nav_msgs/Odometry                 [odom -> base_link]
    /ground_truth/pose            geometry_msgs/PoseStamped         [map]

``camera`` is the ROS optical frame (z forward, x right, y down).  Every
message's bag timestamp equals its header stamp, so stamps are monotonic.
Readers raise :class:`UserError` naming the bag and topic for a missing bag,
a missing topic, a wrong message type or an empty topic.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserError

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


def typestore():
    """The rosbags type store for ROS 2 Kilted (standard messages only)."""
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


# ------------------------------------------------------------------ writing
class TraversalBagWriter:
    """Write one traversal as a rosbag2 directory (``with`` block).

    ``storage`` "mcap" | "sqlite3"; ``image_format`` "raw" | "png" | "jpeg";
    ``camera`` the dataset's camera dict (width, height, fx, fy, cx, cy).
    """

    def __init__(self, path: Path, storage: str = "mcap", image_format: str = "raw",
                 camera: dict[str, Any] | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise UserError(f"bag storage {storage!r} is not one of {sorted(plugins)}")
        if image_format not in ("raw", "png", "jpeg"):
            raise UserError(f"bag image format {image_format!r} is not one of ['raw', 'png', 'jpeg']")
        self.ts = typestore()
        self.image_format = image_format
        self.camera = camera or {}
        self._writer = Writer(Path(path), version=9, storage_plugin=plugins[storage])
        self._conn: dict[str, Any] = {}

    def __enter__(self) -> "TraversalBagWriter":
        self._writer.open()
        image_topic, image_type = (IMAGE_TOPIC, IMAGE) if self.image_format == "raw" else (COMPRESSED_TOPIC, COMPRESSED)
        for name, topic, msgtype in (("image", image_topic, image_type), ("info", CAMERA_INFO_TOPIC, CAMERA_INFO),
                                     ("lidar", LIDAR_TOPIC, POINTCLOUD2), ("odom", ODOM_TOPIC, ODOMETRY),
                                     ("gt", GT_POSE_TOPIC, POSE_STAMPED)):
            self._conn[name] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._writer.close()

    def _header(self, stamp_ns: int, frame_id: str):
        t = self.ts.types
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
            sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)), frame_id=frame_id)

    def _pose(self, p: np.ndarray):
        t = self.ts.types
        return t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=float(p[0]), y=float(p[1]), z=float(p[2])),
            orientation=t["geometry_msgs/msg/Quaternion"](x=float(p[3]), y=float(p[4]), z=float(p[5]), w=float(p[6])))

    def _write(self, name: str, stamp_ns: int, msg: Any) -> None:
        conn = self._conn[name]
        self._writer.write(conn, int(stamp_ns), self.ts.serialize_cdr(msg, conn.msgtype))

    def write_frame(self, stamp_ns: int, image: np.ndarray, points: np.ndarray, gt_pose: np.ndarray,
                    odom_pose: np.ndarray, odom_twist: np.ndarray, encoded: bytes | None = None) -> None:
        """Write one frame: image uint8 [H, W, 3] RGB, points float32 [P, 4] (lidar frame),
        gt_pose / odom_pose float64 [7] (x y z qx qy qz qw), odom_twist float64 [6]
        (vx vy vz wx wy wz in base_link).  ``encoded`` reuses already encoded PNG bytes."""
        t = self.ts.types
        h, w, _ = image.shape
        if self.image_format == "raw":
            msg = t[IMAGE](header=self._header(stamp_ns, "camera"), height=h, width=w, encoding="rgb8",
                           is_bigendian=0, step=w * 3, data=np.ascontiguousarray(image, dtype=np.uint8).reshape(-1))
        else:
            data = encoded if (encoded is not None and self.image_format == "png") else _encode(image, self.image_format)
            msg = t[COMPRESSED](header=self._header(stamp_ns, "camera"), format=self.image_format,
                                data=np.frombuffer(data, dtype=np.uint8))
        self._write("image", stamp_ns, msg)
        self._write("info", stamp_ns, self._camera_info(stamp_ns, h, w))
        pts = np.ascontiguousarray(points, dtype="<f4")
        fields = [t["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1)
                  for i, n in enumerate(("x", "y", "z", "intensity"))]
        cloud = t[POINTCLOUD2](header=self._header(stamp_ns, "lidar"), height=1, width=len(pts), fields=fields,
                               is_bigendian=False, point_step=16, row_step=16 * len(pts),
                               data=pts.view(np.uint8).reshape(-1), is_dense=True)
        self._write("lidar", stamp_ns, cloud)
        cov = np.zeros(36)
        cov[[0, 7, 14, 21, 28, 35]] = (0.05, 0.05, 0.01, 0.001, 0.001, 0.005)
        twist = t["geometry_msgs/msg/Twist"](
            linear=t["geometry_msgs/msg/Vector3"](x=float(odom_twist[0]), y=float(odom_twist[1]), z=float(odom_twist[2])),
            angular=t["geometry_msgs/msg/Vector3"](x=float(odom_twist[3]), y=float(odom_twist[4]), z=float(odom_twist[5])))
        odom = t[ODOMETRY](header=self._header(stamp_ns, "odom"), child_frame_id="base_link",
                           pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=self._pose(odom_pose), covariance=cov),
                           twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=cov.copy()))
        self._write("odom", stamp_ns, odom)
        self._write("gt", stamp_ns, t[POSE_STAMPED](header=self._header(stamp_ns, "map"), pose=self._pose(gt_pose)))

    def _camera_info(self, stamp_ns: int, h: int, w: int):
        t = self.ts.types
        c = self.camera
        fx, fy, cx, cy = (float(c.get(k, 0.0)) for k in ("fx", "fy", "cx", "cy"))
        return t[CAMERA_INFO](
            header=self._header(stamp_ns, "camera"), height=h, width=w, distortion_model="plumb_bob",
            d=np.zeros(5), k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]), r=np.eye(3).reshape(-1),
            p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0,
            roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buf, format="PNG", compress_level=3)
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ------------------------------------------------------------------ reading
def _open(bag: str | Path):
    from rosbags.highlevel import AnyReader
    path = Path(bag)
    if not path.exists():
        raise UserError(f"{path}: bag not found (expected a rosbag2 directory or .mcap/.db3 file)")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise UserError(f"{path}: cannot open as rosbag2 ({type(exc).__name__}: {exc})") from None
    return reader


def _connections(reader, bag: Path, topic: str, allowed: tuple[str, ...]):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        topics = sorted({c.topic for c in reader.connections})
        raise UserError(f"{bag}: no topic {topic!r}; the bag has {topics}")
    bad = sorted({c.msgtype for c in conns if c.msgtype not in allowed})
    if bad:
        raise UserError(f"{bag}: topic {topic!r} has type {bad[0]}, expected one of {list(allowed)}")
    if sum(c.msgcount for c in conns) == 0:
        raise UserError(f"{bag}: topic {topic!r} has no messages")
    return conns


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def bag_topics(bag: str | Path) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` of a bag."""
    reader = _open(bag)
    try:
        out: dict[str, tuple[str, int]] = {}
        for c in reader.connections:
            typ, n = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (typ, n + c.msgcount)
        return out
    finally:
        reader.close()


def image_to_rgb(msg: Any, msgtype: str, where: str = "") -> np.ndarray:
    """Decode a rosbags Image/CompressedImage message into uint8 [H, W, 3] RGB."""
    if msgtype == COMPRESSED:
        from PIL import Image
        with Image.open(io.BytesIO(bytes(msg.data))) as im:
            return np.asarray(im.convert("RGB"))
    enc = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}
    if enc not in channels:
        raise UserError(f"{where}: image encoding {msg.encoding!r} is not supported; use one of {sorted(channels)}")
    c = channels[enc]
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    img = rows[:, :msg.width * c].reshape(msg.height, msg.width, c)
    if c == 1:
        return np.repeat(img, 3, axis=2)
    if enc.startswith("bgr"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def read_image_stream(bag: str | Path, topic: str = IMAGE_TOPIC) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(stamp_ns int, image uint8 [H, W, 3] RGB)`` in bag order; header stamps.

    Accepts sensor_msgs/Image (rgb8/bgr8/rgba8/bgra8/mono8) and CompressedImage.
    The bag and topic are checked when this is called, before iteration.
    """
    bag = Path(bag)
    reader = _open(bag)
    try:
        conns = _connections(reader, bag, topic, (IMAGE, COMPRESSED))
    except BaseException:
        reader.close()
        raise

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        try:
            for conn, _, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                yield _stamp_ns(msg.header), image_to_rgb(msg, conn.msgtype, f"{bag} {topic}")
        finally:
            reader.close()
    return frames()


def read_pose_stream(bag: str | Path, topic: str = GT_POSE_TOPIC) -> tuple[np.ndarray, np.ndarray]:
    """``(stamps_ns int64 [N], poses float64 [N, 7] x y z qx qy qz qw)`` of a PoseStamped or Odometry topic."""
    bag = Path(bag)
    reader = _open(bag)
    try:
        conns = _connections(reader, bag, topic, (POSE_STAMPED, ODOMETRY))
        stamps, poses = [], []
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            pose = msg.pose.pose if conn.msgtype == ODOMETRY else msg.pose
            stamps.append(_stamp_ns(msg.header))
            poses.append((pose.position.x, pose.position.y, pose.position.z, pose.orientation.x,
                          pose.orientation.y, pose.orientation.z, pose.orientation.w))
        return np.asarray(stamps, dtype=np.int64), np.asarray(poses, dtype=np.float64).reshape(-1, 7)
    finally:
        reader.close()


def read_pointcloud_stream(bag: str | Path, topic: str = LIDAR_TOPIC) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(stamp_ns, float32 [P, 4] x y z intensity)`` from a PointCloud2 topic (intensity 0 if absent).

    The bag and topic are checked when this is called, before iteration.
    """
    bag = Path(bag)
    reader = _open(bag)
    try:
        conns = _connections(reader, bag, topic, (POINTCLOUD2,))
    except BaseException:
        reader.close()
        raise

    def clouds() -> Iterator[tuple[int, np.ndarray]]:
        try:
            for conn, _, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                yield _stamp_ns(msg.header), pointcloud2_to_xyzi(msg, f"{bag} {topic}")
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
    bag = Path(bag)
    reader = _open(bag)
    try:
        conns = _connections(reader, bag, topic, (CAMERA_INFO,))
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            return {"width": int(msg.width), "height": int(msg.height),
                    "k": np.asarray(msg.k, dtype=np.float64).reshape(3, 3), "frame_id": msg.header.frame_id}
        raise UserError(f"{bag}: topic {topic!r} has no messages")
    finally:
        reader.close()
