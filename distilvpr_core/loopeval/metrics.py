"""Loop-closure metrics: Recall@N, precision-recall over the score threshold, latency.

Definitions (the SLAM-back-end view, documented in docs/replay_eval.md):

* A query is *evaluable* when it has a ground-truth position.  It is a
  *revisit* when some map keyframe lies within ``radius_m`` of it; only
  revisits can be recalled, so they form every recall denominator.
* Recall@N = revisits whose top-N candidates contain a correct one / revisits.
  A dropped frame or an empty answer is a miss.
* The precision-recall curve thresholds the top-1 score: at threshold t every
  evaluable query whose top-1 score >= t is a predicted loop closure, true if
  that top-1 is correct.  precision = TP / (TP + FP), recall = TP / revisits.
  A prediction on a query that is not a revisit is always false.
* The operating point is the localizer's own decision: a query whose top-1
  it accepted (score threshold and consistency filter) is a predicted loop
  closure; precision and recall as above, over evaluable queries.
* AUC is the step-wise average precision sum_k (R_k - R_{k-1}) P_k over the
  distinct thresholds from high to low (as scikit-learn's average precision).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..evaluation.recall import pr_curve, recall_from_correct
from .config import EvalConfig
from .outcome import QueryOutcome

__all__ = ["compute_metrics", "correct_matrix", "latency_stats", "operating_point", "pr_curve",
           "revisit_mask"]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of float [Q, 3] and float [M, 3] -> [Q, M]."""
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def revisit_mask(outcomes: Sequence[QueryOutcome], map_positions: np.ndarray | None,
                 radius_m: float) -> np.ndarray:
    """bool [Q]: query has ground truth and a map keyframe within ``radius_m``.

    ``map_positions`` float64 [M, 3] (map frame, metres).  ``None`` means the
    map is unknown: every query with ground truth is then counted a revisit.
    """
    has_gt = np.array([o.position is not None for o in outcomes], dtype=bool)
    if map_positions is None or not has_gt.any():
        return has_gt
    mp = np.asarray(map_positions, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(outcomes), dtype=bool)
    if len(mp) == 0:
        return out
    idx = np.flatnonzero(has_gt)
    pos = np.stack([outcomes[i].position for i in idx])
    # Chunked so a 10k-query x 10k-keyframe evaluation stays small in memory.
    for start in range(0, len(idx), 1024):
        d = _distances(pos[start:start + 1024], mp)
        out[idx[start:start + 1024]] = (d <= radius_m).any(axis=1)
    return out


def correct_matrix(outcomes: Sequence[QueryOutcome], radius_m: float, k: int) -> np.ndarray:
    """bool [Q, k]: candidate r of query q is within ``radius_m`` of its true position.

    Missing candidates (fewer than k, unanswered, no ground truth) are False.
    """
    out = np.zeros((len(outcomes), k), dtype=bool)
    for q, o in enumerate(outcomes):
        if o.position is None or len(o.cand_ids) == 0:
            continue
        d = np.linalg.norm(o.cand_positions[:k] - o.position[None, :], axis=1)
        out[q, :len(d)] = d <= radius_m
    return out


def latency_stats(latencies_s: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, min, median, p90, p95, p99, max of per-frame latencies (seconds)."""
    x = np.asarray([v for v in latencies_s if v is not None], dtype=np.float64)
    keys = ("mean", "min", "median", "p90", "p95", "p99", "max")
    if len(x) == 0:
        return {"count": 0, **{k: None for k in keys}}
    vals = (x.mean(), x.min(), *np.percentile(x, [50, 90, 95, 99]), x.max())
    return {"count": int(len(x)), **{k: float(v) for k, v in zip(keys, vals)}}


def false_positives(outcomes: Sequence[QueryOutcome], correct_top1: np.ndarray,
                    limit: int) -> list[dict[str, Any]]:
    """The ``limit`` highest-scoring wrong top-1 candidates, with their distances (m)."""
    rows = []
    for q, o in enumerate(outcomes):
        if o.position is None or len(o.cand_ids) == 0 or correct_top1[q]:
            continue
        rows.append({"query_index": q, "query_stamp_ns": o.stamp_ns,
                     "query_xyz": o.position.tolist(), "map_id": int(o.cand_ids[0]),
                     "map_xyz": o.cand_positions[0].tolist(), "score": float(o.cand_scores[0]),
                     "distance_m": float(np.linalg.norm(o.cand_positions[0] - o.position))})
    rows.sort(key=lambda r: -r["score"])
    return rows[:limit]


def operating_point(outcomes: Sequence[QueryOutcome], correct_top1: np.ndarray,
                    revisit: np.ndarray) -> dict[str, Any]:
    """Precision and recall of the localizer's accepted loop closures.

    ``correct_top1`` bool [Q]; ``revisit`` bool [Q].  All values are None when
    no outcome says whether it was accepted (a source that does not report it).
    """
    if not any(o.accepted is not None for o in outcomes):
        return {"accepted": None, "accepted_correct": None, "precision": None, "recall": None}
    accepted = np.array([bool(o.accepted) and o.position is not None for o in outcomes], dtype=bool)
    tp = int((accepted & correct_top1).sum())
    n_acc, n_rev = int(accepted.sum()), int(revisit.sum())
    return {"accepted": int(sum(bool(o.accepted) for o in outcomes)), "accepted_correct": tp,
            "precision": tp / n_acc if n_acc else None, "recall": tp / n_rev if n_rev else None}


def compute_metrics(outcomes: Sequence[QueryOutcome], map_positions: np.ndarray | None,
                    cfg: EvalConfig | None = None) -> dict[str, Any]:
    """All metrics of one evaluation as a JSON-ready dict.

    ``map_positions``: float64 [M, 3] positions of all map keyframes (map
    frame, metres), used to decide which queries are revisits; ``None`` if
    the map is unknown (then every query with ground truth counts).
    """
    cfg = cfg or EvalConfig()
    kmax = max(cfg.recall_ns)
    revisit = revisit_mask(outcomes, map_positions, cfg.radius_m)
    correct = correct_matrix(outcomes, cfg.radius_m, kmax)
    predicting = np.array([o.position is not None and len(o.cand_ids) > 0 for o in outcomes],
                          dtype=bool)
    top1 = np.array([float(o.cand_scores[0]) if len(o.cand_ids) else np.nan for o in outcomes])
    pr = pr_curve(top1[predicting], correct[predicting, 0], int(revisit.sum()))
    recall = recall_from_correct(correct, revisit, cfg.recall_ns)
    answered = np.array([o.answered for o in outcomes], dtype=bool)
    counts = {
        "queries": len(outcomes),
        "with_ground_truth": int(sum(o.position is not None for o in outcomes)),
        "revisits": int(revisit.sum()),
        "answered": int(answered.sum()),
        "dropped": int((~answered).sum()),
        "empty_answers": int(sum(o.answered and len(o.cand_ids) == 0 for o in outcomes)),
        "correct_top1": int((correct[:, 0] & predicting).sum()),
        "incorrect_top1": int((~correct[:, 0] & predicting).sum()),
    }
    return {
        "radius_m": cfg.radius_m,
        "counts": counts,
        "recall_at_n": {str(n): v for n, v in recall.items()},
        # Every N from 1 to max(recall_ns), for the Recall@N plot.
        "recall_curve": list(recall_from_correct(correct, revisit, range(1, kmax + 1)).values()),
        "pr_auc": pr.pop("auc"),
        "max_recall_at_100_precision": pr.pop("max_recall_at_100_precision"),
        "threshold_at_100_precision": pr.pop("threshold_at_100_precision"),
        "pr_curve": pr,
        "operating_point": operating_point(outcomes, correct[:, 0] & predicting, revisit),
        "latency_s": latency_stats([o.latency_s for o in outcomes]),
        "false_positives": false_positives(outcomes, correct[:, 0], cfg.fp_examples),
    }
