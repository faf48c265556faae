"""Per-stage metrics (raw, sequence, geometric, both) and the recommended operating point."""
from __future__ import annotations

import json

import numpy as np
import pytest

from distilvpr_core.localize.settings import LocalizerSettings
from distilvpr_core.loopeval.outcome import QueryOutcome
from distilvpr_core.loopeval.report import write_report
from distilvpr_core.loopeval.stages import stage_metrics, stage_predictions

MAP = np.array([[0.0, 0, 0], [100.0, 0, 0], [200.0, 0, 0]])


def outcome(i, truth, ids, cos, inliers, match_rank=0, odom_x=None):
    """Query i at position ``truth``; candidates ``ids`` (published order: match first)."""
    return QueryOutcome(i, np.array([truth, 0.0, 0.0]), True, np.array(ids), np.array(cos, np.float32),
                        MAP[ids], stage={"match_rank": match_rank, "raw_score": float(max(cos)),
                                         "inliers": inliers, "verified": inliers >= 10, "rotation": None,
                                         "match_orientation": None, "embed_s": 0.01, "verify_s": 0.02,
                                         "verify_ran": True,
                                         "odom": None if odom_x is None else np.array([odom_x, 0, 0.0])})


def test_raw_uses_retrieval_top1_and_geometric_the_verified_match():
    # Verification promoted keyframe 0 (retrieval rank 1) to the front: raw is wrong, geometric right.
    o = [outcome(0, 0.0, [0, 1], [0.7, 0.8], 30, match_rank=1)]
    p = stage_predictions(o, 25.0, LocalizerSettings(), seq_n=3)
    assert p["raw"][0][0] == pytest.approx(0.8) and not p["raw"][1][0]
    assert p["geometric"][0][0] == 30 and p["geometric"][1][0]
    assert np.isnan(p["sequence"][0][0])  # no odometry: the sequence gate fails


def test_geometric_needs_the_cosine_threshold():
    o = [outcome(0, 0.0, [0, 1], [0.3, 0.2], 40)]
    p = stage_predictions(o, 25.0, LocalizerSettings(score_threshold=0.5), seq_n=3)
    assert np.isnan(p["geometric"][0][0]) and np.isnan(p["both"][0][0])


def test_recommendation_is_the_highest_recall_at_precision_099(tmp_path):
    s = LocalizerSettings(score_threshold=0.5, verify_min_inliers=10)
    # High cosine does not separate right from wrong here; inliers do.
    outs = [outcome(0, 0.0, [0], [0.9], 40), outcome(1, 100.0, [0], [0.95], 6),
            outcome(2, 200.0, [2], [0.8], 25), outcome(3, 100.0, [1], [0.6], 12)]
    revisit = np.ones(4, bool)
    m = stage_metrics(outs, revisit, 25.0, s)
    assert m["stages"]["raw"]["max_recall_at_100_precision"] == 0.0
    assert m["stages"]["geometric"]["max_recall_at_100_precision"] == 0.75
    rec = m["recommended"]
    assert rec["stage"] == "geometric" and rec["threshold"] == 12.0 and rec["precision"] == 1.0
    assert rec["params"] == {"verify": True, "score_threshold": 0.5, "verify_min_inliers": 12}
    op = m["stages"]["geometric"]["operating_point"]
    assert (op["accepted"], op["correct"]) == (3, 3)
    result = write_report(tmp_path / "r", outs, MAP, meta={"title": "t"}, stages=m)
    assert (tmp_path / "r" / "pr_stages.png").stat().st_size > 1000
    assert "Recommended operating point" in (tmp_path / "r" / "report.md").read_text()
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]["stages"]["recommended"][
        "stage"] == "geometric" == result["metrics"]["stages"]["recommended"]["stage"]


def test_a_metric_map_recommends_pnp_min_inliers():
    # With 3D points the geometric score is the PnP inlier count; its setting is pnp_min_inliers.
    s = LocalizerSettings(score_threshold=0.5, pnp_min_inliers=6)
    outs = [outcome(0, 0.0, [0], [0.9], 40), outcome(1, 100.0, [0], [0.95], 7),
            outcome(2, 200.0, [2], [0.8], 25), outcome(3, 100.0, [1], [0.6], 12)]
    m = stage_metrics(outs, np.ones(4, bool), 25.0, s, metric=True)
    assert m["stages"]["geometric"]["operating_point"]["threshold"] == 6
    assert m["recommended"]["params"] == {"verify": True, "score_threshold": 0.5, "pnp_min_inliers": 12}


def test_a_metric_pose_the_pose_checks_refused_is_no_geometric_closure():
    # The demo counted a PnP pose with enough inliers as an accepted closure although the
    # odometry check refused it (so the node never published it).
    s = LocalizerSettings(score_threshold=0.5, pnp_min_inliers=6)
    outs = [outcome(0, 0.0, [0], [0.9], 40), outcome(1, 100.0, [0], [0.95], 9)]
    for o, ok in zip(outs, (True, False)):
        o.stage.update(pose=np.zeros(7), geometry_ok=ok)
    p = stage_predictions(outs, 25.0, s, seq_n=3)
    assert p["geometric"][0][0] == 40 and np.isnan(p["geometric"][0][1])
    op = stage_metrics(outs, np.ones(2, bool), 25.0, s, metric=True)["stages"]["geometric"]["operating_point"]
    assert (op["accepted"], op["correct"]) == (1, 1)


def test_sequence_stage_passes_only_where_odometry_and_map_steps_agree():
    s = LocalizerSettings(sequence_tolerance_m=5.0, sequence_min_score=1.0)
    outs = [outcome(0, 0.0, [0], [0.9], 30, odom_x=0.0), outcome(1, 100.0, [1], [0.9], 30, odom_x=100.0),
            outcome(2, 200.0, [2], [0.9], 30, odom_x=200.0), outcome(3, 100.0, [0], [0.9], 30, odom_x=210.0)]
    p = stage_predictions(outs, 25.0, s, seq_n=3)
    assert np.isnan(p["sequence"][0][:2]).all()      # history too short
    assert p["sequence"][0][2] == pytest.approx(0.9)    # steps of 100 m on both
    assert np.isnan(p["sequence"][0][3])             # map jumped back 200 m, odometry moved 10 m
