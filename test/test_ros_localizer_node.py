"""The localizer as a real process, driven over DDS from this test process.

Assets: a random-init student exported to ONNX and a FAISS map of 12
procedurally drawn places (distilvpr_ros.synthetic_assets).  Every node is
stopped with SIGINT in a finally and must exit 0 without a traceback.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from PIL import Image as PILImage
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from distilvpr_ros import launch_args, synthetic_assets
from distilvpr_ros.candidates_table import from_pointcloud2
from distilvpr_ros.replay.node_process import LocalizerProcess, diagnostics_values, local_ros_client, spin_until
from distilvpr_ros.outputs import ns_to_stamp, stamp_to_ns

NOW_NS = 1_800_000_000 * 10**9  # query stamps: long after the map's 1.6e9 s


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    return synthetic_assets.build(tmp_path_factory.mktemp("assets"), places=12)


@pytest.fixture(scope="module")
def ros():
    # Raw frames need the shared-memory DDS profile in this process and the
    # node (children inherit it); local_ros_client restores it afterwards.
    with local_ros_client("localizer_test_client") as node:
        yield node


class Client:
    """Publishers/subscribers of one localizer under namespace ``ns``."""

    def __init__(self, node, ns: str = "", image_topic: str = "/image", compressed: bool = False):
        self.node = node
        base = f"{ns}/localizer"
        self.got = {k: [] for k in ("candidates", "loop", "pose", "markers", "diag")}
        self.subs = [
            node.create_subscription(PointCloud2, f"{base}/candidates", self.got["candidates"].append, 10),
            node.create_subscription(Float64MultiArray, f"{base}/loop_closure", self.got["loop"].append, 10),
            node.create_subscription(PoseWithCovarianceStamped, f"{base}/match_pose", self.got["pose"].append, 10),
            node.create_subscription(MarkerArray, f"{base}/markers", self.got["markers"].append, 10),
            node.create_subscription(DiagnosticArray, "/diagnostics", self.got["diag"].append, 10),
        ]
        topic = image_topic + ("/compressed" if compressed else "")
        self.image_pub = node.create_publisher(CompressedImage if compressed else Image, topic,
                                               qos_profile_sensor_data)
        self.odom_pub = node.create_publisher(Odometry, f"{ns}/odom", qos_profile_sensor_data)
        self.base = base

    def wait_matched(self, proc, timeout_s: float = 30.0) -> None:
        spin_until(self.node, lambda: self.image_pub.get_subscription_count() > 0
                   and all(s.get_publisher_count() > 0 for s in self.subs), timeout_s,
                   "the localizer's topics to match", proc)
        # Best effort drops what is sent before the node's side has matched too.
        self.diag(proc, lambda d: int(d.get("image_publishers", 0)) > 0, timeout_s)

    def query(self, msg, proc, timeout_s: float = 20.0):
        """Publish one frame and return the candidates table answering it."""
        stamp = stamp_to_ns(msg.header.stamp)
        self.image_pub.publish(msg)
        last = diagnostics_values(self.got["diag"][-1]) if self.got["diag"] else None
        spin_until(self.node, lambda: any(stamp_to_ns(c.header.stamp) == stamp for c in self.got["candidates"]),
                   timeout_s, f"candidates for stamp {stamp} (diagnostics before: {last})", proc)
        cand = next(c for c in self.got["candidates"] if stamp_to_ns(c.header.stamp) == stamp)
        return cand, from_pointcloud2(cand)

    def diag(self, proc, predicate=lambda d: True, timeout_s: float = 10.0) -> dict:
        start = len(self.got["diag"])

        def ok():
            for m in self.got["diag"][start:]:
                d = diagnostics_values(m)
                if d is not None and predicate(d):
                    return True
            return False
        spin_until(self.node, ok, timeout_s, "diagnostics", proc)
        return next(d for m in reversed(self.got["diag"]) if (d := diagnostics_values(m)) and predicate(d))

    def send_odom(self, msg, proc) -> None:
        """Publish odometry and wait until the node has taken it (diagnostics count)."""
        before = int(self.diag(proc).get("odom_received", 0))
        self.odom_pub.publish(msg)
        self.diag(proc, lambda d: int(d.get("odom_received", 0)) > before)

    def call(self, srv_type, name, request, proc, timeout_s: float = 10.0):
        client = self.node.create_client(srv_type, f"{self.base}/{name}")
        spin_until(self.node, client.service_is_ready, timeout_s, f"service {name}", proc)
        future = client.call_async(request)
        spin_until(self.node, future.done, timeout_s, f"{name} response", proc)
        self.node.destroy_client(client)
        return future.result()

    def close(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.node.destroy_publisher(self.image_pub)
        self.node.destroy_publisher(self.odom_pub)


def raw_image(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> Image:
    data = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = "camera"
    msg.data = np.ascontiguousarray(data).tobytes()
    return msg


def png_image(rgb: np.ndarray, stamp_ns: int) -> CompressedImage:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    msg = CompressedImage(format="png")
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.data = buf.getvalue()
    return msg


def odom(x: float, stamp_ns: int) -> Odometry:
    msg = Odometry()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = "odom"
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def start(assets, tmp_path, name="node", launch=None, params=()):
    """A LocalizerProcess started like the launch file would start it."""
    values = {"map": str(assets.map), "model": str(assets.model), **(launch or {})}
    args = launch_args.node_arguments(values) + ["-p", "intra_op_threads:=1"]
    for p in params:
        args += ["-p", p]
    return LocalizerProcess(args, tmp_path / f"{name}.log")


def stop_cleanly(proc) -> None:
    rc = proc.stop()
    out = proc.output()
    assert rc == 0, f"localizer exited {rc}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]


def test_correct_top1_for_every_mapped_place_with_all_outputs(assets, ros, tmp_path):
    proc = start(assets, tmp_path, launch={"namespace": "robot1", "image_topic": "/cam/image_raw"},
                 params=["min_interval_s:=0.0", "score_threshold:=0.9", "loop_closure_include_score:=true"])
    client = Client(ros, ns="/robot1", image_topic="/cam/image_raw")
    try:
        client.wait_matched(proc)
        for i, rgb in enumerate(assets.images):
            stamp = NOW_NS + i * 10**8
            msg, table = client.query(raw_image(rgb, stamp, "bgr8" if i % 2 else "rgb8"), proc)
            assert msg.header.frame_id == "map" and len(table) == 5
            assert table["map_id"][0] == i, f"place {i}: top-5 {table['map_id']} scores {table['score']}"
            assert np.all(np.diff(table["score"]) <= 0)  # rank order
            np.testing.assert_allclose(table["x"][0], 10.0 * i)
            sec_ns = int(table["map_stamp_sec"][0]) * 10**9 + int(table["map_stamp_nanosec"][0])
            assert sec_ns == assets.stamps_ns[i]
        spin_until(ros, lambda: len(client.got["loop"]) == 12 and len(client.got["pose"]) == 12, 10,
                   "12 loop closures and match poses", proc)
        loop = client.got["loop"][3].data
        assert loop[0] == pytest.approx((NOW_NS + 3 * 10**8) * 1e-9)
        assert loop[1] == pytest.approx(assets.stamps_ns[3] * 1e-9) and loop[2] >= 0.9
        pose = client.got["pose"][5]
        assert pose.pose.pose.position.x == pytest.approx(50.0) and pose.header.frame_id == "map"
        assert pose.pose.covariance[0] >= 1.0
        assert client.got["markers"] and client.got["markers"][-1].markers[0].points
        d = client.diag(proc, lambda d: d.get("queries") == "12")
        assert d["torch_loaded"] == "false", "backend onnxruntime must not import torch"
        assert d["backend"] == "onnxruntime" and d["map_size"] == "12" and d["bad_messages"] == "0"
        assert float(d["embed_p50_ms"]) > 0 and float(d["process_p99_ms"]) >= float(d["embed_p50_ms"])
    finally:
        client.close()
        stop_cleanly(proc)


def test_compressed_png_input(assets, ros, tmp_path):
    proc = start(assets, tmp_path, launch={"compressed": "true"},
                 params=["min_interval_s:=0.0"])
    client = Client(ros, compressed=True)
    try:
        client.wait_matched(proc)
        for i in (2, 7):
            _, table = client.query(png_image(assets.images[i], NOW_NS + i), proc)
            assert table["map_id"][0] == i
        # The default is LIO-SAM's [t_query, t_match] (it drops any other size).
        spin_until(ros, lambda: len(client.got["loop"]) == 2, 10, "two loop closures", proc)
        assert len(client.got["loop"][0].data) == 2
    finally:
        client.close()
        stop_cleanly(proc)


@pytest.mark.slow
def test_gating_exclusion_and_runtime_parameters(assets, ros, tmp_path):
    proc = start(assets, tmp_path, params=["min_interval_s:=0.5", "min_distance_m:=2.0",
                                           "exclude_recent_s:=0.0", "diagnostics_period_s:=0.2"])
    client = Client(ros)
    try:
        client.wait_matched(proc)
        spin_until(ros, lambda: client.odom_pub.get_subscription_count() > 0, 10, "odom match", proc)
        img = assets.images[8]

        def received() -> int:
            return int(client.diag(proc).get("frames_received", 0))

        def send(msg) -> None:  # publish one frame and wait until the node has taken it
            before = received()
            client.image_pub.publish(msg)
            client.diag(proc, lambda d: int(d.get("frames_received", 0)) > before)

        def send_odom(msg) -> None:
            client.send_odom(msg, proc)

        # 30 Hz for 1 s without odometry: one query per 0.5 s.
        t0 = NOW_NS
        for k in range(30):
            send(raw_image(img, t0 + k * 33_333_333))
        d = client.diag(proc)
        assert d["frames_received"] == "30" and d["queries"] == "2" and d["gated_interval"] == "28", d
        # Stationary odometry: one query, then none however long it sits there.
        t1 = t0 + 10 * 10**9
        for k in range(5):
            send_odom(odom(3.0, t1 + k * 2 * 10**9))
            send(raw_image(img, t1 + k * 2 * 10**9))
        d = client.diag(proc)
        assert d["queries"] == "3" and d["gated_distance"] == "4", d
        # Moving 3 m: queried again.
        t2 = t1 + 20 * 10**9
        send_odom(odom(6.0, t2))
        client.query(raw_image(img, t2), proc)

        # Exclusion: a query stamped 1.6e9 + 5.5 s with a 2 s window only sees keyframes 0..3.
        def set_params(*pairs):
            req = SetParameters.Request()
            for name, value in pairs:
                pv = (ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
                      if isinstance(value, float) else
                      ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
                      if isinstance(value, int) else
                      ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))
                req.parameters.append(ParameterMsg(name=name, value=pv))
            return client.call(SetParameters, "set_parameters", req, proc).results

        res = set_params(("exclude_recent_s", 2.0), ("min_interval_s", 0.0), ("min_distance_m", 0.0),
                         ("top_k", 3))
        assert all(r.successful for r in res), [r.reason for r in res]
        q = synthetic_assets.MAP_EPOCH_NS + 5_500_000_000
        _, table = client.query(raw_image(img, q), proc)
        assert len(table) == 3 and set(table["map_id"]) <= {0, 1, 2, 3}
        # Invalid values are rejected naming the parameter; read-only ones too.
        bad = set_params(("top_k", 0))
        assert not bad[0].successful and "top_k" in bad[0].reason
        bad = set_params(("score_threshold", 7.5))
        assert not bad[0].successful and "score_threshold" in bad[0].reason
        bad = set_params(("backend", "torch"))
        assert not bad[0].successful
        _, table = client.query(raw_image(img, q + 10**9), proc)
        assert len(table) == 3  # top_k=0 was not applied
    finally:
        client.close()
        stop_cleanly(proc)


def test_online_mapping_save_and_reload(assets, ros, tmp_path):
    from distilvpr_core.mapdb import PriorMap
    saved = tmp_path / "grown_map"
    new_place = synthetic_assets.place_image(99)
    proc = start(assets, tmp_path, params=["min_interval_s:=0.0", "min_distance_m:=0.0",
                                           "exclude_recent_s:=0.0", f"map_save_path:={saved}",
                                           "diagnostics_period_s:=0.2"])
    client = Client(ros)
    try:
        client.wait_matched(proc)
        resp = client.call(SetBool, "set_mapping", SetBool.Request(data=True), proc)
        assert resp.success, resp.message
        client.send_odom(odom(123.0, NOW_NS), proc)
        client.query(raw_image(new_place, NOW_NS), proc)         # added as keyframe 12
        assert client.call(SetBool, "set_mapping", SetBool.Request(data=False), proc).success
        _, table = client.query(raw_image(new_place, NOW_NS + 10**9), proc)
        assert table["map_id"][0] == 12 and table["x"][0] == pytest.approx(123.0)
        d = client.diag(proc, lambda d: d.get("map_size") == "13")
        assert d["keyframes_added"] == "1" and d["online_mapping"] == "false"
        resp = client.call(Trigger, "save_map", Trigger.Request(), proc)
        assert resp.success and str(saved) in resp.message
    finally:
        client.close()
        stop_cleanly(proc)
    grown = PriorMap.load(saved)
    assert len(grown) == 13 and grown.poses[12, 0] == pytest.approx(123.0)
    assert grown.stamps_ns[12] == NOW_NS
    # A new node on the saved map finds the new place.
    proc = LocalizerProcess(launch_args.node_arguments({"map": str(saved), "model": str(assets.model)})
                            + ["-p", "exclude_recent_s:=0.0"], tmp_path / "reload.log")
    client = Client(ros)
    try:
        client.wait_matched(proc)
        _, table = client.query(raw_image(new_place, NOW_NS + 5 * 10**9), proc)
        assert table["map_id"][0] == 12
    finally:
        client.close()
        stop_cleanly(proc)


def test_backend_torch_uses_the_checkpoint_and_imports_torch(assets, ros, tmp_path):
    # The same weights as .pt have the same fingerprint, so the map accepts them.
    proc = start(assets, tmp_path, launch={"backend": "torch", "model": str(assets.checkpoint)},
                 params=["min_interval_s:=0.0"])
    client = Client(ros)
    try:
        client.wait_matched(proc, timeout_s=60)
        _, table = client.query(raw_image(assets.images[4], NOW_NS), proc, timeout_s=60)
        assert table["map_id"][0] == 4
        d = client.diag(proc)
        assert d["backend"] == "torch" and d["torch_loaded"] == "true"
    finally:
        client.close()
        stop_cleanly(proc)


_SHUTDOWN_RACE = """
import sys
import pytest, rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from distilvpr_ros import localizer

class Probe(Node):   # the real Localizer needs a model and a map; main()'s handling is the subject
    def __init__(self):
        super().__init__("shutdown_race_probe")

def spin_into_shutdown(node):
    rclpy.shutdown()
    raise RCLError("failed to initialize wait set: the given context is not valid")

def spin_into_bug(node):
    raise RuntimeError("not a shutdown")

localizer.Localizer = Probe
localizer.rclpy.spin = spin_into_shutdown
assert localizer.main([]) == 0
localizer.rclpy.spin = spin_into_bug
with pytest.raises(RuntimeError, match="not a shutdown"):
    localizer.main([])
print("ok")
"""


def test_a_shutdown_that_races_the_executor_is_a_clean_exit():
    """SIGINT can shut the context down while the executor builds its wait set; rclpy then
    raises RCLError, not ExternalShutdownException.  main() must exit 0 for that and still
    raise a RuntimeError that happens while the context is alive.  (Its own process: main()
    initialises the default context, which this test process's ROS fixtures hold.)"""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _SHUTDOWN_RACE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
