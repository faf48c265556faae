"""The Recall@N protocol on hand-built cases whose answer is worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.evaluation.recall import chance_recall_at_1, evaluate_runs, recall_one_pair


def _onehot(ids, dim=8):
    out = np.zeros((len(ids), dim), np.float32)
    out[np.arange(len(ids)), ids] = 1.0
    return out


def test_hand_built_two_runs():
    # Database run: 4 places 100 m apart on a line; descriptor = one-hot of the place.
    db_pos = np.array([[0, 0], [100, 0], [200, 0], [300, 0]], float)
    db = _onehot([0, 1, 2, 3]) * 5.0       # scale must not matter (L2-normalised)
    # Query run: q0 near place 0, retrieved right; q1 near place 1 but looks like
    # place 2 first, place 1 second; q2 near place 3 but looks like place 0 then
    # 2 then 3 (hit only at N=3); q3 is 1 km away (no true neighbour: skipped).
    q_pos = np.array([[3, 0], [110, 0], [290, 5], [1000, 0]], float)
    q = np.stack([_onehot([0])[0],
                  0.9 * _onehot([2])[0] + 0.4 * _onehot([1])[0],
                  0.9 * _onehot([0])[0] + 0.5 * _onehot([2])[0] + 0.3 * _onehot([3])[0],
                  _onehot([1])[0]])
    hits, hits_1pct, n = recall_one_pair(q, q_pos, db, db_pos, top_k=4, radius_m=25.0)
    assert n == 3
    assert hits.tolist() == [1, 2, 3, 3]
    assert hits_1pct == 1                  # cut-off max(round(4/100), 1) = 1
    # Reverse direction, by hand: place 0 retrieves q0 first (hit at 1); place 1
    # looks most like q3 (1 km away), then q1 (hit at 2); place 2 has no query
    # within 25 m (skipped); place 3 retrieves q2 first (hit at 1).
    res = evaluate_runs([q, db], [q_pos, db_pos], top_k=4, radius_m=25.0)
    rev_hits = np.array([2, 3, 3, 3])
    expected = (np.array([1, 2, 3, 3]) / 3 + rev_hits / 3) / 2 * 100
    np.testing.assert_allclose(res.recall_at, expected)
    assert res.pairs == 2 and res.queries == 6
    assert res.r1 == pytest.approx(50.0)
    assert [(i, j) for i, j, _ in res.pair_r1] == [(0, 1), (1, 0)]
    assert res.pair_r1[0][2] == pytest.approx(100 / 3) and res.pair_r1[1][2] == pytest.approx(200 / 3)
    assert "R@1 by pair" not in res.to_dict()  # no run names known


def test_reverse_direction_by_hand():
    db_pos = np.array([[0, 0], [100, 0]], float)
    q_pos = np.array([[5, 0], [105, 0]], float)
    # Query 0 looks like db 1, query 1 looks like db 1: only query 1 is right at N=1.
    hits, h1, n = recall_one_pair(_onehot([1, 1]), q_pos, _onehot([0, 1]), db_pos, top_k=2)
    assert (hits.tolist(), h1, n) == ([1, 2], 1, 2)


def test_perfect_descriptors_give_100_and_pairs_option():
    rng = np.random.default_rng(0)
    pos = np.cumsum(np.full((30, 2), 30.0), axis=0)
    base = rng.normal(size=(30, 16)).astype(np.float32)
    runs = [base + 0.01 * rng.normal(size=base.shape).astype(np.float32) for _ in range(3)]
    res = evaluate_runs(runs, [pos] * 3)
    assert res.pairs == 6 and res.r1 == pytest.approx(100.0) and res.recall_1pct == pytest.approx(100.0)
    res = evaluate_runs(runs, [pos] * 3, pairs=[(0, 1), (0, 2)])
    assert res.pairs == 2 and res.queries == 60
    shuffled = evaluate_runs([runs[0], runs[1][rng.permutation(30)]], [pos, pos])
    assert shuffled.r1 < 30.0
    with pytest.raises(ValueError):
        evaluate_runs(runs, [pos] * 3, pairs=[(1, 1)])


def test_no_true_neighbours_anywhere():
    res = evaluate_runs([_onehot([0]), _onehot([1])], [np.zeros((1, 2)), np.full((1, 2), 500.0)])
    assert res.pairs == 0 and res.queries == 0


def test_chance_recall_by_hand_and_by_simulation():
    # Run A: 2 frames at x=0 and x=10; run B: 4 frames at x=0, 5, 100, 200 (radius 25 m).
    a = np.array([[0, 0], [10, 0]], float)
    b = np.array([[0, 0], [5, 0], [100, 0], [200, 0]], float)
    # A->B: both queries see 2 of 4 true -> 50 %; B->A: the first two see 2 of 2
    # (100 %), the others none (skipped) -> 100 %.  Mean of the pairs: 75 %.
    assert chance_recall_at_1([a, b]) == pytest.approx(75.0)
    # Random descriptors reach it on average.
    rng = np.random.default_rng(1)
    pos = [np.cumsum(rng.uniform(0, 8, (60, 2)), axis=0) for _ in range(2)]
    sims = [evaluate_runs([rng.normal(size=(60, 8)), rng.normal(size=(60, 8))], pos).r1 for _ in range(300)]
    assert np.mean(sims) == pytest.approx(chance_recall_at_1(pos), abs=1.5)
