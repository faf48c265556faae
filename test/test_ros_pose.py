"""A bag of the synthetic town through the real localizer node: ~/pose against ground truth.

The tiny town (config/synth_tiny.yaml) is rendered with its rosbags; a map is
built from the ``train_noon`` traversal with a random-init student, RootSIFT
features and their LiDAR 3D points; the ``test_noon`` bag (another drive, 0.5 m
to the side) is replayed through the node frame by frame with its odometry.
Every ~/pose the node publishes must be the metric robot pose: within 1 m and
5 deg of the bag's ground truth, the same pose the offline engine computes
for that frame, with a covariance that is a valid 6x6.  ~/relative_pose is
then metric too (not a unit vector).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2

from distilvpr_core.data.bags import GT_POSE_TOPIC, IMAGE_TOPIC, ODOM_TOPIC, BagReader
from distilvpr_core.features.rotations import pose_to_matrix, rotation_angle_deg
from distilvpr_ros import launch_args, synthetic_assets
from distilvpr_ros.outputs import ns_to_stamp, stamp_to_ns
from distilvpr_ros.replay.node_process import LocalizerProcess, local_ros_client, spin_until

# Every frame a query (the drive is 3 m per frame, 0.375 s apart; one step is shorter than 1 m).
PARAMS = {"exclude_recent_s": 0.0, "min_interval_s": 0.0, "min_distance_m": 0.0, "intra_op_threads": 1}


@pytest.fixture(scope="module")
def town(tmp_path_factory, repo_root):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.mapdb.build import build_map, dataset_stream
    from distilvpr_core.mapdb.config import MapBuildConfig
    from distilvpr_core.sim.cli import main as synth_main
    root = tmp_path_factory.mktemp("town_pose")
    assert synth_main(["--config", str(repo_root / "config" / "synth_tiny.yaml"), "--out", str(root / "ds"),
                       "--set", "output.oxford=false", "--set", "output.difficulty_report=false",
                       "--no-progress"]) == 0
    _, model = synthetic_assets.export_random_student(root, input_size=(160, 120), dim=64)
    emb = load_embedder(model, intra_op_threads=1)
    m = build_map([dataset_stream(root / "ds", "train_noon")], emb, MapBuildConfig(), progress=False,
                  features_max=400, features_kind="sift")
    assert m.features.has_points
    m.save(root / "map")
    emb.close()
    return {"model": model, "map": root / "map", "bag": root / "ds" / "bags" / "test_noon"}


def _offline_poses(town) -> dict[int, np.ndarray]:
    """stamp -> pose of every frame the offline engine localizes (same settings, same odometry)."""
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.localize.engine import LocalizationEngine
    from distilvpr_core.localize.settings import settings_from_file
    from distilvpr_core.mapdb import PriorMap
    emb = load_embedder(town["model"], intra_op_threads=1)
    s = settings_from_file(launch_args.default_params_file(), PARAMS)
    eng = LocalizationEngine(emb, PriorMap.load(town["map"]), s)
    out = {}
    with BagReader(town["bag"]) as reader:
        ost, opo = reader.poses(ODOM_TOPIC)
        for rec in reader.image_records(IMAGE_TOPIC):
            eng.add_odometry(rec.stamp_ns, opo[int(np.argmin(np.abs(ost - rec.stamp_ns)))])
            q = eng.process(reader.image_message(rec), rec.stamp_ns).query
            if q is not None and q.localized:
                out[rec.stamp_ns] = q.pose
    emb.close()
    return out


@pytest.mark.slow
def test_bag_through_the_node_publishes_metric_poses_matching_ground_truth(town, tmp_path):
    from rclpy.serialization import deserialize_message
    with BagReader(town["bag"]) as reader:
        records = list(reader.image_records(IMAGE_TOPIC))
        ost, opo = reader.poses(ODOM_TOPIC)
        gst, gpo = reader.poses(GT_POSE_TOPIC)
    ros_args = launch_args.node_arguments({"map": str(town["map"]), "model": str(town["model"])})
    ros_args += [a for k, v in PARAMS.items() for a in ("-p", f"{k}:={v}")]
    with local_ros_client("pose_client") as node:
        proc = LocalizerProcess(ros_args, tmp_path / "node.log")
        poses: list[PoseWithCovarianceStamped] = []
        relative: list[PoseWithCovarianceStamped] = []
        cands: list[PointCloud2] = []
        try:
            rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(PoseWithCovarianceStamped, "/localizer/pose", poses.append, rel)
            node.create_subscription(PoseWithCovarianceStamped, "/localizer/relative_pose", relative.append, rel)
            node.create_subscription(PointCloud2, "/localizer/candidates", cands.append, rel)
            img_pub = node.create_publisher(Image, "/image", qos_profile_sensor_data)
            odom_pub = node.create_publisher(Odometry, "/odom", rel)
            spin_until(node, lambda: img_pub.get_subscription_count() > 0 and odom_pub.get_subscription_count() > 0
                       and node.count_publishers("/localizer/pose") > 0, 30, "matching", proc)
            for i, rec in enumerate(records):
                od = Odometry()
                od.header.stamp = ns_to_stamp(rec.stamp_ns)
                x, y, z, qx, qy, qz, qw = (float(v) for v in opo[int(np.argmin(np.abs(ost - rec.stamp_ns)))])
                p, q = od.pose.pose.position, od.pose.pose.orientation
                p.x, p.y, p.z, q.x, q.y, q.z, q.w = x, y, z, qx, qy, qz, qw
                msg = deserialize_message(rec.raw, Image)
                while True:  # resend the first frame until the best-effort link is up
                    odom_pub.publish(od)
                    time.sleep(0.05)  # the odometry reaches the node before its frame
                    img_pub.publish(msg)
                    try:
                        spin_until(node, lambda s=rec.stamp_ns: any(stamp_to_ns(c.header.stamp) == s for c in cands),
                                   3.0 if i == 0 else 30.0, f"candidates for frame {i}", proc)
                        break
                    except TimeoutError:
                        if i > 0:
                            raise
            # ~/pose and ~/relative_pose go out before ~/candidates; a short spin collects stragglers.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.1)
        finally:
            rc = proc.stop()
    assert rc == 0 and "Traceback" not in proc.output()
    offline = _offline_poses(town)
    assert len(poses) >= 1 and len(poses) == len(offline), (len(poses), sorted(offline))
    for msg in poses:
        stamp = stamp_to_ns(msg.header.stamp)
        assert msg.header.frame_id == "map"
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        est = np.array([p.x, p.y, p.z, o.x, o.y, o.z, o.w])
        np.testing.assert_allclose(est, offline[stamp], atol=1e-6)   # transport only
        truth = gpo[int(np.argmin(np.abs(gst - stamp)))]
        T, G = pose_to_matrix(est), pose_to_matrix(truth)
        assert np.linalg.norm(T[:3, 3] - G[:3, 3]) < 1.0, (stamp, est, truth)
        assert rotation_angle_deg(T[:3, :3].T @ G[:3, :3]) < 5.0
        cov = np.asarray(msg.pose.covariance).reshape(6, 6)
        assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    # ~/relative_pose of a metric match carries metres, not a unit direction.
    assert len(relative) == len(poses)
    dist = [np.linalg.norm([r.pose.pose.position.x, r.pose.pose.position.y, r.pose.pose.position.z])
            for r in relative]
    assert not np.allclose(dist, 1.0, atol=1e-3)


def test_map_to_odom_puts_odometry_on_the_metric_pose():
    from std_msgs.msg import Header
    from distilvpr_core.features.rotations import rotation_to_quat
    from distilvpr_ros.outputs import map_to_odom, robot_pose
    a = np.radians(30.0)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    pose_map = np.array([10.0, 5.0, 0.2, *rotation_to_quat(Rz)])
    pose_odom = np.array([3.0, -1.0, 0.0, 0, 0, np.sin(0.1), np.cos(0.1)])
    msg = map_to_odom(Header(frame_id="map"), "odom", pose_map, pose_odom)
    assert msg.header.frame_id == "map" and msg.child_frame_id == "odom"
    t, r = msg.transform.translation, msg.transform.rotation
    T = pose_to_matrix(np.array([t.x, t.y, t.z, r.x, r.y, r.z, r.w]))
    np.testing.assert_allclose(T @ pose_to_matrix(pose_odom), pose_to_matrix(pose_map), atol=1e-9)
    cov = np.diag(np.arange(1.0, 7.0))
    out = robot_pose(Header(frame_id="map"), pose_map, cov)
    assert np.allclose(np.reshape(out.pose.covariance, (6, 6)), cov) and out.pose.pose.position.x == 10.0


def test_publish_tf_needs_tf2_msgs_and_says_so():
    from distilvpr_core.foundation.errors import UserError
    from distilvpr_ros.outputs import tf_message_type
    try:
        import tf2_msgs.msg  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="publish_tf.*tf2_msgs.*publish_tf:=false"):
            tf_message_type()
    else:
        assert tf_message_type().__name__ == "TFMessage"


@pytest.mark.slow
def test_replay_eval_through_the_node_reports_pose_errors_like_offline(town, tmp_path):
    # The ROS report scored only ~/candidates: no pose errors or threshold shares from the node.
    import json
    from distilvpr_ros.replay.replay_eval import run
    from test_replay_helpers import eval_args
    out = tmp_path / "cmp"
    argv = ["--bag", str(town["bag"]), "--map", str(town["map"]), "--model", str(town["model"]),
            "--out", str(out), "--compare-offline", "--pacing", "lockstep"]
    for k, v in PARAMS.items():
        argv += ["--node-param", f"{k}:={v}"]
    assert run(eval_args(*argv)) == 0
    ros = json.loads((out / "ros" / "metrics.json").read_text())["metrics"]["pose"]
    off = json.loads((out / "offline" / "metrics.json").read_text())["metrics"]["pose"]
    assert list(ros["stages"]) == ["published"]          # the node shows only what it publishes
    r, o = ros["stages"]["published"], off["stages"]["published"]
    assert r["poses"] >= 1 and r["poses"] == o["poses"] and r["revisits"] == o["revisits"]
    for key in ("share_of_poses", "share_of_revisits", "translation_m", "rotation_deg"):
        assert r[key] == pytest.approx(o[key], abs=1e-6), key
    assert r["wrong_closures"] == o["wrong_closures"] == 0
    assert set(r["share_of_poses"]) == {"0.25m_2deg", "0.5m_5deg", "5m_10deg"}
    assert r["share_of_poses"]["5m_10deg"] == 1.0
    report = (out / "ros" / "report.md").read_text()
    assert "## Metric pose" in report and (out / "ros" / "pose_error_cdf.png").stat().st_size > 0
