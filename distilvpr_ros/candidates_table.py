"""``~/candidates``: sensor_msgs/PointCloud2 used as a typed table.

One row per candidate in rank order; the fields (all little-endian, 44 bytes
per row) are::

    x y z            float32  map pose position, metres, map frame
    qx qy qz qw      float32  map pose orientation (unit quaternion)
    score            float32  inner product of L2-normalised descriptors, [-1, 1]
    map_id           uint32   keyframe id in the prior map
    map_stamp_sec    int32    keyframe stamp (builtin_interfaces/Time.sec)
    map_stamp_nanosec uint32  keyframe stamp (builtin_interfaces/Time.nanosec)

x y z are float32 so that RViz's PointCloud2 display shows the table as
points (float32 is ~1 cm at 100 km from the map origin).  ``header.stamp`` is
the query image stamp and ``header.frame_id`` the map frame.  The reader
decodes any PointCloud2 from its own field list (any order, any endianness),
so it also reads tables written by other tools.
"""
from __future__ import annotations

from typing import Any

import numpy as np

CANDIDATE_DTYPE = np.dtype([
    ("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
    ("qx", "<f4"), ("qy", "<f4"), ("qz", "<f4"), ("qw", "<f4"),
    ("score", "<f4"), ("map_id", "<u4"),
    ("map_stamp_sec", "<i4"), ("map_stamp_nanosec", "<u4"),
])

# sensor_msgs/PointField datatype constants <-> numpy kinds.
_POINTFIELD_TO_NUMPY = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_NUMPY_TO_POINTFIELD = {v: k for k, v in _POINTFIELD_TO_NUMPY.items()}


def candidate_rows(poses: np.ndarray, scores: np.ndarray, ids: np.ndarray,
                   stamps_ns: np.ndarray) -> np.ndarray:
    """Pack K candidates into a CANDIDATE_DTYPE array [K].

    poses float64 [K, 7] (x y z qx qy qz qw, map frame), scores float32 [K],
    ids int64 [K] (>= 0), stamps_ns int64 [K] (nanoseconds since the epoch).
    """
    rows = np.zeros(len(scores), CANDIDATE_DTYPE)
    for i, name in enumerate(("x", "y", "z", "qx", "qy", "qz", "qw")):
        rows[name] = poses[:, i]
    rows["score"] = scores
    rows["map_id"] = ids
    stamps = np.asarray(stamps_ns, np.int64)
    rows["map_stamp_sec"] = stamps // 1_000_000_000
    rows["map_stamp_nanosec"] = stamps % 1_000_000_000
    return rows


def to_pointcloud2(rows: np.ndarray, header: Any) -> Any:
    """CANDIDATE_DTYPE array [K] -> sensor_msgs/PointCloud2 (height 1, width K)."""
    from sensor_msgs.msg import PointCloud2, PointField

    rows = np.asarray(rows, CANDIDATE_DTYPE)
    msg = PointCloud2()
    msg.header = header
    msg.height = 1
    msg.width = len(rows)
    msg.fields = [PointField(name=name, offset=CANDIDATE_DTYPE.fields[name][1],
                             datatype=_NUMPY_TO_POINTFIELD[CANDIDATE_DTYPE[name].str[1:]], count=1)
                  for name in CANDIDATE_DTYPE.names]
    msg.is_bigendian = False
    msg.point_step = CANDIDATE_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.data = rows.tobytes()
    msg.is_dense = True
    return msg


def from_pointcloud2(msg: Any) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> numpy structured array [height * width].

    Field names and types come from ``msg.fields``; ``count > 1`` fields
    become sub-arrays.  Raises ValueError if the layout does not fit the data.
    """
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _POINTFIELD_TO_NUMPY:
            raise ValueError(f"field {f.name!r}: unknown PointField datatype {f.datatype}")
        names.append(f.name)
        base = order + _POINTFIELD_TO_NUMPY[f.datatype]
        formats.append((base, (f.count,)) if f.count > 1 else base)
        offsets.append(f.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": msg.point_step})
    n = msg.height * msg.width
    if n and (msg.row_step < msg.width * msg.point_step or len(msg.data) < msg.row_step * msg.height):
        raise ValueError(f"PointCloud2 data has {len(msg.data)} bytes, too few for "
                         f"{msg.height} x {msg.width} points of {msg.point_step} bytes")
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    rows = [np.frombuffer(raw[r * msg.row_step: r * msg.row_step + msg.width * msg.point_step].tobytes(),
                          dtype) for r in range(msg.height)]
    out = np.concatenate(rows) if rows else np.zeros(0, dtype)
    # Native byte order so callers can compute on it directly.
    return out.astype(out.dtype.newbyteorder("="))
