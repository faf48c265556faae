"""/diagnostics levels: each rule of distilvpr_ros.health on its own (no ROS graph)."""
from __future__ import annotations

import dataclasses
import math

import pytest

from distilvpr_ros import health, outputs
from distilvpr_ros.health import ERROR, OK, WARN, DropEstimator, HealthInput

FINE = HealthInput(image_topic="/cam", since_last_image_s=0.1, image_timeout_s=5.0, latency_p95_ms=30.0,
                   latency_budget_ms=500.0, drop_fraction=0.0, max_drop_fraction=0.5, map_size=12,
                   online_mapping=False, consecutive_failures=0, last_failure="", waiting_for_clock=False)


def _verdict(**change):
    return health.health(dataclasses.replace(FINE, **change))


def test_healthy_node_is_ok_and_nan_statistics_are_not_alarms():
    assert _verdict() == (OK, "ok")
    assert _verdict(latency_p95_ms=math.nan, drop_fraction=math.nan) == (OK, "ok")


@pytest.mark.parametrize("change, level, words", [
    ({"since_last_image_s": 7.5}, WARN, "no image on /cam for 7.5 s"),
    ({"latency_p95_ms": 812.0}, WARN, "latency p95 812.0 ms is over latency_budget_ms 500"),
    ({"drop_fraction": 0.75}, WARN, "75% of camera frames never reached the node"),
    ({"waiting_for_clock": True}, WARN, "no /clock"),
    ({"type_conflicts": ("/odom: /x publishes geometry_msgs/msg/PoseStamped",)}, WARN, "PoseStamped"),
    ({"map_size": 0}, ERROR, "the map has no keyframes and online_mapping is off"),
    ({"consecutive_failures": 3, "last_failure": "RuntimeError('onnx')"}, ERROR,
     "the model failed on the last 3 frames: RuntimeError('onnx')"),
])
def test_each_problem_sets_its_level_and_names_the_cause(change, level, words):
    got_level, message = _verdict(**change)
    assert got_level == level and words in message


def test_empty_map_is_fine_while_mapping_and_errors_outrank_warnings():
    assert _verdict(map_size=0, online_mapping=True) == (OK, "ok")
    assert _verdict(consecutive_failures=2)[0] == OK  # one or two bad frames are not a broken model
    level, message = _verdict(map_size=0, since_last_image_s=60.0)
    assert level == ERROR and "no keyframes" in message and "no image" in message


def test_drop_estimator_counts_frames_skipped_by_sequence_number():
    est = DropEstimator()
    for seq in range(1, 25):      # every frame of the stream reached the node
        est.add(seq, b"cam")
    assert est.fraction() == 0.0 and est.skipped() == 0
    est = DropEstimator()
    for seq in [s for s in range(1, 121) if s % 4 != 0]:  # every 4th frame skipped
        est.add(seq, b"cam")
    assert est.skipped() == 29 and est.fraction() == pytest.approx(29 / 119)
    est.add(1, b"cam")            # a bag restart (sequence back to 1) is not a drop
    est.add(1, b"cam2")           # nor is a second publisher's first frame
    assert est.skipped() == 29
    est.add(None)                 # no message info (Humble): not counted either way
    assert math.isnan(DropEstimator().fraction())


def test_drop_estimator_no_false_alarm_from_one_early_frame():
    # The stream: 24 of 24 frames received, one of them early.  The old
    # stamp-gap estimate took the smallest gap as the camera period and
    # reported 92 % of frames missing.
    est = DropEstimator()
    for seq in range(1, 25):
        est.add(seq, b"cam")
    assert est.fraction() == 0.0
    assert _verdict(drop_fraction=est.fraction()) == (OK, "ok")


def test_type_conflicts_name_topic_both_types_and_the_other_node():
    ours = {"/odom": "nav_msgs/msg/Odometry", "/lio_loop/loop_closure_detection": "std_msgs/msg/Float64MultiArray"}
    graph = {"/odom": [("/vio", "publishes", "geometry_msgs/msg/PoseStamped")],
             "/lio_loop/loop_closure_detection": [("/lio_sam_mapOptimization", "subscribes",
                                                   "std_msgs/msg/Float64MultiArray")]}
    (msg,) = health.type_conflicts(ours, graph)
    assert msg.startswith("/odom: /vio publishes geometry_msgs/msg/PoseStamped, this node uses nav_msgs/msg/Odometry")


def test_diagnostics_message_carries_level_and_message():
    arr = outputs.diagnostics(outputs.ns_to_stamp(0), "n: place recognition", {"a": "1"}, ERROR, "broken")
    (status,) = arr.status
    assert status.level == bytes([ERROR]) and status.message == "broken" and status.values[0].key == "a"
