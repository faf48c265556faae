"""Loop-closure metrics against values computed by hand on a tiny case."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.foundation.config import ConfigError, load_config
from distilvpr_core.loopeval.config import EvalConfig
from distilvpr_core.loopeval.groundtruth import positions_at
from distilvpr_core.loopeval.matching import Answer, SentFrame, match_answers
from distilvpr_core.loopeval.metrics import compute_metrics, pr_curve
from distilvpr_core.loopeval.outcome import QueryOutcome

MAP = np.array([[0, 0, 0], [100, 0, 0], [200, 0, 0]], dtype=np.float64)


def _q(stamp, pos, ids=(), scores=(), answered=True, latency=None):
    return QueryOutcome(stamp, None if pos is None else np.array(pos, float), answered,
                        np.array(ids, np.int64), np.array(scores, np.float32),
                        MAP[list(ids)] if ids else np.zeros((0, 3)), latency)


def hand_case() -> list[QueryOutcome]:
    """7 queries; map keyframes at x = 0, 100, 200 m; radius 25 m.

    q0 revisit, top-1 right (0.9)      q1 revisit, top-1 wrong (0.8), top-2 right
    q2 not a revisit, predicts (0.6)   q3 revisit, dropped
    q4 no ground truth (ignored)       q5 revisit, top-1 right (0.4)
    q6 revisit, empty answer
    """
    return [_q(0, (5, 0, 0), [0, 1], [0.9, 0.5], latency=0.1),
            _q(1, (102, 0, 0), [2, 1], [0.8, 0.7], latency=0.2),
            _q(2, (500, 0, 0), [2], [0.6], latency=0.3),
            _q(3, (198, 0, 0), answered=False),
            _q(4, None, [0], [0.95], latency=0.4),
            _q(5, (0, 10, 0), [0], [0.4], latency=0.5),
            _q(6, (210, 0, 0), [], [], latency=0.6)]


def test_metrics_equal_hand_computed_values():
    m = compute_metrics(hand_case(), MAP, EvalConfig(radius_m=25.0, recall_ns=[1, 5, 10]))
    assert m["counts"] == {"queries": 7, "with_ground_truth": 6, "revisits": 5, "answered": 6,
                           "dropped": 1, "empty_answers": 1, "correct_top1": 2,
                           "incorrect_top1": 2}
    assert m["recall_at_n"] == pytest.approx({"1": 2 / 5, "5": 3 / 5, "10": 3 / 5})
    # Top-1 predictions by score: .9 T, .8 F, .6 F, .4 T; 5 revisits.
    assert m["pr_curve"]["thresholds"] == pytest.approx([0.9, 0.8, 0.6, 0.4])
    assert m["pr_curve"]["precision"] == pytest.approx([1.0, 0.5, 1 / 3, 0.5])
    assert m["pr_curve"]["recall"] == pytest.approx([0.2, 0.2, 0.2, 0.4])
    assert m["pr_auc"] == pytest.approx(0.2 * 1.0 + 0.2 * 0.5)
    assert m["max_recall_at_100_precision"] == pytest.approx(0.2)
    assert m["threshold_at_100_precision"] == pytest.approx(0.9)
    fps = m["false_positives"]
    assert [(f["query_index"], f["map_id"]) for f in fps] == [(1, 2), (2, 2)]
    assert [f["distance_m"] for f in fps] == pytest.approx([98.0, 300.0])
    lat = m["latency_s"]
    assert lat["count"] == 6
    assert lat["mean"] == pytest.approx(0.35) and lat["median"] == pytest.approx(0.35)
    assert (lat["min"], lat["max"]) == pytest.approx((0.1, 0.6))


def test_radius_changes_what_counts_as_correct():
    # At 5 m, q5 (10 m from keyframe 0) is no longer a revisit or a hit; q1, q2 unchanged.
    m = compute_metrics(hand_case(), MAP, EvalConfig(radius_m=5.0))
    assert m["counts"]["revisits"] == 3          # q0 (5 m), q1 (2 m), q3 (2 m, dropped)
    assert m["recall_at_n"]["1"] == pytest.approx(1 / 3)
    assert m["recall_at_n"]["5"] == pytest.approx(2 / 3)


def test_tied_scores_share_one_threshold_and_no_perfect_point():
    pr = pr_curve(np.array([0.7, 0.7, 0.5]), np.array([False, True, True]), n_revisits=4)
    assert pr["thresholds"] == pytest.approx([0.7, 0.5])
    assert pr["precision"] == pytest.approx([0.5, 2 / 3])
    assert pr["recall"] == pytest.approx([0.25, 0.5])
    assert pr["auc"] == pytest.approx(0.25 * 0.5 + 0.25 * 2 / 3)
    assert pr["max_recall_at_100_precision"] == 0.0


def test_no_revisits_gives_none_not_a_number():
    out = [_q(0, (500, 0, 0), [0], [0.9])]
    m = compute_metrics(out, MAP)
    assert m["recall_at_n"]["1"] is None and m["pr_auc"] is None
    assert m["counts"]["incorrect_top1"] == 1


def test_unknown_map_counts_every_query_with_ground_truth_as_revisit():
    m = compute_metrics(hand_case(), None)
    assert m["counts"]["revisits"] == 6
    assert m["recall_at_n"]["1"] == pytest.approx(2 / 6)


def test_positions_interpolated_and_gaps_left_empty():
    ts = np.array([0, 1_000_000_000, 2_000_000_000], np.int64)
    xyz = np.array([[0, 0, 0], [10, 0, 0], [10, 20, 0]], float)
    q = np.array([500_000_000, 1_500_000_000, 2_400_000_000, 3_000_000_000], np.int64)
    out = positions_at(ts, xyz, q, max_gap_s=0.5)
    assert out[0] == pytest.approx([5, 0, 0]) and out[1] == pytest.approx([10, 10, 0])
    assert out[2] == pytest.approx([10, 20, 0])      # 0.4 s past the end: held
    assert np.isnan(out[3]).all()                    # 1 s past the end: no ground truth


def test_answers_matched_by_stamp_with_latency_drops_and_strays():
    sent = [SentFrame(10, 100.0), SentFrame(20, 101.0), SentFrame(30, 102.0)]
    row = (np.array([0]), np.array([0.9], np.float32), MAP[:1])
    answers = [Answer(20, 101.25, *row), Answer(20, 101.5, *row), Answer(99, 103.0, *row),
               Answer(10, 100.5, *row)]
    gt = np.array([[0, 0, 0], [np.nan] * 3, [1, 0, 0]])
    out, summary = match_answers(sent, answers, gt)
    assert [o.answered for o in out] == [True, True, False]
    assert out[0].latency_s == pytest.approx(0.5) and out[1].latency_s == pytest.approx(0.25)
    assert out[1].position is None and out[2].latency_s is None
    assert (summary.unmatched_answers, summary.duplicate_answers) == (1, 1)


def test_config_rejects_bad_values_with_key_names():
    with pytest.raises(ConfigError, match="radius_m"):
        load_config(EvalConfig, data={"radius_m": -1})
    with pytest.raises(ConfigError, match="recall_ns"):
        load_config(EvalConfig, data={"recall_ns": [0, 5]})
