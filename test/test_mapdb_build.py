"""Map building from the synthetic dataset and its rosbag, and the `map` CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb import PriorMap
from distilvpr_core.mapdb import cli as map_cli
from distilvpr_core.mapdb.build import bag_stream, build_map, dataset_stream
from distilvpr_core.mapdb.config import MapBuildConfig
from distilvpr_core.mapdb.keyframes import KeyframeSelector, select_keyframes

W, H = 96, 64  # small network input keeps the real student fast


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from distilvpr_core.sim import tiny_dataset
    return tiny_dataset(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    import torch
    from distilvpr_core.models import StudentConfig, build_student, save_checkpoint
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("student")
    return save_checkpoint(d / "student.pt", build_student(StudentConfig(dim=64)), "student",
                           StudentConfig(dim=64), [W, H])


@pytest.fixture(scope="module")
def embedder(student):
    from distilvpr_core.infer import load_embedder
    emb = load_embedder(student, backend="torch", device="cpu")
    yield emb
    emb.close()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    map_cli.add_arguments(parser)
    return map_cli.run(parser.parse_args(list(argv)))


def test_keyframe_selection_by_distance_and_time():
    stamps = np.arange(10, dtype=np.int64) * 100_000_000  # 10 Hz
    poses = np.zeros((10, 7))
    poses[:, 0] = [0, 0.4, 0.8, 1.2, 1.2, 1.2, 1.2, 1.6, 2.0, 2.4]  # stops at 1.2 m for 0.4 s
    assert select_keyframes(stamps, poses, 1.0).tolist() == [0, 3, 9]
    assert select_keyframes(stamps, poses, 0.0, 0.3).tolist() == [0, 3, 6, 9]
    assert select_keyframes(stamps, poses, 0.5, 0.3, combine="and").tolist() == [0, 3, 8]
    assert select_keyframes(stamps, poses, 0.0, 0.0).tolist() == list(range(10))
    # path length, not displacement: driving 0.6 m out and back is 1.2 m travelled
    back = np.zeros((3, 7))
    back[1, 0] = 0.6
    assert KeyframeSelector(1.0).accept(0, back[0]) is True
    sel = KeyframeSelector(1.0)
    assert [sel.accept(i, p) for i, p in enumerate(back)] == [True, False, True]


def test_bag_and_dataset_give_the_same_keyframes(synth, embedder):
    cfg = MapBuildConfig()
    cfg.keyframes.min_distance_m = 5.0  # frames are 3 m apart: every second frame
    from_ds = build_map([dataset_stream(synth, "train_noon")], embedder, cfg, progress=False)
    bag = synth / "bags" / "train_noon"
    from_bag = build_map([bag_stream(bag, "/camera/image_raw", "/ground_truth/pose", 0.05)],
                         embedder, cfg, progress=False)
    assert 8 <= len(from_ds) <= 14
    np.testing.assert_array_equal(from_bag.frame_index, from_ds.frame_index)
    np.testing.assert_array_equal(from_bag.stamps_ns, from_ds.stamps_ns)
    np.testing.assert_allclose(from_bag.poses, from_ds.poses, atol=1e-9)
    np.testing.assert_allclose(from_bag.descriptors, from_ds.descriptors, atol=1e-4)
    assert from_ds.sources[0] == "train_noon" and from_bag.sources[0] == str(bag)
    assert from_ds.fingerprint == embedder.fingerprint and from_ds.dim == 64
    # a revisit of the same place under the same conditions finds the mapped keyframe
    res = from_ds.search(embedder.embed(np.stack([
        _image(synth, "train_noon", int(i)) for i in from_ds.frame_index[:3]])), 1)
    assert res.ids[:, 0].tolist() == [0, 1, 2]


def _image(root: Path, trav: str, i: int) -> np.ndarray:
    from distilvpr_core.data import native
    return native.open_dataset(root).traversal(trav).load_image(i)


def test_bad_bags_name_the_file_and_topic(synth, tmp_path):
    bag = synth / "bags" / "train_noon"
    with pytest.raises(UserError, match=r"topic '/camera/nope' is not in the bag"):
        bag_stream(bag, "/camera/nope", "/ground_truth/pose", 0.05)
    with pytest.raises(UserError, match=r"topic '/pose' is not in the bag"):
        bag_stream(bag, "/camera/image_raw", "/pose", 0.05)
    shifted = _write_bag(tmp_path / "shifted", pose_offset_s=1000.0)
    stream = bag_stream(shifted, "/camera/image_raw", "/ground_truth/pose", 0.05)
    with pytest.raises(UserError, match=r"no image on /camera/image_raw has a pose on "
                                        r"/ground_truth/pose within 0.05 s.*images span 1.000..1.200 s"):
        list(stream.frames)
    empty = _write_bag(tmp_path / "empty", n=0)
    with pytest.raises(UserError, match="has no messages"):
        bag_stream(empty, "/camera/image_raw", "/ground_truth/pose", 0.05)


def _write_bag(path: Path, n: int = 3, pose_offset_s: float = 0.0) -> Path:
    """Images at 1.0, 1.1, ... s; poses at the same stamps + pose_offset_s."""
    from rosbags.rosbag2 import Writer
    from distilvpr_core.data.bagio import typestore
    ts = typestore()
    T = ts.types

    def header(ns: int, frame: str):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)
    with Writer(path, version=9) as w:
        ci = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        cp = w.add_connection("/ground_truth/pose", "geometry_msgs/msg/PoseStamped", typestore=ts)
        for i in range(n):
            t = 1_000_000_000 + i * 100_000_000
            img = T["sensor_msgs/msg/Image"](header=header(t, "camera"), height=4, width=4, encoding="rgb8",
                                             is_bigendian=0, step=12, data=np.full(48, i, np.uint8))
            w.write(ci, t, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            tp = t + int(pose_offset_s * 1e9)
            pose = T["geometry_msgs/msg/PoseStamped"](header=header(tp, "map"), pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(i), y=0.0, z=0.0),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
            w.write(cp, tp, ts.serialize_cdr(pose, "geometry_msgs/msg/PoseStamped"))
    return path


def test_map_cli_build_info_verify_query_merge(synth, student, tmp_path, capsys):
    out = tmp_path / "map"
    assert run_cli("build", "--model", str(student), "--backend", "torch", "--dataset", str(synth),
                   "--traversal", "train_noon", "--out", str(out), "--quiet",
                   "--set", "keyframes.min_distance_m=5", "--set", "index.type=hnsw") == 0
    assert "keyframes from 1 source" in capsys.readouterr().out
    with pytest.raises(UserError, match="--overwrite"):
        run_cli("build", "--model", str(student), "--backend", "torch", "--bag",
                str(synth / "bags" / "test_noon"), "--out", str(out))
    with pytest.raises(UserError, match="index.params.*unknown parameter 'efs'"):
        run_cli("build", "--model", str(student), "--backend", "torch", "--bag",
                str(synth / "bags" / "test_noon"), "--out", str(tmp_path / "x"), "--set", "index.type=hnsw",
                "--set", "index.params={efs: 3}")
    assert run_cli("info", str(out)) == 0
    assert "index hnsw" in capsys.readouterr().out
    assert run_cli("verify", str(out), "--model", str(student), "--backend", "torch") == 0
    assert "model and preprocessing match" in capsys.readouterr().out
    m = PriorMap.load(out)
    np.save(tmp_path / "q.npy", m.descriptors[:2])
    assert run_cli("query", str(out), "--descriptors", str(tmp_path / "q.npy"), "-k", "2", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows if r["rank"] == 1] == [0, 1]
    from distilvpr_core.data import native
    img = native.open_dataset(synth).traversal("train_noon").image_path(0)
    assert run_cli("query", str(out), "--image", str(img), "--model", str(student), "--backend", "torch",
                   "-k", "1", "--json") == 0
    top = json.loads(capsys.readouterr().out)[0]
    assert top["id"] == 0 and top["source"] == "train_noon" and top["score"] > 0.999
    with pytest.raises(UserError, match="needs --model"):
        run_cli("query", str(out), "--image", str(img))
    assert run_cli("merge", str(out), str(out), "--out", str(tmp_path / "merged"), "--index", "flat") == 0
    assert len(PriorMap.load(tmp_path / "merged")) == 2 * len(m)
    (out / "poses.npy").write_bytes(b"garbage")
    with pytest.raises(UserError, match="poses.npy: size 7 bytes"):
        run_cli("verify", str(out))


def test_bag_camera_info_and_dataset_camera_give_the_same_features(synth, embedder):
    """Intrinsics come from the bag's CameraInfo or the dataset's camera model; both
    paths store identical local features (same images, same extractor).  depth.prefer off:
    it would put the dataset's features with a LiDAR point first (the bag has no scans)."""
    cfg = MapBuildConfig()
    cfg.depth.prefer = False
    bag = synth / "bags" / "train_noon"
    from_bag = build_map([bag_stream(bag, "/camera/image_raw", "/ground_truth/pose", 0.05,
                                     "/camera/camera_info")], embedder, cfg, progress=False, features_max=300)
    from_ds = build_map([dataset_stream(synth, "train_noon")], embedder, cfg, progress=False, features_max=300)
    assert from_bag.features.camera == from_ds.features.camera
    assert from_ds.features.camera.fx > 0 and len(from_ds.features) == len(from_ds)
    assert from_ds.features.counts.min() >= 0 and from_ds.features.counts.max() <= 300
    for i in range(len(from_ds)):
        a, b = from_bag.features.get(i), from_ds.features.get(i)
        assert np.array_equal(a.descriptors, b.descriptors) and np.array_equal(a.keypoints, b.keypoints)


def test_cli_refuses_a_bag_without_camera_info_unless_no_features(student, tmp_path):
    bag = _write_bag(tmp_path / "nocam")
    args = ("map", "build", "--model", str(student), "--backend", "torch", "--bag", str(bag), "--quiet")
    with pytest.raises(UserError, match=r"no camera intrinsics for .*nocam.*--no-features"):
        run_cli(*args[1:], "--out", str(tmp_path / "m1"))
    assert not (tmp_path / "m1").exists()
    assert run_cli(*args[1:], "--out", str(tmp_path / "m2"), "--no-features") == 0
    assert PriorMap.load(tmp_path / "m2").features is None


def test_dataset_map_stores_each_features_lidar_point_in_the_map_frame(synth, embedder, tmp_path):
    """A dataset with LiDAR and extrinsics gives every feature a map-frame 3D point (NaN
    without depth) that projects back onto its keypoint through the keyframe's true pose;
    a bag (no scans in the stream) keeps features without points."""
    import json
    from distilvpr_core.features.rotations import pose_to_matrix
    cfg = MapBuildConfig()
    m = build_map([dataset_stream(synth, "train_noon")], embedder, cfg, progress=False,
                  features_max=200, features_kind="sift")
    store = m.features
    assert store.kind == "sift" and store.has_points
    cam_json = json.loads((synth / "dataset.json").read_text())["camera"]
    np.testing.assert_allclose(store.T_base_camera, cam_json["T_base_camera"])
    finite = total = 0
    for kid in range(len(m)):
        f, pts = store.get(kid), store.points(kid)
        ok = np.isfinite(pts[:, 0])
        finite, total = finite + ok.sum(), total + len(ok)
        T = np.linalg.inv(pose_to_matrix(m.poses[kid]) @ pose_to_matrix(store.T_base_camera))
        pc = pts[ok] @ T[:3, :3].T + T[:3, 3]
        c = store.camera
        uv = np.c_[c.fx * pc[:, 0] / pc[:, 2] + c.cx, c.fy * pc[:, 1] / pc[:, 2] + c.cy]
        np.testing.assert_allclose(uv, f.keypoints[ok], atol=1e-2)
        assert np.all(pc[:, 2] > 0)
    assert 0.2 < finite / total < 1.0, finite / total       # sky and far facades have no return
    m.save(tmp_path / "m")
    again = PriorMap.load(tmp_path / "m").features
    assert again.kind == "sift" and np.array_equal(again.points(3), store.points(3), equal_nan=True)
    bag = synth / "bags" / "train_noon"
    from_bag = build_map([bag_stream(bag, "/camera/image_raw", "/ground_truth/pose", 0.05,
                                     "/camera/camera_info")], embedder, cfg, progress=False, features_max=50)
    assert from_bag.features is not None and not from_bag.features.has_points


def test_cli_learned_features_need_a_model_and_the_map_carries_it(synth, student, tmp_path):
    import torch
    from distilvpr_core.features.learned.model import LocalFeatureNet
    from distilvpr_core.localtrain.export import export_local_onnx
    from distilvpr_core.mapdb.features import MODEL_FILE
    args = ("build", "--model", str(student), "--backend", "torch", "--dataset", str(synth),
            "--traversal", "train_noon", "--quiet")
    with pytest.raises(UserError, match="--features learned needs --local-model"):
        run_cli(*args, "--features", "learned", "--out", str(tmp_path / "m0"))
    torch.manual_seed(0)
    onnx_path = export_local_onnx(LocalFeatureNet(width=8), tmp_path / "local.onnx").path
    with pytest.raises(UserError, match="only for --features learned"):
        run_cli(*args, "--local-model", str(onnx_path), "--out", str(tmp_path / "m1"))
    assert not (tmp_path / "m0").exists() and not (tmp_path / "m1").exists()
    assert run_cli(*args, "--features", "learned", "--local-model", str(onnx_path), "--features-max", "50",
                   "--out", str(tmp_path / "m2")) == 0
    m = PriorMap.load(tmp_path / "m2")
    assert m.features.kind == "learned" and (tmp_path / "m2" / MODEL_FILE).read_bytes() == onnx_path.read_bytes()
    assert m.features.counts.max() > 0 and m.features.get(int(m.features.counts.argmax())).descriptors.shape[1] == 128


def test_depth_from_neighbouring_scans_gives_more_points_on_the_right_pixels(synth, embedder, student, tmp_path):
    """depth.frames > 0 (and depth.prefer) store more features with a 3D point, each still
    projecting onto its keypoint through the keyframe's true pose; the map's files and
    schema are those of a single-scan map (old maps and new load alike); bad values of the
    option are UserErrors naming it."""
    from distilvpr_core.features.rotations import pose_to_matrix
    cfg = MapBuildConfig()
    assert (cfg.depth.frames, cfg.depth.prefer) == (8, True)      # the default, chosen on validation
    cfg.depth.frames, cfg.depth.prefer = 0, False
    base = build_map([dataset_stream(synth, "train_noon")], embedder, cfg, progress=False,
                     features_max=100, features_kind="sift")
    cfg.depth.frames, cfg.depth.prefer = 3, True
    dense = build_map([dataset_stream(synth, "train_noon")], embedder, cfg, progress=False,
                      features_max=100, features_kind="sift")

    def with_point(m):
        return sum(int(np.isfinite(m.features.points(k)).all(1).sum()) for k in range(len(m)))
    assert with_point(dense) > with_point(base) > 0
    st = dense.features
    for kid in range(len(dense)):
        pts, kp = st.points(kid), st.get(kid).keypoints
        ok = np.isfinite(pts[:, 0])
        T = np.linalg.inv(pose_to_matrix(dense.poses[kid]) @ pose_to_matrix(st.T_base_camera))
        pc = pts[ok] @ T[:3, :3].T + T[:3, 3]
        c = st.camera
        np.testing.assert_allclose(np.c_[c.fx * pc[:, 0] / pc[:, 2] + c.cx, c.fy * pc[:, 1] / pc[:, 2] + c.cy],
                                   kp[ok], atol=1e-2)
    base.save(tmp_path / "base")
    dense.save(tmp_path / "dense")
    a, b = (json.loads((tmp_path / n / "schema.json").read_text())["features"] for n in ("base", "dense"))
    assert a.keys() == b.keys() and a["files"] == b["files"]
    assert PriorMap.load(tmp_path / "dense").features.has_points
    args = ("build", "--model", str(student), "--backend", "torch", "--dataset", str(synth),
            "--traversal", "train_noon", "--quiet", "--out", str(tmp_path / "m"))
    with pytest.raises(UserError, match="--depth-frames 51"):
        run_cli(*args, "--depth-frames", "51")
    with pytest.raises(UserError, match="depth.frames"):
        run_cli(*args, "--set", "depth.frames=-2")
    assert not (tmp_path / "m").exists()
