"""~/relative_pose from the real node process: published for a verified match only."""
from __future__ import annotations

import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped

from distilvpr_core.localize.geometry import rotation_to_quat
from distilvpr_core.loopeval.stages import _quat_matrix
from distilvpr_ros import launch_args, synthetic_assets
from distilvpr_ros.replay.node_process import LocalizerProcess, local_ros_client, spin_until

from test_ros_localizer_node import Client, raw_image, stop_cleanly
from two_plane_scene import H, W, build_scene_map, render, rot_y, rotation_error_deg

NOW_NS = 1_800_000_000 * 10**9


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    tmp = tmp_path_factory.mktemp("relpose")
    assets = synthetic_assets.build(tmp / "assets", places=2, image_size=(W, H))
    emb = load_embedder(assets.model, intra_op_threads=1)
    try:
        return assets.model, build_scene_map(emb, tmp / "map")
    finally:
        emb.close()


def test_relative_pose_for_a_verified_match_and_none_for_a_black_frame(scene, tmp_path):
    model, map_dir = scene
    args = launch_args.node_arguments({"map": str(map_dir), "model": str(model)}) + [
        "-p", "intra_op_threads:=1", "-p", "min_interval_s:=0.0", "-p", "top_k:=4",
        "-p", "verify_top_k:=4", "-p", "score_threshold:=-1.0", "-p", "relative_scale_sigma_m:=50.0"]
    proc = LocalizerProcess(args, tmp_path / "node.log")
    with local_ros_client("relpose_test_client") as ros:
        rel: list = []
        sub = ros.create_subscription(PoseWithCovarianceStamped, "/localizer/relative_pose", rel.append, 10)
        client = Client(ros)
        try:
            client.wait_matched(proc)
            R = rot_y(6.0)
            _, table = client.query(raw_image(render(12, R, np.array([0.6, 0.05, 0.3])), NOW_NS), proc)
            assert table["map_id"][0] == 2
            spin_until(ros, lambda: len(rel) == 1 and len(client.got["loop"]) == 1, 10,
                       "one relative pose and one loop closure", proc)
            msg = rel[0]
            assert msg.header.frame_id == "keyframe_2" and msg.header.stamp.sec == NOW_NS // 10**9
            o = msg.pose.pose.orientation
            est = _quat_matrix(np.array([o.x, o.y, o.z, o.w]))
            assert rotation_error_deg(est, R) < 5.0
            p = msg.pose.pose.position
            d = np.array([p.x, p.y, p.z])
            cov = np.array(msg.pose.covariance).reshape(6, 6)
            assert np.isclose(np.linalg.norm(d), 1.0) and np.isclose(d @ cov[:3, :3] @ d, 2500.0, rtol=1e-3)
            assert np.allclose(rotation_to_quat(est), [o.x, o.y, o.z, o.w], atol=1e-6)
            # A black frame: candidates are answered, nothing is closed or verified.
            client.query(raw_image(np.zeros((H, W, 3), np.uint8), NOW_NS + 10**9), proc)
            d = client.diag(proc, lambda d: d.get("queries") == "2")
            assert d.get("rejected_geometry") == "1" and len(rel) == 1 and len(client.got["loop"]) == 1
        finally:
            ros.destroy_subscription(sub)
            client.close()
            stop_cleanly(proc)
