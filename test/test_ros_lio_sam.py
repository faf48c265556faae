"""LIO-SAM wiring, end to end: a replayed bag through the real node, and a
subscriber that applies LIO-SAM's own acceptance rule to what it receives.

LIO-SAM (TixiaoShan/LIO-SAM, src/mapOptmization.cpp, master and ros2
branches) subscribes ``lio_loop/loop_closure_detection`` with best-effort,
keep-last-1 QoS; ``loopInfoHandler`` drops any array whose size is not 2;
``detectLoopClosureExternal`` drops a pair closer in time than
``historyKeyframeSearchTimeDiff`` (30 s in its params.yaml) and looks both
stamps up among its own keyframes, so a stamp outside the current session
lands on its first or last keyframe.  The node is started with the launch
arguments the README's recipe gives.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the test student is exported from torch

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from distilvpr_core.data.bagio import IMAGE_TOPIC, ODOM_TOPIC, TraversalBagWriter  # noqa: E402
from distilvpr_ros import launch_args, synthetic_assets  # noqa: E402
from distilvpr_ros.outputs import stamp_to_ns  # noqa: E402
from distilvpr_ros.replay.node_process import (LocalizerProcess, diagnostics_values,  # noqa: E402
                                               local_ros_client, spin_until)

LIO_TOPIC = "/lio_loop/loop_closure_detection"
HISTORY_KEYFRAME_SEARCH_TIME_DIFF_S = 30.0   # LIO-SAM config/params.yaml
T0 = 1_800_000_000 * 10**9                    # the drive; the prior map is stamped 1.6e9 s
SIZE = (160, 120)


class LioSamLoopRule:
    """What LIO-SAM keeps of each message on its loop-closure topic."""

    def __init__(self, session: tuple[float, float]) -> None:
        self.session = session
        self.accepted: list[tuple[float, float]] = []
        self.rejected: list[tuple[list[float], str]] = []

    def __call__(self, msg: Float64MultiArray) -> None:
        data = list(msg.data)
        if len(data) != 2:
            self.rejected.append((data, "size is not 2"))
        elif abs(data[0] - data[1]) < HISTORY_KEYFRAME_SEARCH_TIME_DIFF_S:
            self.rejected.append((data, "closer than historyKeyframeSearchTimeDiff"))
        elif not all(self.session[0] <= t <= self.session[1] for t in data):
            self.rejected.append((data, "a stamp outside the current session"))
        else:
            self.accepted.append((data[0], data[1]))


def _drive() -> list[tuple[int, int]]:
    """(stamp ns, place) of the drive: places 0-4, then 40 s later places 1-4 again."""
    first = [(T0 + k * 10**9, k) for k in range(5)]
    again = [(T0 + 40 * 10**9 + k * 10**9, k) for k in range(1, 5)]
    return first + again


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lio")
    # The prior map holds place 0 only, from an earlier session (1.6e9 s).
    assets = synthetic_assets.build(out, places=1, image_size=SIZE)
    bag = out / "drive"
    with TraversalBagWriter(bag, "sqlite3", "raw", {"fx": 80.0, "fy": 80.0, "cx": 80.0, "cy": 60.0}) as w:
        for stamp, place in _drive():
            pose = np.array([10.0 * place, 0, 0, 0, 0, 0, 1.0])
            w.write_frame(stamp, synthetic_assets.place_image(place, *SIZE), np.zeros((1, 4), np.float32),
                          pose, pose, np.zeros(6))
    return assets, bag


def _bag_messages(bag):
    from rosbags.highlevel import AnyReader
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic in (IMAGE_TOPIC, ODOM_TOPIC)]
        for conn, _, raw in reader.messages(connections=conns):
            yield conn.topic, bytes(raw)


def test_lio_sam_accepts_every_loop_closure_the_node_sends(setup, tmp_path):
    assets, bag = setup
    stamps = [s for s, _ in _drive()]
    rule = LioSamLoopRule((stamps[0] * 1e-9, stamps[-1] * 1e-9))
    args = launch_args.node_arguments({"map": str(assets.map), "model": str(assets.model),
                                       "image_topic": IMAGE_TOPIC, "odom_topic": ODOM_TOPIC,
                                       "loop_closure_topic": LIO_TOPIC, "loop_closure_scope": "session"})
    args += ["-p", "online_mapping:=true", "-p", "min_interval_s:=0.0", "-p", "min_distance_m:=0.0",
             "-p", "score_threshold:=0.9", "-p", "intra_op_threads:=1", "-p", "diagnostics_period_s:=0.2"]
    with local_ros_client("lio_sam_stand_in") as ros:
        lio_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)  # LIO-SAM's
        ros.create_subscription(Float64MultiArray, LIO_TOPIC, rule, lio_qos)
        answers, diags = set(), []
        ros.create_subscription(PointCloud2, "/localizer/candidates",
                                lambda m: answers.add(stamp_to_ns(m.header.stamp)), 10)
        ros.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        pubs = {IMAGE_TOPIC: ros.create_publisher(Image, IMAGE_TOPIC, 10),
                ODOM_TOPIC: ros.create_publisher(Odometry, ODOM_TOPIC, 10)}
        proc = LocalizerProcess(args, tmp_path / "node.log")
        try:
            spin_until(ros, lambda: all(p.get_subscription_count() for p in pubs.values()), 30,
                       "the node's subscriptions", proc)

            def odom_count():
                vals = [diagnostics_values(m) for m in diags]
                return max([int(v.get("odom_received", 0)) for v in vals if v] or [-1])

            spin_until(ros, lambda: odom_count() >= 0, 30, "diagnostics", proc)
            frame = 0
            for topic, raw in _bag_messages(bag):   # lockstep: odom taken, then the frame answered
                if topic == ODOM_TOPIC:
                    before = odom_count()
                    pubs[topic].publish(raw)
                    spin_until(ros, lambda: odom_count() > before, 20, "odometry taken", proc)
                else:
                    pubs[topic].publish(raw)
                    spin_until(ros, lambda: stamps[frame] in answers, 30, f"answer to frame {frame}", proc)
                    frame += 1
            spin_until(ros, lambda: len(rule.accepted) + len(rule.rejected) >= 4, 10, "4 loop closures", proc)
            spin_until(ros, lambda: False if not diags else int(
                (diagnostics_values(diags[-1]) or {}).get("loop_closures_out_of_scope", 0)) >= 1, 10,
                "the prior-map match counted", proc)
        finally:
            rc = proc.stop()
        assert rc == 0, proc.output()[-2000:]
    assert rule.rejected == []
    # The revisits of places 1-4 close loops onto the first pass; the
    # prior-map match of place 0 (a stamp LIO-SAM does not have) is not sent.
    first = dict((place, s) for s, place in _drive()[:5])
    expect = [(s * 1e-9, first[place] * 1e-9) for s, place in _drive()[5:]]
    assert rule.accepted == pytest.approx(expect)

