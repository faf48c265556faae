"""/diagnostics levels and the issue's bad input, on the real node process.

use_sim_time with no /clock (one warning, keeps running), an empty map with
mapping off (ERROR), a remap onto a topic of another type (WARN naming both
types), latency over budget (WARN), and ~/save_map into a path that cannot be
written (a clear failure, nothing left behind).
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("torch")  # the test student is exported from torch

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from distilvpr_ros import launch_args, synthetic_assets  # noqa: E402
from distilvpr_ros.outputs import ns_to_stamp  # noqa: E402
from distilvpr_ros.replay.node_process import LocalizerProcess, local_ros_client, spin_until  # noqa: E402

WARN, ERROR = b"\x01", b"\x02"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.mapdb import PriorMap
    out = tmp_path_factory.mktemp("health")
    assets = synthetic_assets.build(out, places=2, image_size=(160, 120))
    emb = load_embedder(assets.model, backend="onnxruntime", intra_op_threads=1)
    PriorMap.create(emb.dim, emb.fingerprint, emb.contract, index="flat").save(out / "empty_map")
    emb.close()
    return assets, out / "empty_map"


@pytest.fixture(scope="module")
def ros():
    with local_ros_client("health_test_client") as node:
        yield node


def _start(tmp_path, map_dir, model, launch=(), params=()):
    args = launch_args.node_arguments({"map": str(map_dir), "model": str(model), **dict(launch)})
    for p in ("intra_op_threads:=1", "diagnostics_period_s:=0.2", *params):
        args += ["-p", p]
    return LocalizerProcess(args, tmp_path / "node.log")


def _status(ros, got, proc, predicate, what, timeout_s=20.0):
    """The first localizer status (level, message) satisfying ``predicate``."""
    def find():
        for arr in got:
            for st in arr.status:
                if "place recognition" in st.name and predicate(st.level, st.message):
                    return st
        return None
    spin_until(ros, lambda: find() is not None, timeout_s, what, proc)
    return find()


def test_sim_time_without_clock_warns_once_and_keeps_running(assets, ros, tmp_path):
    a, _ = assets
    got = []
    sub = ros.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    proc = _start(tmp_path, a.map, a.model, {"use_sim_time": "true"}, ["image_timeout_s:=0.5"])
    try:
        st = _status(ros, got, proc, lambda lv, m: lv == WARN and "no /clock" in m and "no image on /image" in m,
                     "WARN: no /clock, no image")
        assert "play the bag with --clock" in st.message
        t_end = time.monotonic() + 7.0  # past the 5 s check, then some
        spin_until(ros, lambda: time.monotonic() > t_end, 10, "time to pass", proc)
        assert proc.alive()
    finally:
        ros.destroy_subscription(sub)
        assert proc.stop() == 0
    log = proc.output()
    assert log.count("no /clock message arrived in 5 s") == 1, log[-2000:]
    assert "Traceback" not in log


def test_empty_map_errors_type_conflict_and_latency_warn(assets, ros, tmp_path):
    a, empty = assets
    got = []
    sub = ros.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    wrong = ros.create_publisher(String, "/wrong_type", 10)   # odom remapped onto a String topic
    image = ros.create_publisher(Image, "/image", qos_profile_sensor_data)
    proc = _start(tmp_path, empty, a.model, {"odom_topic": "/wrong_type"}, ["latency_budget_ms:=0.0"])
    try:
        # Wait for the name: DDS may report the endpoint a moment before its node's name.
        st = _status(ros, got, proc, lambda lv, m: lv == ERROR and "/wrong_type: /health_test_client" in m,
                     "ERROR + type conflict")
        assert "the map has no keyframes and online_mapping is off" in st.message
        assert "/wrong_type: /health_test_client publishes std_msgs/msg/String, this node uses " \
               "nav_msgs/msg/Odometry" in st.message
        spin_until(ros, lambda: image.get_subscription_count() > 0, 20, "image subscription", proc)
        rgb = synthetic_assets.place_image(0, 160, 120)
        msg = Image(height=120, width=160, encoding="rgb8", step=480, data=np.ascontiguousarray(rgb).tobytes())
        msg.header.stamp = ns_to_stamp(1_800_000_000 * 10**9)

        def latency_warned():
            image.publish(msg)
            return any("latency p95" in st.message for arr in got for st in arr.status)
        spin_until(ros, latency_warned, 30, "latency WARN", proc)
        assert "no /clock" not in got[-1].status[0].message  # use_sim_time is off

    finally:
        ros.destroy_subscription(sub)
        ros.destroy_publisher(wrong)
        ros.destroy_publisher(image)
        assert proc.stop() == 0
    assert "Traceback" not in proc.output()
    # An empty map is not a map to rebuild.
    assert "the map is empty" in proc.output() and "rebuild the map" not in proc.output()


def test_save_map_into_an_unwritable_place_fails_clearly(assets, ros, tmp_path):
    a, _ = assets
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file")
    target = blocker / "map"
    proc = _start(tmp_path, a.map, a.model, params=[f"map_save_path:={target}"])
    try:
        client = ros.create_client(Trigger, "/localizer/save_map")
        spin_until(ros, client.service_is_ready, 30, "save_map", proc)
        future = client.call_async(Trigger.Request())
        spin_until(ros, future.done, 20, "save_map response", proc)
        ros.destroy_client(client)
    finally:
        assert proc.stop() == 0
    resp = future.result()
    assert not resp.success and str(target) in resp.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.log", "not_a_dir"]  # nothing half-written


def test_no_drop_alarm_when_every_frame_arrives_one_of_them_early(assets, ros, tmp_path):
    # The false alarm: 24 of 24 frames received, one stamped early, and
    # /diagnostics said 92 % of frames never reached the node.
    from distilvpr_ros.replay.node_process import diagnostics_values
    a, _ = assets
    got = []
    sub = ros.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    image = ros.create_publisher(Image, "/image", qos_profile_sensor_data)
    proc = _start(tmp_path, a.map, a.model, params=["min_interval_s:=0.0"])
    try:
        spin_until(ros, lambda: image.get_subscription_count() > 0, 30, "image subscription", proc)
        rgb = synthetic_assets.place_image(0, 160, 120)
        t0 = 1_800_000_000 * 10**9
        stamps = [t0 + k * 100_000_000 for k in range(24)]
        stamps[5] = stamps[4] + 10_000_000  # one frame 90 ms early

        def values():
            for arr in reversed(got):
                v = diagnostics_values(arr)
                if v is not None:
                    return v
            return {}
        def send(t):
            msg = Image(height=120, width=160, encoding="rgb8", step=480,
                        data=np.ascontiguousarray(rgb).tobytes())
            msg.header.stamp = ns_to_stamp(t)
            image.publish(msg)
        # Best effort loses what goes out before the node's side has matched: warm up first.
        warm = 0
        while not int(values().get("frames_received", 0)):
            warm += 1
            assert warm < 30, "no frame reached the node"
            send(t0 - 10**9)
            t_end = time.monotonic() + 1.0
            spin_until(ros, lambda: time.monotonic() > t_end or int(values().get("frames_received", 0)) > 0,
                       5, "warm-up frame", proc)
        for i, t in enumerate(stamps):
            send(t)
            # The next frame goes out once this one was taken, as a camera slower than the node.
            spin_until(ros, lambda: int(values().get("frames_received", 0)) > i + 1, 20, f"frame {i} taken", proc)
        v = values()
        assert v["frames_received"] == "25" and v["frames_skipped"] == "0", v
        assert float(v["frames_missed_fraction"]) == 0.0
        assert not any("never reached" in st.message for arr in got for st in arr.status)
    finally:
        ros.destroy_subscription(sub)
        ros.destroy_publisher(image)
        assert proc.stop() == 0
