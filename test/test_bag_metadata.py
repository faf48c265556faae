"""Bags we write play on Humble, Jazzy and Kilted: metadata version 5 with
exactly the fields Humble's rosbag2 parses, sqlite3 by default, mcap as an
option; our own reader still reads them."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from distilvpr_core.data import bag_metadata, bagio
from distilvpr_core.foundation.errors import UserError

CAM = {"fx": 50.0, "fy": 50.0, "cx": 15.5, "cy": 11.5}


def _write(path, storage=None):
    args = (path,) if storage is None else (path, storage)
    with bagio.TraversalBagWriter(*args, image_format="raw", camera=CAM) as w:
        for k in range(2):
            pose = np.array([k, 0, 0, 0, 0, 0, 1.0])
            w.write_frame(10**18 + k * 10**8, np.zeros((4, 6, 3), np.uint8), np.zeros((3, 4), np.float32),
                          pose, pose, np.zeros(6))
    return yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def test_default_bag_is_sqlite3_with_humble_readable_metadata(tmp_path):
    info = _write(tmp_path / "b")
    assert info["storage_identifier"] == "sqlite3" and info["relative_file_paths"][0].endswith(".db3")
    assert info["version"] == 5
    assert bag_metadata.humble_problems(tmp_path / "b") == []
    assert set(info) == set(bag_metadata.HUMBLE_KEYS)
    assert info["message_count"] == 10 and len(info["topics_with_message_count"]) == 5
    s, p = bagio.read_pose_stream(tmp_path / "b", "/odom")   # our reader (rosbags) reads version 5
    assert s.tolist() == [10**18, 10**18 + 10**8]


def test_mcap_on_request_also_humble_readable(tmp_path):
    info = _write(tmp_path / "m", "mcap")
    assert info["storage_identifier"] == "mcap" and info["version"] == 5
    assert bag_metadata.humble_problems(tmp_path / "m") == []
    assert len(list(bagio.read_image_stream(tmp_path / "m", bagio.IMAGE_TOPIC))) == 2


def test_humble_check_catches_what_humble_cannot_read(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = bagio.typestore()
    with Writer(tmp_path / "v9", version=9, storage_plugin=StoragePlugin.MCAP) as w:   # the old way
        w.add_connection("/x", "std_msgs/msg/String", typestore=ts)
    problems = " | ".join(bag_metadata.humble_problems(tmp_path / "v9"))
    assert "version 9" in problems and "offered_qos_profiles is not a string" in problems
    with pytest.raises(UserError, match="version 9"):
        bag_metadata.downgrade_to_v5(tmp_path / "v9")
