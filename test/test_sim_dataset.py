"""The tiny synthetic town end to end: native format, bags, Oxford export, report."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from distilvpr_core.data import bagio, native, oxford_format
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.sim import tiny_dataset
from distilvpr_core.sim.route import quat_to_matrix


@pytest.fixture(scope="module")
def ds_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("synth"))


def test_native_dataset_structure(ds_root):
    ds = native.open_dataset(ds_root)
    roles = [ds.role(t) for t in ds.traversals]
    assert roles.count("train") >= 2 and roles.count("val") >= 1 and roles.count("test") >= 2
    tests = ds.traversals_with_role("test")
    assert len({json.dumps(ds.traversal(t).conditions, sort_keys=True) for t in tests}) >= 2
    h, w = ds.camera["height"], ds.camera["width"]
    for name in ds.traversals:
        tr = ds.traversal(name)
        assert tr.poses.dtype == np.float64 and tr.poses.shape == (len(tr), 7)
        assert np.allclose(np.linalg.norm(tr.poses[:, 3:], axis=1), 1.0)
        assert tr.stamps_ns.dtype == np.int64 and np.all(np.diff(tr.stamps_ns) > 0)
        img = tr.load_image(0)
        assert img.dtype == np.uint8 and img.shape == (h, w, 3)
        pts = tr.load_lidar(len(tr) - 1)
        assert pts.dtype == np.float32 and pts.shape[1] == 4 and len(pts) > 1000
        assert 0.0 <= pts[:, 3].min() and pts[:, 3].max() <= 1.0
        r = np.linalg.norm(pts[:, :3], axis=1)
        assert r.max() <= ds.lidar["max_range_m"] + 0.2 and r.min() >= ds.lidar["min_range_m"] - 0.2
    # consecutive frames are route.spacing_m (3 m in synth_tiny) apart along the centre line;
    # the lane offset makes inner corners shorter and outer ones longer
    step = np.linalg.norm(np.diff(ds.traversal("train_noon").poses[:, :2], axis=0), axis=1)
    assert abs(np.median(step) - 3.0) < 0.1 and step.max() < 4.0


def test_lidar_sees_ground_where_the_pose_says(ds_root):
    """Ground returns lie at z = -sensor height in the lidar frame: poses and scans agree."""
    ds = native.open_dataset(ds_root)
    tr = ds.traversal("test_noon")
    pts = tr.load_lidar(3)
    near = np.hypot(pts[:, 0], pts[:, 1]) < 8
    low = pts[near, 2]
    assert abs(np.median(low[low < -1.0]) + ds.lidar["T_base_lidar"][2]) < 0.2


def test_reader_rejects_bad_directories(tmp_path, ds_root):
    with pytest.raises(UserError, match="no dataset.json"):
        native.open_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "distilvpr-native", "version": 99}))
    with pytest.raises(UserError, match="version 99"):
        native.open_dataset(tmp_path)
    ds = native.open_dataset(ds_root)
    with pytest.raises(UserError, match="no traversal 'nope'"):
        ds.traversal("nope")


def test_bags_match_native(ds_root):
    ds = native.open_dataset(ds_root)
    for name in ds.traversals:
        bag = ds_root / "bags" / name
        assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
        topics = bagio.bag_topics(bag)
        n = len(ds.traversal(name))
        assert topics == {"/camera/image_raw": ("sensor_msgs/msg/Image", n),
                          "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", n),
                          "/lidar/points": ("sensor_msgs/msg/PointCloud2", n),
                          "/odom": ("nav_msgs/msg/Odometry", n),
                          "/ground_truth/pose": ("geometry_msgs/msg/PoseStamped", n)}
    tr = ds.traversal("test_night")
    bag = ds_root / "bags" / "test_night"
    stamps, poses = bagio.read_pose_stream(bag, "/ground_truth/pose")
    assert np.array_equal(stamps, tr.stamps_ns) and np.allclose(poses, tr.poses)
    o_stamps, odom = bagio.read_pose_stream(bag, "/odom")
    assert np.array_equal(o_stamps, tr.stamps_ns) and np.allclose(odom, tr.odom)
    # odometry starts at the origin and drifts, but stays a plausible estimate of the motion
    assert np.allclose(odom[0], [0, 0, 0, 0, 0, 0, 1])
    gt_rel = np.linalg.norm(tr.poses[5, :2] - tr.poses[0, :2])
    assert abs(np.linalg.norm(odom[5, :2]) - gt_rel) < 0.2 * gt_rel
    for k, (stamp, img) in enumerate(bagio.read_image_stream(bag, "/camera/image_raw")):
        assert stamp == tr.stamps_ns[k]
        assert np.array_equal(img, tr.load_image(k))
    clouds = list(bagio.read_pointcloud_stream(bag))
    assert np.array_equal(clouds[2][1], tr.load_lidar(2))
    info = bagio.read_camera_info(bag)
    assert info["frame_id"] == "camera" and info["k"][0, 0] == pytest.approx(ds.camera["fx"])


def _rosbags_frames(bag):
    from rosbags.highlevel import AnyReader
    with AnyReader([bag], default_typestore=bagio.typestore()) as r:
        out = {}
        for conn, t, raw in r.messages():
            msg = r.deserialize(raw, conn.msgtype)
            assert t == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            out.setdefault(conn.topic, []).append(msg.header.frame_id)
        return out


def test_bag_frame_ids(ds_root):
    frames = _rosbags_frames(ds_root / "bags" / "train_noon")
    assert set(frames["/camera/image_raw"]) == {"camera"}
    assert set(frames["/lidar/points"]) == {"lidar"}
    assert set(frames["/odom"]) == {"odom"}
    assert set(frames["/ground_truth/pose"]) == {"map"}


def test_oxford_export_structure(ds_root):
    ds = native.open_dataset(ds_root)
    root = ds_root / "oxford"
    runs = json.loads((root / "runs.json").read_text())
    by_name = {r["name"]: r for r in runs}
    train = oxford_format.read_training_tuples(root / "training_queries_baseline.pickle")
    train_names = ds.traversals_with_role("train")
    pos = np.concatenate([ds.traversal(n).poses[:, [1, 0]] for n in train_names])
    assert len(train) == len(pos)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    for i, t in train.items():
        assert len(by_name[train_names[0]]["run"]) == 19
        assert np.array_equal(t.positives, np.nonzero((d[i] <= 10.0) & (np.arange(len(pos)) != i))[0])
        assert np.array_equal(t.non_negatives, np.nonzero(d[i] <= 50.0)[0])
        assert np.allclose(t.position, pos[i])
        sub = oxford_format.read_submap(root / t.rel_scan_filepath)
        assert sub.dtype == np.float64 and sub.shape == (4096, 3)
        assert np.abs(sub).max() <= 1.0 + 1e-12
    assert (root / "test_queries_baseline.pickle").is_file()
    database = oxford_format.read_evaluation_sets(root / "oxford_evaluation_database.pickle")
    queries = oxford_format.read_evaluation_sets(root / "oxford_evaluation_query.pickle")
    tests = ds.traversals_with_role("test")
    assert len(database) == len(queries) == len(tests)
    for j, qn in enumerate(tests):
        qxy = ds.traversal(qn).poses[:, [1, 0]]
        for i, dn in enumerate(tests):
            if i == j:
                assert i not in queries[j][0]
                continue
            dxy = ds.traversal(dn).poses[:, [1, 0]]
            for k, q in queries[j].items():
                truth = np.nonzero(np.linalg.norm(dxy - qxy[k], axis=1) <= 25.0)[0].tolist()
                assert q[i] == truth
    l2i = oxford_format.load_pickle(root / "lidar2image_ndx.pickle")
    for ts, imgs in list(l2i.items())[:5]:
        matches = list(root.glob(f"images4lidar/*/{imgs[0]}.png"))
        assert len(matches) == 1


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    import os
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({0: os.system}))
    with pytest.raises(UserError, match="not allowed"):
        oxford_format.load_pickle(path)


def test_difficulty_report_saved(ds_root):
    rep = json.loads((ds_root / "difficulty.json").read_text())
    names = native.open_dataset(ds_root).traversals
    assert len(rep["pairs"]) == len(names) * (len(names) - 1)
    for p in rep["pairs"]:
        assert 0.0 <= p["tiny_image_r1"] <= 1.0 and 0.0 <= p["lidar_r1"] <= 1.0
    assert "Recall@1" in (ds_root / "difficulty.txt").read_text()


def test_camera_extrinsics_point_forward(ds_root):
    ds = native.open_dataset(ds_root)
    q = np.array(ds.camera["T_base_camera"][3:])
    r = quat_to_matrix(q)
    # optical z (viewing direction) is roughly base_link +x
    assert r[:, 2] @ np.array([1.0, 0.0, 0.0]) > 0.95


def test_preview_and_conditions_look_different(ds_root):
    """preview.png exists; night frames are much darker than noon frames of the same place."""
    from PIL import Image
    with Image.open(ds_root / "preview.png") as im:
        assert im.size[0] == 2 * native.open_dataset(ds_root).camera["width"]
    ds = native.open_dataset(ds_root)
    noon = np.mean([ds.traversal("test_noon").load_image(i).mean() for i in range(0, 12, 3)])
    night = np.mean([ds.traversal("test_night").load_image(i).mean() for i in range(0, 12, 3)])
    assert night < 0.5 * noon


def test_lidar_baseline_beats_tiny_images_across_day_and_night(ds_root):
    """The point of the world: geometry survives the night, appearance does not."""
    rep = json.loads((ds_root / "difficulty.json").read_text())
    dn = [p for p in rep["pairs"] if "day_night" in p["kinds"]]
    assert dn
    assert np.mean([p["lidar_r1"] for p in dn]) > np.mean([p["tiny_image_r1"] for p in dn]) + 0.1


def test_reader_accepts_minkloc_module_names(tmp_path, monkeypatch):
    """Pickles written by MinkLoc++ (class datasets.oxford.TrainingTuple) load as our TrainingTuple."""
    import sys
    import types

    mod = types.ModuleType("datasets.oxford")

    class TrainingTuple:  # the upstream class, same fields
        def __init__(self, **kw):
            self.__dict__.update(kw)
    TrainingTuple.__module__ = "datasets.oxford"
    TrainingTuple.__qualname__ = "TrainingTuple"
    mod.TrainingTuple = TrainingTuple
    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))
    monkeypatch.setitem(sys.modules, "datasets.oxford", mod)
    t = TrainingTuple(id=0, timestamp=1400505893134088, rel_scan_filepath="oxford/2014-05-19-13-20-57/x/1.bin",
                      positives=np.array([1, 2]), non_negatives=np.array([0, 1, 2]), position=np.zeros(2))
    path = tmp_path / "q.pickle"
    path.write_bytes(pickle.dumps({0: t}, protocol=pickle.HIGHEST_PROTOCOL))
    got = oxford_format.read_training_tuples(path)
    assert isinstance(got[0], oxford_format.TrainingTuple)
    assert got[0].positives.tolist() == [1, 2] and got[0].timestamp == 1400505893134088
