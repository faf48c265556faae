"""bagio readers on hand-written bags: encodings, storage plugins and user errors."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.data import bagio
from distilvpr_core.foundation.errors import UserError

CAM = {"fx": 50.0, "fy": 50.0, "cx": 15.5, "cy": 11.5}


def _frames(n=3):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(n)]
    pts = [rng.normal(size=(50, 4)).astype(np.float32) for _ in range(n)]
    poses = np.tile([1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0], (n, 1))
    poses[:, 0] += np.arange(n)
    return imgs, pts, poses


@pytest.mark.parametrize("storage, fmt", [("sqlite3", "raw"), ("mcap", "png"), ("sqlite3", "jpeg")])
def test_roundtrip(tmp_path, storage, fmt):
    imgs, pts, poses = _frames()
    stamps = [10**18 + k * 10**8 for k in range(3)]
    with bagio.TraversalBagWriter(tmp_path / "b", storage, fmt, CAM) as w:
        for k in range(3):
            w.write_frame(stamps[k], imgs[k], pts[k], poses[k], poses[k], np.zeros(6))
    topic = bagio.IMAGE_TOPIC if fmt == "raw" else bagio.COMPRESSED_TOPIC
    got = list(bagio.read_image_stream(tmp_path / "b", topic))
    assert [s for s, _ in got] == stamps
    for (s, img), ref in zip(got, imgs):
        if fmt == "jpeg":
            assert img.shape == ref.shape and np.abs(img.astype(int) - ref).mean() < 60
        else:
            assert np.array_equal(img, ref)
    s, p = bagio.read_pose_stream(tmp_path / "b", "/odom")
    assert s.tolist() == stamps and np.allclose(p, poses)
    clouds = list(bagio.read_pointcloud_stream(tmp_path / "b"))
    assert np.array_equal(clouds[1][1], pts[1])


def test_bgr_and_mono_images_become_rgb(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = bagio.typestore()
    t = ts.types
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    with Writer(tmp_path / "b", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/img", bagio.IMAGE, typestore=ts)
        for k, (enc, data, step) in enumerate([("bgr8", rgb[:, :, ::-1], 9), ("mono8", rgb[:, :, 0], 3)]):
            hdr = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=k, nanosec=0), frame_id="c")
            msg = t[bagio.IMAGE](header=hdr, height=2, width=3, encoding=enc, is_bigendian=0, step=step,
                                 data=np.ascontiguousarray(data).reshape(-1))
            w.write(conn, k * 10**9, ts.serialize_cdr(msg, bagio.IMAGE))
    (_, a), (_, b) = list(bagio.read_image_stream(tmp_path / "b", "/img"))
    assert np.array_equal(a, rgb)
    assert np.array_equal(b, np.repeat(rgb[:, :, :1], 3, axis=2))


def test_errors_name_bag_and_topic(tmp_path):
    imgs, pts, poses = _frames(1)
    with bagio.TraversalBagWriter(tmp_path / "b", "mcap", "raw", CAM) as w:
        w.write_frame(10**18, imgs[0], pts[0], poses[0], poses[0], np.zeros(6))
    with pytest.raises(UserError, match=r"b: topic '/nope' is not in the bag \(topics in the bag: /camera"):
        bagio.read_image_stream(tmp_path / "b", "/nope")
    with pytest.raises(UserError, match="'/lidar/points' has type sensor_msgs/msg/PointCloud2"):
        bagio.read_pose_stream(tmp_path / "b", "/lidar/points")
    with pytest.raises(UserError, match="bag not found"):
        bagio.read_pose_stream(tmp_path / "missing", "/odom")
    with bagio.TraversalBagWriter(tmp_path / "empty", "mcap", "raw", CAM):
        pass
    with pytest.raises(UserError, match="'/odom' has no messages"):
        bagio.read_pose_stream(tmp_path / "empty", "/odom")
