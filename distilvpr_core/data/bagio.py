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
Reading is :mod:`distilvpr_core.data.bags` (the one bag reader); its
functions are re-exported here for the callers of this module.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError
from .bag_metadata import downgrade_to_v5
from .bags import (CAMERA_INFO, CAMERA_INFO_TOPIC, COMPRESSED, COMPRESSED_TOPIC,  # noqa: F401
                   GT_POSE_TOPIC, IMAGE, IMAGE_TOPIC, LIDAR_TOPIC, ODOM_TOPIC, ODOMETRY, POINTCLOUD2,
                   POSE_STAMPED, bag_topics, pointcloud2_to_xyzi, read_camera_info, read_image_stream,
                   read_pointcloud_stream, read_pose_stream, typestore)


# ------------------------------------------------------------------ writing
class TraversalBagWriter:
    """Write one traversal as a rosbag2 directory (``with`` block).

    ``storage`` "sqlite3" (default: what every ROS 2 distribution reads out of
    the box) | "mcap"; ``image_format`` "raw" | "png" | "jpeg"; ``camera`` the
    dataset's camera dict (width, height, fx, fy, cx, cy).  The metadata is
    written as version 5, which Humble, Jazzy and Kilted all read
    (:mod:`distilvpr_core.data.bag_metadata`).
    """

    def __init__(self, path: Path, storage: str = "sqlite3", image_format: str = "raw",
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
        self.path = Path(path)
        # 8: the oldest rosbags writes (QoS as a string); downgraded to 5 on close.
        self._writer = Writer(self.path, version=8, storage_plugin=plugins[storage])
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
        downgrade_to_v5(self.path)

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
            reuse = encoded is not None and self.image_format == "png"
            data = encoded if reuse else _encode(image, self.image_format)
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
            linear=t["geometry_msgs/msg/Vector3"](x=float(odom_twist[0]), y=float(odom_twist[1]),
                                                  z=float(odom_twist[2])),
            angular=t["geometry_msgs/msg/Vector3"](x=float(odom_twist[3]), y=float(odom_twist[4]),
                                                   z=float(odom_twist[5])))
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
