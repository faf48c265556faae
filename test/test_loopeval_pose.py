"""Pose metrics of the replay report: errors, threshold shares, wrong closures, plots."""
from __future__ import annotations

import json

import numpy as np

from distilvpr_core.features.rotations import rotation_to_quat
from distilvpr_core.loopeval.outcome import QueryOutcome
from distilvpr_core.loopeval.pose_metrics import pose_error, pose_metrics
from distilvpr_core.loopeval.report import write_report

MAP = np.array([[0.0, 0, 0], [10.0, 0, 0], [20.0, 0, 0]])


def _rz(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _outcome(i, true_xyz, est_offset, est_deg, localized=True, pose=True):
    q_true = np.array([0, 0, 0, 1.0])
    est = np.r_[np.asarray(true_xyz) + est_offset, rotation_to_quat(_rz(est_deg))]
    stage = {"match_rank": 0, "raw_score": 0.9, "inliers": 30, "verified": pose, "rotation": None,
             "match_orientation": q_true, "embed_s": 0.01, "verify_s": 0.02, "verify_ran": True,
             "odom": None, "pose": est if pose else None, "localized": localized and pose,
             "pose_consistent": True}
    return QueryOutcome(1000 + i, np.asarray(true_xyz, float), True, np.array([0]), np.array([0.9], np.float32),
                        MAP[:1], accepted=localized, stage=stage, orientation=q_true,
                        published_pose=est if (localized and pose) else None)


def _outcomes():
    return [_outcome(0, [0.5, 0, 0], [0.1, 0, 0], 1.0),          # within 0.25 m, 2 deg
            _outcome(1, [10.0, 1, 0], [0.0, 0.4, 0], 4.0),       # within 0.5 m, 5 deg
            _outcome(2, [20.0, 0, 0], [3.0, 0, 0], 8.0),         # within 5 m, 10 deg
            _outcome(3, [10.0, 0, 0], [0, 30.0, 0], 0.0),        # a wrong closure (30 m)
            _outcome(4, [0.0, 2, 0], [0.1, 0, 0], 0.0, localized=False),   # rejected later
            _outcome(5, [20.0, 2, 0], [0, 0, 0], 0.0, pose=False),         # no pose
            _outcome(6, [200.0, 0, 0], [0, 0, 0], 0.0, pose=False)]        # not a revisit


def test_pose_error_is_translation_and_rotation_angle():
    t, r = pose_error(np.r_[1.0, 2.0, 2.0, rotation_to_quat(_rz(30.0))], np.zeros(3), [0, 0, 0, 1.0])
    assert np.isclose(t, 3.0) and np.isclose(r, 30.0)


def test_shares_count_revisits_without_a_pose_as_missed():
    pm = pose_metrics(_outcomes(), MAP)
    pub, pnp = pm["stages"]["published"], pm["stages"]["pnp"]
    assert pub["revisits"] == 6 and pub["poses"] == 4 and pnp["poses"] == 5
    assert pub["share_of_revisits"] == {"0.25m_2deg": 1 / 6, "0.5m_5deg": 2 / 6, "5m_10deg": 3 / 6}
    assert pub["share_of_poses"]["5m_10deg"] == 3 / 4
    assert pub["wrong_closures"] == 1 and pnp["wrong_closures"] == 1
    assert np.isclose(pub["translation_m"]["median"], (0.4 + 3.0) / 2)
    assert pm["retrieval"]["top_k"] is not None


def test_no_pose_anywhere_gives_no_section_unless_asked():
    outs = [_outcome(0, [0.5, 0, 0], [0, 0, 0], 0.0, pose=False)]
    assert pose_metrics(outs, MAP) is None
    assert pose_metrics(outs, MAP, always=True)["stages"]["published"]["poses"] == 0


def test_report_carries_pose_metrics_plot_and_section(tmp_path):
    res = write_report(tmp_path, _outcomes(), MAP)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["pose"]["stages"]["published"]["wrong_closures"] == 1
    assert res["metrics"]["pose"]["thresholds"] == [[0.25, 2.0], [0.5, 5.0], [5.0, 10.0]]
    assert (tmp_path / "pose_error_cdf.png").stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "## Metric pose" in md and "pose_error_cdf.png" in md


def test_ros_outcomes_score_the_published_poses_only():
    # The ROS path has no engine record per query, only the node's ~/pose of each frame.
    outs = _outcomes()
    for o in outs:
        o.stage = None
    pm = pose_metrics(outs, MAP)
    assert list(pm["stages"]) == ["published"]
    assert pm["stages"]["published"] == pose_metrics(_outcomes(), MAP)["stages"]["published"]
    assert pm["latency_s"]["verify_and_pose_p50"] is None
