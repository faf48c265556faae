"""Replay through the real localizer process over DDS (LOCALHOST, random domain).

The node is started by replay_eval itself from the launch-argument table and
stopped with SIGINT (then kill) in a finally; every test checks it is gone.
"""
from __future__ import annotations

import json
import os
import threading

import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_ros.replay.replay_eval import ensure_local_ros_env, run
from test_replay_helpers import eval_args, model_map_fixture, write_bag  # noqa: F401 (fixture)


def _localizers() -> list[int]:
    """PIDs of localizer processes that are children of this test process."""
    me = str(os.getpid())
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = fh.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if ppid == me and b"distilvpr_ros.localizer" in cmd:
            pids.append(int(d))
    return pids


@pytest.mark.slow
def test_ros_recall_at_real_time_rate_matches_offline(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=32)
    out = tmp_path / "cmp"
    assert run(eval_args("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
                         "--out", str(out), "--compare-offline", "--rate", "1.0")) == 0
    cmp = json.loads((out / "comparison.json").read_text())
    assert cmp["recall_at_1_offline"] > 0.5
    assert abs(cmp["difference_points"]) <= 1.0
    ros = json.loads((out / "ros" / "metrics.json").read_text())
    assert ros["complete"] and ros["metrics"]["counts"]["queries"] == 32
    assert ros["metrics"]["counts"]["unmatched_answers"] == 0      # warm-up answer not counted
    assert ros["metrics"]["counts"]["revisits"] == 29
    assert ros["metrics"]["latency_s"]["count"] == 32 - ros["metrics"]["counts"]["dropped"]
    assert ros["metrics"]["latency_s"]["median"] < 0.5
    assert json.loads(ros["meta"]["node_params"])["top_k"] == 5
    assert _localizers() == []


def test_lockstep_sqlite_compressed_answers_every_frame(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=12, storage="sqlite3", compressed=True)
    out = tmp_path / "ls"
    assert run(eval_args("--bag", str(bag), "--image-topic", "/camera/image_raw/compressed",
                         "--map", str(prior_map), "--model", str(model), "--out", str(out),
                         "--pacing", "lockstep", "--node-param", "top_k:=10")) == 0
    res = json.loads((out / "metrics.json").read_text())
    c = res["metrics"]["counts"]
    assert (c["queries"], c["answered"], c["dropped"], c["unmatched_answers"]) == (12, 12, 0, 0)
    assert json.loads(res["meta"]["node_params"])["top_k"] == 10
    assert _localizers() == []


def test_bag_without_pose_topic_still_reports_latency(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=6, with_pose=False)
    out = tmp_path / "np"
    with pytest.raises(UserError, match=r"ground-truth pose topic '/ground_truth/pose' is not in "
                                         r"the bag \(topics in the bag: /camera/image_raw"):
        run(eval_args("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
                  "--out", str(out), "--pacing", "lockstep"))
    res = json.loads((out / "metrics.json").read_text())
    assert not res["complete"] and res["metrics"]["latency_s"]["count"] == 6
    assert res["metrics"]["recall_at_n"]["1"] is None
    assert "INCOMPLETE" in (out / "report.md").read_text()
    assert _localizers() == []


def test_image_topic_of_wrong_type_is_named(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=3)
    with pytest.raises(UserError, match=r"image topic '/ground_truth/pose' has type "
                                         r"geometry_msgs/msg/PoseStamped, expected one of "
                                         r"sensor_msgs/msg/Image"):
        run(eval_args("--bag", str(bag), "--image-topic", "/ground_truth/pose", "--map",
                  str(prior_map), "--model", str(model), "--out", str(tmp_path / "r")))
    res = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert not res["complete"] and res["metrics"]["counts"]["queries"] == 0


def test_empty_bag_is_a_clear_error(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", empty=True)
    with pytest.raises(UserError, match="the bag is empty"):
        run(eval_args("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
                  "--out", str(tmp_path / "r")))
    assert "the bag is empty" in (tmp_path / "r" / "report.md").read_text()


def test_node_that_never_answers_times_out_clearly(tmp_path):
    """A real rclpy node that subscribes to images and advertises candidates, but is silent."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, PointCloud2

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("localizer", namespace="/silent", context=ctx)
    got = []
    node.create_subscription(Image, "/silent/image", got.append, 10)
    node.create_publisher(PointCloud2, "~/candidates", 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        bag = write_bag(tmp_path / "bag", n=4)
        with pytest.raises(UserError, match=r"never answered: no message on "
                                            r"/silent/localizer/candidates within 2 s"):
            run(eval_args("--bag", str(bag), "--out", str(tmp_path / "r"), "--node", "/silent/localizer",
                      "--node-image-topic", "/silent/image", "--answer-timeout", "2"))
        assert got, "the silent node did receive the frame: the timeout is the node's silence"
        res = json.loads((tmp_path / "r" / "metrics.json").read_text())
        assert not res["complete"] and "never answered" in res["missing"][0]
    finally:
        ex.shutdown(timeout_sec=2)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        th.join(5)


def test_node_that_fails_to_start_shows_its_log(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=2)
    with pytest.raises(UserError, match=r"(?s)the localizer exited with code \d+ .*top_k"):
        run(eval_args("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
                  "--out", str(tmp_path / "r"), "--node-param", "top_k:=0"))
    assert _localizers() == []


def test_other_discovery_ranges_are_refused(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    with pytest.raises(UserError, match="ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET"):
        ensure_local_ros_env(need_domain=False)
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE")
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    ensure_local_ros_env(need_domain=False)
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 101
    monkeypatch.delenv("ROS_DOMAIN_ID")
    with pytest.raises(UserError, match="ROS_DOMAIN_ID is not set"):
        ensure_local_ros_env(need_domain=True)


def _synth_town_map(tmp_path, tmp_path_factory, model):
    """The tiny synthetic town (bags with /odom) and a map of its train_noon drive at tmp_path/map."""
    import numpy as np

    from distilvpr_core.data import native
    from distilvpr_core.sim import tiny_dataset
    from distilvpr_ros.synthetic_assets import build_map

    root = tiny_dataset(tmp_path_factory.getbasetemp() / "synth")
    trav = native.open_dataset(root).traversal("train_noon")
    images = np.stack([trav.load_image(i) for i in range(len(trav.stamps_ns))])
    build_map(tmp_path / "map", model, images, trav.poses, trav.stamps_ns, "train_noon")
    return root


@pytest.mark.slow
def test_synthetic_town_bag_ros_agrees_with_offline(tmp_path, tmp_path_factory, model_map):
    """The synthetic-town bag (bagio writer): map from train_noon, replay test_noon in real time."""
    model, root = model_map[0], _synth_town_map(tmp_path, tmp_path_factory, model_map[0])
    out = tmp_path / "cmp"
    assert run(eval_args("--bag", str(root / "bags" / "test_noon"), "--map", str(tmp_path / "map"),
                     "--model", str(model), "--out", str(out), "--compare-offline",
                     "--radius-m", "10")) == 0
    cmp = json.loads((out / "comparison.json").read_text())
    assert cmp["recall_at_1_ros"] is not None and abs(cmp["difference_points"]) <= 1.0
    assert cmp["ros_dropped"] == 0
    assert _localizers() == []


def _per_query(path):
    import csv
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_threshold_and_consistency_change_ros_and_offline_identically(tmp_path, model_map):
    """--compare-offline runs the node's engine with the node's settings: a score
    threshold and a consistency filter change which loop closures are accepted,
    frame by frame, in the same way over DDS and in-process."""
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=16)
    common = ("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
              "--compare-offline", "--pacing", "lockstep")
    assert run(eval_args(*common, "--out", str(tmp_path / "default"))) == 0
    rows = _per_query(tmp_path / "default" / "offline" / "per_query.csv")
    scores = sorted(float(r["top1_score"]) for r in rows)
    threshold = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # between two scores
    strict = ("--node-param", f"score_threshold:={threshold!r}", "--node-param", "consistency_n:=2",
              "--node-param", "consistency_radius_m:=6.0")
    assert run(eval_args(*common, *strict, "--out", str(tmp_path / "strict"))) == 0
    accepted = {}
    for name in ("default", "strict"):
        for path in ("ros", "offline"):
            rows = _per_query(tmp_path / name / path / "per_query.csv")
            assert [r["answered"] for r in rows] == ["1"] * 16, (name, path)
            accepted[name, path] = [r["accepted"] for r in rows]
        assert accepted[name, "ros"] == accepted[name, "offline"], name
        cmp = json.loads((tmp_path / name / "comparison.json").read_text())
        assert cmp["settings_that_differ"] == [] and cmp["difference_points"] == 0.0
        assert abs(cmp["pr_auc_difference_points"]) < 1e-6
    default, strict_acc = accepted["default", "ros"], accepted["strict", "ros"]
    assert strict_acc.count("1") < default.count("1")
    # Consistency: an accepted frame's predecessor passed the threshold too (frame 0's
    # predecessor is the warm-up copy of itself, in both paths).
    offline = _per_query(tmp_path / "strict" / "offline" / "per_query.csv")
    for i, r in enumerate(offline):
        if r["accepted"] == "1":
            assert float(r["top1_score"]) >= threshold
            assert i == 0 or float(offline[i - 1]["top1_score"]) >= threshold
    meta = json.loads((tmp_path / "strict" / "ros" / "metrics.json").read_text())["meta"]
    assert json.loads(meta["node_params"])["consistency_n"] == 2
    assert _localizers() == []


@pytest.mark.slow
def test_sequence_score_sees_the_same_odometry_through_ros_and_offline(tmp_path, tmp_path_factory, model_map):
    """The replay publishes the bag's /odom on the node's odom topic before each frame, as
    offline evaluation feeds it: with the sequence score on, the node accepts and rejects
    frame by frame exactly as the offline engine does (without odometry it rejected all)."""
    model, root = model_map[0], _synth_town_map(tmp_path, tmp_path_factory, model_map[0])
    out = tmp_path / "seq"
    assert run(eval_args("--bag", str(root / "bags" / "test_noon"), "--map", str(tmp_path / "map"),
                     "--model", str(model), "--out", str(out), "--compare-offline", "--pacing", "lockstep",
                     "--radius-m", "10", "--node-param", "sequence_n:=3",
                     "--node-param", "score_threshold:=0.0")) == 0
    ros, offline = (_per_query(out / p / "per_query.csv") for p in ("ros", "offline"))
    assert [r["accepted"] for r in ros] == [r["accepted"] for r in offline]
    assert any(r["accepted"] == "1" for r in ros)
    notes = json.loads((out / "ros" / "metrics.json").read_text())["notes"]
    assert any("odometry: the bag's /odom" in n for n in notes)
