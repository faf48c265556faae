"""A synthetic-town traversal through the node with its default parameters.

The tiny town (config/synth_tiny.yaml) is rendered, a map is built from the
``test_noon`` traversal with a random-init student, and the same traversal
is replayed as a later session: camera frames plus odometry 1 s apart, the
node running on config/localize.yaml (gating by time and distance on).
Every queried frame's place is in the map, so its top-1 must be that
keyframe; frames within 1 m of the last query (where the route's end meets
its start) must be gated instead.
"""
from __future__ import annotations


import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, PointCloud2

from distilvpr_ros import launch_args, synthetic_assets
from distilvpr_ros.candidates_table import from_pointcloud2
from distilvpr_ros.replay.node_process import LocalizerProcess, diagnostics_values, local_ros_client, spin_until
from distilvpr_ros.outputs import ns_to_stamp, stamp_to_ns

TRAVERSAL = "test_noon"


@pytest.fixture(scope="module")
def town(tmp_path_factory, repo_root):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.data import native
    from distilvpr_core.sim.cli import main as synth_main
    root = tmp_path_factory.mktemp("town")
    rc = synth_main(["--config", str(repo_root / "config" / "synth_tiny.yaml"), "--out", str(root / "ds"),
                     "--set", "output.bags=false", "--set", "output.oxford=false",
                     "--set", "output.difficulty_report=false", "--no-progress"])
    assert rc == 0
    trav = native.open_dataset(root / "ds").traversal(TRAVERSAL)
    images = np.stack([trav.load_image(i) for i in range(len(trav))])
    _, model = synthetic_assets.export_random_student(root, input_size=(160, 120), dim=64)
    synthetic_assets.build_map(root / "map", model, images, trav.poses, trav.stamps_ns, TRAVERSAL)
    return {"model": model, "map": root / "map", "images": images, "poses": trav.poses}


@pytest.mark.slow
def test_replayed_traversal_finds_every_frame(town, tmp_path):
    with local_ros_client("town_client") as node:
        proc = LocalizerProcess(launch_args.node_arguments({"map": str(town["map"]), "model": str(town["model"])})
                                + ["-p", "intra_op_threads:=1", "-p", "diagnostics_period_s:=0.2"],
                                tmp_path / "node.log")
        cands, diags = [], []
        try:
            node.create_subscription(PointCloud2, "/localizer/candidates", cands.append, 50)
            node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 50)

            def diag(key: str) -> int:
                vals = diagnostics_values(diags[-1]) if diags else None
                return int(vals.get(key, 0)) if vals else 0
            img_pub = node.create_publisher(Image, "/image", qos_profile_sensor_data)
            odom_pub = node.create_publisher(Odometry, "/odom", qos_profile_sensor_data)
            spin_until(node, lambda: img_pub.get_subscription_count() > 0 and odom_pub.get_subscription_count() > 0
                       and node.count_publishers("/localizer/candidates") > 0, 30, "matching", proc)
            t0 = 1_900_000_000 * 10**9
            queried, gated, last_xyz = [], [], None
            for i, rgb in enumerate(town["images"]):
                stamp = t0 + i * 10**9
                p = town["poses"][i]
                # Default gating: 1 s apart passes min_interval_s 0.5; min_distance_m 1.0 from the
                # last query (the route's end overlaps its start by a few tenths of a metre).
                expect_query = last_xyz is None or np.linalg.norm(p[:3] - last_xyz) >= 1.0
                od = Odometry()
                od.header.stamp = ns_to_stamp(stamp)
                od.pose.pose.position.x, od.pose.pose.position.y, od.pose.pose.position.z = (float(v) for v in p[:3])
                (od.pose.pose.orientation.x, od.pose.pose.orientation.y,
                 od.pose.pose.orientation.z, od.pose.pose.orientation.w) = (float(v) for v in p[3:])
                msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
                msg.header.stamp = ns_to_stamp(stamp)
                msg.data = rgb.tobytes()
                # Until the node has matched our publishers a best-effort message can be lost: resend
                # the first one (same stamp, so at most one answer counts) until it is answered.
                while True:
                    # The node must hold this frame's odometry before the frame, as a robot's
                    # high-rate odometry would ensure.
                    before = diag("odom_received")
                    odom_pub.publish(od)
                    try:
                        spin_until(node, lambda b=before: diag("odom_received") > b, 2.0 if i == 0 else 20.0,
                                   f"odometry {i} to be taken", proc)
                    except TimeoutError:
                        if i > 0:
                            raise
                        continue
                    gated_before = diag("gated_distance")
                    img_pub.publish(msg)
                    try:
                        if expect_query:
                            spin_until(node, lambda s=stamp: any(stamp_to_ns(c.header.stamp) == s for c in cands),
                                       2.0 if i == 0 else 20.0, f"candidates for frame {i}", proc)
                        else:
                            spin_until(node, lambda g=gated_before: diag("gated_distance") > g, 20.0,
                                       f"frame {i} to be gated by distance", proc)
                        break
                    except TimeoutError:
                        if i > 0:
                            raise
                if not expect_query:
                    gated.append(i)
                    continue
                last_xyz = p[:3]
                table = from_pointcloud2(next(c for c in cands if stamp_to_ns(c.header.stamp) == stamp))
                queried.append(i)
                assert table["map_id"][0] == i, f"frame {i}: top-5 {table['map_id']} scores {table['score']}"
                np.testing.assert_allclose([table["x"][0], table["y"][0]], p[:2], atol=1e-3)
            assert len(queried) >= 20 and gated, (queried, gated)
            assert len(cands) == len(queried)
        finally:
            rc = proc.stop()
    assert rc == 0 and "Traceback" not in proc.output()
