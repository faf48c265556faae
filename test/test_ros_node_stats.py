"""Diagnostics bookkeeping and output builders (no ROS graph)."""
from __future__ import annotations

import math

import numpy as np
from std_msgs.msg import Header

from distilvpr_ros import outputs
from distilvpr_ros.node_stats import LatencyWindow, NodeStats, OncePerKindLogger, rss_bytes


def test_once_per_kind_logger_logs_each_kind_once_per_period():
    logged, now = [], [0.0]
    log = OncePerKindLogger(logged.append, period_s=10.0, clock=lambda: now[0])
    for i in range(1000):
        log("size" if i % 2 else "encoding", f"message {i}")
    assert len(logged) == 2 and "[encoding]" in logged[0] and "[size]" in logged[1]
    now[0] = 11.0
    log("size", "again")
    assert len(logged) == 3 and "(501 of this kind so far)" in logged[2]


def test_latency_window_percentiles():
    w = LatencyWindow(size=100)
    assert math.isnan(w.percentile_ms(50))
    for v in range(1, 201):  # only the last 100 (101..200 ms) are kept
        w.add(v / 1000)
    assert len(w) == 100
    assert abs(w.percentile_ms(50) - 150.5) < 1e-6


def test_snapshot_counts_bad_kinds_and_rss():
    s = NodeStats()
    s.bad["size"] += 3
    s.bad["decode"] += 2
    s.counts["queries"] += 1
    snap = s.snapshot()
    assert snap["bad_messages"] == "5" and snap["bad_size"] == "3" and snap["queries"] == "1"
    assert float(snap["rss_mb"]) > 10 and rss_bytes() > 0


def test_match_pose_covariance_grows_as_score_falls():
    strong = outputs.match_pose(Header(), np.array([1, 2, 3, 0, 0, 0, 1.0]), 0.9, 1.0, 0.2)
    weak = outputs.match_pose(Header(), np.array([1, 2, 3, 0, 0, 0, 1.0]), 0.3, 1.0, 0.2)
    assert strong.pose.pose.position.y == 2.0
    assert weak.pose.covariance[0] > strong.pose.covariance[0] > 1.0
    assert weak.pose.covariance[35] > strong.pose.covariance[35]
    assert outputs.pose_covariance(-1.0, 1.0, 0.2)[0] == (1.0 / 0.05) ** 2  # clamped, finite


def test_loop_closure_is_lio_sam_convention():
    # Default: exactly 2 values, as LIO-SAM's loopInfoHandler requires.
    msg = outputs.loop_closure(1_700_000_000_500_000_000, 1_600_000_000_250_000_000, 0.8)
    assert list(msg.data) == [1_700_000_000.5, 1_600_000_000.25]
    assert list(outputs.loop_closure(1, 2, 0.8, include_score=True).data) == [1e-9, 2e-9, 0.8]
    assert outputs.stamp_to_ns(outputs.ns_to_stamp(1_700_000_000_500_000_001)) == 1_700_000_000_500_000_001


def test_loop_closure_scope_session_keeps_only_this_runs_keyframes():
    assert outputs.in_scope("all", 5, None) and outputs.in_scope("all", 5, 10)
    assert outputs.in_scope("session", 10, 10) and outputs.in_scope("session", 11, 10)
    assert not outputs.in_scope("session", 9, 10)        # prior-map keyframe
    assert not outputs.in_scope("session", 9, None)      # no image yet


def test_refused_odometry_is_logged_with_its_reason():
    # The log said "NaN/inf or |value| > 1e9" for every refusal, also for an all-zero quaternion.
    import types
    from nav_msgs.msg import Odometry
    from distilvpr_core.localize.odom import OdomBuffer
    from distilvpr_ros.localizer_wiring import LocalizerMixin
    logged = []
    node = types.SimpleNamespace(stats=NodeStats(), log_bad=lambda kind, text: logged.append((kind, text)),
                                 engine=types.SimpleNamespace(add_odometry=lambda st, p: OdomBuffer().add(st, p)))
    msg = Odometry()
    msg.pose.pose.orientation.w = 0.0        # all-zero orientation
    LocalizerMixin._on_odom(node, msg)
    msg.pose.pose.orientation.w, msg.pose.pose.position.x = 1.0, float("nan")
    LocalizerMixin._on_odom(node, msg)
    msg.pose.pose.position.x = 2e9
    LocalizerMixin._on_odom(node, msg)
    msg.pose.pose.position.x = 1.0
    LocalizerMixin._on_odom(node, msg)
    assert [k for k, _ in logged] == ["odom_nonfinite"] * 3 and node.stats.bad["odom_nonfinite"] == 3
    assert "not a unit quaternion (norm 0," in logged[0][1]
    assert "NaN/inf" in logged[1][1] and "quaternion" not in logged[1][1]
    assert "|value| > 1e+09" in logged[2][1]
    assert node.stats.counts["odom_received"] == 1
