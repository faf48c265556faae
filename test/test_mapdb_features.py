"""Local features in the prior map: schema entry, checksums, validation, build-time intrinsics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.features import orb, types
from distilvpr_core.mapdb import PriorMap
from distilvpr_core.mapdb.build import FrameStream, feature_camera
from distilvpr_core.mapdb.features import (FILES, FeatureStore, intrinsics_from_camera_info,
                                           intrinsics_from_dataset)

from two_plane_scene import H, K, W, render

CAM = types.Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H)
DIM = 16


def _map_with_features(n: int = 3, limit: int = 300) -> PriorMap:
    rng = np.random.default_rng(0)
    m = PriorMap.create(DIM, "f" * 64, {"input_size": [W, H]})
    poses = np.zeros((n, 7))
    poses[:, 0], poses[:, 6] = np.arange(n) * 10.0, 1.0
    m.add(rng.normal(size=(n, DIM)).astype(np.float32), np.arange(n) * 10**9, poses, "test", np.arange(n))
    store = FeatureStore(CAM, limit)
    for i in range(n):
        store.append(orb.extract(render(i), limit))
    m.attach_features(store)
    return m


def test_features_round_trip_with_schema_entry_and_checksums(tmp_path):
    m = _map_with_features()
    m.save(tmp_path / "map")
    schema = json.loads((tmp_path / "map" / "schema.json").read_text())
    assert schema["features"]["kind"] == "orb" and schema["features"]["camera"]["fx"] == K[0, 0]
    assert set(FILES.values()) <= set(schema["files"])
    back = PriorMap.load(tmp_path / "map")
    assert back.features is not None and back.features.camera == CAM
    for i in range(len(m)):
        a, b = m.features.get(i), back.features.get(i)
        assert len(a) == len(b) > 0 and np.array_equal(a.descriptors, b.descriptors)
        assert np.array_equal(a.keypoints, b.keypoints)


def test_map_bytes_per_keyframe_with_features_under_32_kb(tmp_path):
    m = _map_with_features(n=4)
    m.save(tmp_path / "map")
    total = sum(p.stat().st_size for p in (tmp_path / "map").iterdir())
    assert total / 4 <= 32 * 1024, total / 4


@pytest.mark.parametrize("name", sorted(FILES.values()))
def test_a_corrupted_feature_file_is_named(tmp_path, name):
    _map_with_features().save(tmp_path / "map")
    path = tmp_path / "map" / name
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=name):
        PriorMap.load(tmp_path / "map")


def test_invalid_counts_are_refused_even_without_checksums(tmp_path):
    _map_with_features().save(tmp_path / "map")
    np.save(tmp_path / "map" / FILES["counts"], np.array([1, 2, 9999], np.int32))
    with pytest.raises(UserError, match=FILES["counts"]):
        PriorMap.load(tmp_path / "map", verify_checksums=False)


def test_a_map_without_features_has_no_schema_entry_and_loads(tmp_path):
    m = PriorMap.create(DIM, "f" * 64, {})
    m.add(np.eye(DIM, dtype=np.float32)[:2], np.array([1, 2]), np.tile([0, 0, 0, 0, 0, 0, 1.0], (2, 1)),
          "test", np.arange(2))
    m.save(tmp_path / "map")
    assert "features" not in json.loads((tmp_path / "map" / "schema.json").read_text())
    assert PriorMap.load(tmp_path / "map").features is None


def test_online_adds_keep_feature_rows_equal_to_keyframe_ids():
    m = _map_with_features(n=2)
    kid = int(m.add(np.ones((1, DIM), np.float32), np.array([5]), np.array([[0, 0, 0, 0, 0, 0, 1.0]]),
                    "online", np.array([0]))[0])
    assert len(m.features) == len(m) == 3 and len(m.features.get(kid)) == 0
    m.features.set(kid, orb.extract(render(5), 300))
    assert len(m.features.get(kid)) > 0


def test_missing_intrinsics_at_build_name_the_input_and_the_way_out():
    streams = [FrameStream("bags/no_camera_info", 1, iter(()), None)]
    with pytest.raises(UserError, match=r"no camera intrinsics for bags/no_camera_info.*--no-features"):
        feature_camera(streams)
    other = types.Intrinsics(1.0, 1.0, 0.5, 0.5, 2, 2)
    with pytest.raises(UserError, match="different camera intrinsics"):
        feature_camera([FrameStream("a", 1, iter(()), CAM), FrameStream("b", 1, iter(()), other)])
    assert feature_camera([FrameStream("a", 1, iter(()), CAM)]) == CAM


def test_intrinsics_sources_are_checked():
    cam = intrinsics_from_dataset({"fx": 80.0, "fy": 80.0, "cx": 79.5, "cy": 59.5, "width": 160,
                                   "height": 120, "model": "pinhole", "distortion": "none"}, "ds")
    assert cam == types.Intrinsics(80.0, 80.0, 79.5, 59.5, 160, 120)
    with pytest.raises(UserError, match="--no-features"):
        intrinsics_from_dataset({"width": 160, "height": 120}, "ds")
    with pytest.raises(UserError, match="uncalibrated"):
        intrinsics_from_camera_info({"k": np.zeros((3, 3)), "width": 160, "height": 120}, "bag /ci")
    k = np.array([[80.0, 0, 79.5], [0, 80.0, 59.5], [0, 0, 1]])
    assert intrinsics_from_camera_info({"k": k, "width": 160, "height": 120}, "bag") == cam
