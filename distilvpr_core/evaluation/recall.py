"""Recall@N of place recognition, the PointNetVLAD / DistilVPR protocol.

For every ordered pair of runs (query run i, database run j, i != j):
descriptors are L2-normalised, each query's 25 nearest database entries are
found by cosine similarity, a query counts only if some database frame lies
within ``radius_m`` of it, and it is a hit at N if one of its first N
retrievals is such a true neighbour.  Recall@1..25 and Recall@1% (cut-off
max(round(|db| / 100), 1)) are averaged over the pairs that have queries.

As in the reference (PointNetVLAD's ``get_recall``), a dataset may name the
queries of each run (``query_indices``: the frames in the test regions) and
give each query's true neighbours explicitly (``true_neighbours``: the
evaluation query pickle's per-run lists); otherwise every frame is a query
and true neighbours are recomputed from positions.  One difference: the
reference divides by zero on a pair where no query has a true neighbour,
here such a pair is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import faiss
import numpy as np


@dataclass(frozen=True)
class RecallResult:
    """recall_at: float64 [top_k], recall_at[n-1] = Recall@n in percent;
    recall_1pct: percent; pairs: number of (query, db) run pairs averaged;
    queries: number of evaluated queries summed over the pairs;
    pair_r1: (query run, database run, Recall@1 in percent) of each averaged pair;
    run_names: names of the runs, when known (then ``to_dict`` lists R@1 by pair)."""
    recall_at: np.ndarray
    recall_1pct: float
    pairs: int
    queries: int
    pair_r1: tuple[tuple[int, int, float], ...] = ()
    run_names: tuple[str, ...] = field(default=())

    @property
    def r1(self) -> float:
        return float(self.recall_at[0])

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"R@{n}": float(self.recall_at[n - 1]) for n in (1, 5, 10, 25)
                                       if n <= len(self.recall_at)}
        out.update({"R@1%": float(self.recall_1pct), "pairs": self.pairs, "queries": self.queries})
        if self.run_names:
            out["R@1 by pair"] = {f"{self.run_names[i]}->{self.run_names[j]}": r for i, j, r in self.pair_r1}
        return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def true_neighbours(q_pos: np.ndarray, db_pos: np.ndarray, radius_m: float) -> np.ndarray:
    """bool [Q, M]: database frame m lies within ``radius_m`` of query q (positions in metres)."""
    d2 = ((np.asarray(q_pos, np.float64)[:, None, :] - np.asarray(db_pos, np.float64)[None]) ** 2).sum(-1)
    return d2 <= radius_m ** 2


def _lists_to_mask(lists: Sequence[np.ndarray], n_db: int) -> np.ndarray:
    true = np.zeros((len(lists), n_db), dtype=bool)
    for q, nb in enumerate(lists):
        true[q, np.asarray(nb, dtype=np.int64)] = True
    return true


def recall_one_pair(q_desc: np.ndarray, q_pos: np.ndarray, db_desc: np.ndarray, db_pos: np.ndarray,
                    top_k: int = 25, radius_m: float = 25.0,
                    true_lists: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, int, int]:
    """Hits of one query run against one database run.

    q_desc float [Q, D], q_pos float [Q, 2|3] metres; db_desc [M, D], db_pos [M, 2|3].
    ``true_lists``: optional, per query an int array of its true neighbours'
    database indices (then ``q_pos``/``db_pos``/``radius_m`` are not used).
    Returns (hits int64 [top_k]: queries whose first true neighbour is within
    the first n retrievals, cumulative over n; hits at the 1 % cut-off;
    number of queries with a true neighbour).
    """
    k = min(top_k, len(db_desc))
    if len(q_desc) == 0:
        return np.zeros(top_k, dtype=np.int64), 0, 0
    index = faiss.IndexFlatIP(db_desc.shape[1])
    index.add(_normalise(db_desc))
    _, nn = index.search(_normalise(q_desc), k)
    if true_lists is not None:
        if len(true_lists) != len(q_desc):
            raise ValueError(f"{len(true_lists)} true-neighbour lists for {len(q_desc)} queries")
        true = _lists_to_mask(true_lists, len(db_desc))
    else:
        true = true_neighbours(q_pos, db_pos, radius_m)   # [Q, M]
    has_true = true.any(axis=1)
    correct = np.take_along_axis(true, nn, axis=1)[has_true]   # [Q', k] retrieval is a true neighbour
    first_hit = np.where(correct.any(axis=1), correct.argmax(axis=1), top_k)
    hits = np.array([(first_hit < n).sum() for n in range(1, top_k + 1)], dtype=np.int64)
    cut = max(int(round(len(db_desc) / 100.0)), 1)
    # Only the top_k retrievals are searched (as in the reference): with more than
    # 100 * top_k database frames the 1 % cut-off is past them and a query whose
    # first true neighbour is not among them is a miss (first_hit == top_k here).
    hits_1pct = int(((first_hit < cut) & (first_hit < k)).sum())
    return hits, hits_1pct, int(has_true.sum())


def evaluate_runs(descs: Sequence[np.ndarray], positions: Sequence[np.ndarray],
                  top_k: int = 25, radius_m: float = 25.0,
                  pairs: Sequence[tuple[int, int]] | None = None,
                  query_indices: Sequence[np.ndarray | None] | None = None,
                  true_neighbours: Mapping[tuple[int, int], Sequence[np.ndarray]] | None = None
                  ) -> RecallResult:
    """Average Recall over every ordered pair (i, j), i != j, of runs.

    descs[i] float [N_i, D]; positions[i] float [N_i, 2|3] metres, same frame for all runs.
    ``pairs`` restricts the (query run, database run) pairs (validation uses
    the val run as query only).  ``query_indices[i]`` int [Q_i]: the frames of
    run i used as queries (None or absent: all).  ``true_neighbours[(i, j)]``:
    per query of run i (in ``query_indices[i]`` order) an int array of its true
    neighbours' frame indices in run j; pairs not in it use ``radius_m``.
    Pairs without any query that has a true neighbour are skipped.
    """
    if len(descs) != len(positions) or len(descs) < 2:
        raise ValueError("need descriptors and positions of at least two runs")
    if pairs is None:
        pairs = [(i, j) for i in range(len(descs)) for j in range(len(descs)) if i != j]
    recalls, r1pct, queries, pair_r1 = [], [], 0, []
    for i, j in pairs:
        if i == j:
            raise ValueError(f"pair ({i}, {j}): a run is never its own database")
        q = None if query_indices is None else query_indices[i]
        q_desc, q_pos = (descs[i], positions[i]) if q is None else \
            (np.asarray(descs[i])[q], np.asarray(positions[i])[q])
        lists = None if true_neighbours is None else true_neighbours.get((i, j))
        hits, hits_1pct, n = recall_one_pair(q_desc, q_pos, descs[j], positions[j], top_k, radius_m, lists)
        if n == 0:
            continue
        recalls.append(100.0 * hits / n)
        pair_r1.append((i, j, float(recalls[-1][0])))
        r1pct.append(100.0 * hits_1pct / n)
        queries += n
    if not recalls:
        return RecallResult(np.zeros(top_k), 0.0, 0, 0)
    return RecallResult(np.mean(recalls, axis=0), float(np.mean(r1pct)), len(recalls), queries,
                        tuple(pair_r1))


def chance_recall_at_1(positions: Sequence[np.ndarray], radius_m: float = 25.0) -> float:
    """Expected Recall@1 in percent of descriptors that carry no information,
    averaged over the ordered run pairs like :func:`evaluate_runs`.

    positions[i] float [N_i, 2|3] metres.  A query with t true neighbours among
    the M database frames is right with probability t / M; queries without a
    true neighbour are skipped, as are pairs without any such query.
    """
    per_pair = []
    for i, q in enumerate(positions):
        for j, db in enumerate(positions):
            if i == j:
                continue
            t = true_neighbours(q, db, radius_m).sum(axis=1)
            if (t > 0).any():
                per_pair.append(100.0 * float(np.mean(t[t > 0] / len(db))))
    return float(np.mean(per_pair)) if per_pair else 0.0


# -- Recall@N and precision-recall from a retrieval table (loop-closure metrics, baselines) --
def recall_from_correct(correct: np.ndarray, counted: np.ndarray, ns: Sequence[int]) -> dict[int, float | None]:
    """Recall@N from a retrieval table: ``correct`` bool [Q, k] (rank r of query q
    is a true neighbour), ``counted`` bool [Q] (queries that have a true
    neighbour: the denominator).  Fraction in [0, 1] per N; None without any
    counted query.  The loop-closure metrics and the baselines use this."""
    total = int(counted.sum())
    result: dict[int, float | None] = {}
    for n in ns:
        hit = correct[:, :n].any(axis=1) & counted
        result[int(n)] = float(hit.sum()) / total if total else None
    return result


def pr_curve(scores: np.ndarray, correct: np.ndarray, n_revisits: int) -> dict[str, Any]:
    """Precision/recall of top-1 predictions at every distinct score threshold.

    Args:
        scores: float [P] top-1 scores of the predicting queries (evaluable
            queries with at least one candidate).
        correct: bool [P] whether each of those top-1 candidates is correct.
        n_revisits: recall denominator.

    Returns a dict with ``thresholds``, ``precision``, ``recall`` (lists,
    thresholds descending), ``auc`` (average precision) and
    ``max_recall_at_100_precision`` with its ``threshold_at_100_precision``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    empty = {"thresholds": [], "precision": [], "recall": [], "auc": None,
             "max_recall_at_100_precision": None, "threshold_at_100_precision": None}
    if n_revisits == 0:
        return empty
    if len(scores) == 0:
        return {**empty, "auc": 0.0, "max_recall_at_100_precision": 0.0}
    order = np.argsort(-scores, kind="stable")
    s, c = scores[order], correct[order]
    tp = np.cumsum(c)
    fp = np.cumsum(~c)
    # Ties share a threshold: keep the last index of each run of equal scores.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    thr, tp, fp = s[last], tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_revisits
    auc = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    perfect = precision >= 1.0
    if perfect.any():
        best = int(np.argmax(np.where(perfect, recall, -1.0)))
        max_r, thr_r = float(recall[best]), float(thr[best])
    else:
        max_r, thr_r = 0.0, None
    return {"thresholds": thr.tolist(), "precision": precision.tolist(),
            "recall": recall.tolist(), "auc": auc,
            "max_recall_at_100_precision": max_r, "threshold_at_100_precision": thr_r}
