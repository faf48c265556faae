"""The ~/candidates PointCloud2 typed table: layout, round trip, foreign layouts."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from distilvpr_ros.candidates_table import CANDIDATE_DTYPE, candidate_rows, from_pointcloud2, to_pointcloud2

FIELDS = ["x", "y", "z", "qx", "qy", "qz", "qw", "score", "map_id", "map_stamp_sec", "map_stamp_nanosec"]


def example(k: int = 4):
    rng = np.random.default_rng(1)
    poses = np.hstack([rng.normal(0, 100, (k, 3)), np.tile([0, 0, 0.6, 0.8], (k, 1))])
    scores = np.sort(rng.uniform(-1, 1, k).astype(np.float32))[::-1]
    ids = np.arange(k, dtype=np.int64) * 7 + 3
    stamps = np.array([1_700_000_000_123_456_789 + i for i in range(k)], np.int64)
    return poses, scores, ids, stamps


def test_layout_is_the_documented_contract():
    msg = to_pointcloud2(candidate_rows(*example()), Header(frame_id="map"))
    assert [f.name for f in msg.fields] == FIELDS
    types = {f.name: f.datatype for f in msg.fields}
    assert types["x"] == PointField.FLOAT32 and types["score"] == PointField.FLOAT32
    assert types["map_id"] == PointField.UINT32 and types["map_stamp_sec"] == PointField.INT32
    assert types["map_stamp_nanosec"] == PointField.UINT32
    assert msg.height == 1 and msg.width == 4 and msg.point_step == 44 and msg.row_step == 176
    assert len(msg.data) == 176 and msg.header.frame_id == "map" and not msg.is_bigendian


def test_round_trip_preserves_rank_order_and_values():
    poses, scores, ids, stamps = example()
    table = from_pointcloud2(to_pointcloud2(candidate_rows(poses, scores, ids, stamps), Header()))
    np.testing.assert_allclose(table["x"], poses[:, 0], rtol=1e-6)
    np.testing.assert_allclose(table["qw"], 0.8, rtol=1e-6)
    np.testing.assert_array_equal(table["score"], scores)
    np.testing.assert_array_equal(table["map_id"], ids)
    ns = table["map_stamp_sec"].astype(np.int64) * 10**9 + table["map_stamp_nanosec"]
    np.testing.assert_array_equal(ns, stamps)


def test_empty_table():
    msg = to_pointcloud2(candidate_rows(np.zeros((0, 7)), np.zeros(0), np.zeros(0), np.zeros(0)), Header())
    assert msg.width == 0 and len(from_pointcloud2(msg)) == 0


def test_reader_follows_the_field_list_not_our_layout():
    # Big-endian, reordered, padded, two rows: as another tool might write it.
    dt = np.dtype({"names": ["score", "x", "map_id"], "formats": [">f8", ">f4", ">u4"],
                   "offsets": [8, 0, 16], "itemsize": 24})
    data = np.zeros(4, dt)
    data["score"], data["x"], data["map_id"] = [0.9, 0.8, 0.7, 0.6], [1, 2, 3, 4], [10, 11, 12, 13]
    msg = PointCloud2(height=2, width=2, is_bigendian=True, point_step=24, row_step=48)
    msg.fields = [PointField(name="score", offset=8, datatype=PointField.FLOAT64, count=1),
                  PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                  PointField(name="map_id", offset=16, datatype=PointField.UINT32, count=1)]
    msg.data = data.tobytes()
    table = from_pointcloud2(msg)
    np.testing.assert_array_equal(table["map_id"], [10, 11, 12, 13])
    np.testing.assert_allclose(table["score"], [0.9, 0.8, 0.7, 0.6])


def test_reader_rejects_short_data():
    msg = to_pointcloud2(candidate_rows(*example()), Header())
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ValueError, match="too few"):
        from_pointcloud2(msg)


def test_dtype_itemsize():
    assert CANDIDATE_DTYPE.itemsize == 44 and list(CANDIDATE_DTYPE.names) == FIELDS
