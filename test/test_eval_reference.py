"""Recall with query subsets and given true-neighbour lists equals a direct,
loop-by-loop implementation of the reference protocol (PointNetVLAD's
get_recall as DistilVPR runs it: L2-normalised descriptors, top-25 by cosine,
per-run neighbour lists from the query pickle, Recall@1% cut-off
max(round(|db| / 100), 1) applied to the top 25)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distilvpr_core.evaluation.recall import evaluate_runs


def reference_recall(database_vectors, query_vectors, query_sets, num_neighbors=25):
    """(Recall@1..N in percent averaged over run pairs, Recall@1% in percent).

    database_vectors[m] [M_m, D]; query_vectors[n] [Q_n, D]; query_sets[n][i][m]:
    true neighbours (database indices of run m) of query i of run n.  Only
    adaptation: N is capped at the database size (torch.topk needs k <= M)."""
    recall, count, one_percent = np.zeros(num_neighbors), 0, []
    for m in range(len(query_sets)):           # database run
        for n in range(len(query_sets)):       # query run
            if m == n:
                continue
            db = torch.nn.functional.normalize(torch.as_tensor(database_vectors[m], dtype=torch.float32), dim=1)
            q = torch.nn.functional.normalize(torch.as_tensor(query_vectors[n], dtype=torch.float32), dim=1)
            k = min(num_neighbors, len(db))
            _, indices = torch.topk(q @ db.T, k=k, dim=1, largest=True, sorted=True)
            threshold = max(int(round(len(db) / 100.0)), 1)
            pair, retrieved, evaluated = np.zeros(num_neighbors), 0, 0
            for i in range(len(q)):
                true = query_sets[n][i][m]
                if len(true) == 0:
                    continue
                evaluated += 1
                row = indices[i].numpy()
                for j in range(len(row)):
                    if row[j] in true:
                        pair[j] += 1
                        break
                if set(row[:threshold].tolist()) & set(true):
                    retrieved += 1
            recall += np.cumsum(pair) / evaluated * 100
            count += 1
            one_percent.append(retrieved / evaluated * 100)
    return recall / count, float(np.mean(one_percent))


def _fixture(sizes, n_queries, seed=0, offset=(5.7e6, 6.2e5)):
    """Runs along one road (UTM-scale positions), descriptors = noisy place codes;
    queries are a contiguous "test region" subset of each run."""
    rng = np.random.default_rng(seed)
    places = rng.normal(size=(750, 16))                        # a code every 2 m of a 1.5 km road
    descs, pos, qidx = [], [], []
    for r, n in enumerate(sizes):
        s = np.sort(rng.uniform(0, 1500.0, n))                # metres along the road
        pos.append(np.c_[offset[0] + s, offset[1] + rng.normal(0, 2, n)])
        descs.append(places[(s / 2.0).astype(int).clip(0, 749)] + rng.normal(0, 0.8, (n, 16)))
        start = rng.integers(0, n - n_queries[r])
        qidx.append(np.arange(start, start + n_queries[r]))
    lists = {}
    for i in range(len(sizes)):
        for j in range(len(sizes)):
            if i != j:
                d = np.linalg.norm(pos[i][qidx[i]][:, None] - pos[j][None], axis=2)
                lists[(i, j)] = [np.flatnonzero(row <= 25.0) for row in d]
    return descs, pos, qidx, lists


@pytest.mark.parametrize("sizes", [(300, 240, 180), (2600, 400, 350)])   # 2600: 1 % cut-off 26 > 25
def test_query_subsets_match_the_reference_protocol(sizes):
    descs, pos, qidx, lists = _fixture(sizes, [120, 90, 80])
    query_sets = [{k: {j: lists[(i, j)][k].tolist() for j in range(len(sizes)) if j != i}
                   for k in range(len(qidx[i]))} for i in range(len(sizes))]
    want, want_1pct = reference_recall(descs, [d[q] for d, q in zip(descs, qidx)], query_sets)
    got = evaluate_runs(descs, pos, 25, 25.0, query_indices=qidx, true_neighbours=lists)
    np.testing.assert_allclose(got.recall_at, want, atol=0.01)
    assert got.recall_1pct == pytest.approx(want_1pct, abs=0.01)
    assert 5 < got.r1 < 95                                    # neither trivial nor hopeless
    # Every frame as a query (what the project did before) gives other numbers.
    assert evaluate_runs(descs, pos, 25, 25.0).queries > got.queries
    # Given lists that equal the 25 m recomputation give the same result as recomputing,
    # at UTM scale (positions float64) and with the offset removed.
    recomputed = evaluate_runs(descs, pos, 25, 25.0, query_indices=qidx)
    local = evaluate_runs(descs, [p - pos[0][0] for p in pos], 25, 25.0, query_indices=qidx)
    np.testing.assert_allclose(recomputed.recall_at, got.recall_at)
    np.testing.assert_allclose(local.recall_at, got.recall_at)


def test_given_lists_win_over_positions():
    """The query pickle's lists are the truth even where positions would say otherwise."""
    q = np.eye(3, dtype=np.float32)
    db = np.array([[1, 0, 0], [0, 1, 0], [0, 0.8, 0.6]], np.float32)   # query 1: db 1, then db 2
    far = [np.zeros((3, 2)), np.full((3, 2), 1000.0)]          # positions: nothing within 25 m
    lists = {(0, 1): [np.array([0]), np.array([2]), np.array([], np.int64)]}
    res = evaluate_runs([q, db], far, top_k=2, pairs=[(0, 1)], true_neighbours=lists)
    assert res.queries == 2 and res.recall_at.tolist() == [50.0, 100.0]
    sub = evaluate_runs([q, db], far, top_k=2, pairs=[(0, 1)], true_neighbours={(0, 1): [np.array([0])]},
                        query_indices=[np.array([0]), None])
    assert sub.queries == 1 and sub.r1 == 100.0
