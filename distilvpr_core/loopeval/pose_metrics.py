"""Metric-pose accuracy of an offline run: errors, threshold shares, wrong closures.

For every query with a ground-truth pose (position and orientation, map
frame) and an estimated robot pose (PnP on a map with 3D points,
:attr:`QueryOutcome.stage` ``"pose"``), the translation error (m) and the
rotation error (deg, angle of R_est^T R_true).  Two stages:

* ``pnp``: every verified PnP pose (``pnp_min_inliers`` met), before the
  pose-consistency check;
* ``published``: the poses the localizer accepts and publishes on ``~/pose``
  (:attr:`QueryOutcome.published_pose`; the ROS path sees only this stage).

Per stage: the count, median and p90 errors, the share within (0.25 m, 2 deg),
(0.5 m, 5 deg) and (5 m, 10 deg) -- the thresholds of the public
visual-localization benchmarks -- both of the stage's poses and of the
revisit queries (a query within ``right_m`` = 5 m of a map keyframe: one
a metric localization can serve; a revisit with no pose counts as missed),
and the wrong closures (more than 5 m off).  ``retrieval`` says how often the right place
was among the candidates at all: the share of revisits with a candidate
within ``right_m`` of the truth in the top-k (the ceiling of any verifier).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..features.rotations import pose_to_matrix, rotation_angle_deg
from .metrics import revisit_mask
from .outcome import QueryOutcome

THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))
WRONG_M = 5.0
STAGES = ("pnp", "published")


def pose_error(est: np.ndarray, true_xyz: np.ndarray, true_quat: np.ndarray) -> tuple[float, float]:
    """(translation m, rotation deg) of an estimated float64 [7] pose against the truth."""
    T = pose_to_matrix(est)
    G = pose_to_matrix(np.r_[np.asarray(true_xyz, np.float64), np.asarray(true_quat, np.float64)])
    return float(np.linalg.norm(T[:3, 3] - G[:3, 3])), rotation_angle_deg(T[:3, :3].T @ G[:3, :3])


def errors(outcomes: Sequence[QueryOutcome], stage: str) -> np.ndarray:
    """float64 [Q, 2] (m, deg) per query; NaN rows where the stage gave no pose or no truth."""
    out = np.full((len(outcomes), 2), np.nan)
    for i, o in enumerate(outcomes):
        if o.position is None or o.orientation is None:
            continue
        est = o.published_pose if stage == "published" else (o.stage or {}).get("pose")
        if est is not None:
            out[i] = pose_error(est, o.position, o.orientation)
    return out


def _shares(err: np.ndarray, denominator: int) -> dict[str, float | None]:
    return {f"{m:g}m_{d:g}deg": (float(np.sum((err[:, 0] <= m) & (err[:, 1] <= d))) / denominator
                                  if denominator else None) for m, d in THRESHOLDS}


def _pct(v: np.ndarray, q: float) -> float | None:
    return float(np.percentile(v, q)) if len(v) else None


def stage_summary(err: np.ndarray, revisit: np.ndarray) -> dict[str, Any]:
    """JSON-ready summary of one stage's errors float [Q, 2] (NaN = no pose)."""
    has = np.isfinite(err[:, 0])
    e = err[has]
    n_rev = int(np.asarray(revisit).sum())
    return {"poses": int(has.sum()), "revisits": n_rev,
            "poses_on_revisits": int((has & revisit).sum()),
            "translation_m": {"median": _pct(e[:, 0], 50), "p90": _pct(e[:, 0], 90)},
            "rotation_deg": {"median": _pct(e[:, 1], 50), "p90": _pct(e[:, 1], 90)},
            "share_of_poses": _shares(e, len(e)),
            "share_of_revisits": _shares(err[has & revisit], n_rev),
            "wrong_closures": int(np.sum(e[:, 0] > WRONG_M)),
            "translation_errors_m": [float(v) for v in e[:, 0]]}


def retrieval_ceiling(outcomes: Sequence[QueryOutcome], revisit: np.ndarray, right_m: float) -> dict[str, Any]:
    """Share of revisits whose top-1 / any top-k candidate lies within ``right_m`` of the truth."""
    top1 = topk = 0
    for o, r in zip(outcomes, revisit):
        if not r or o.position is None or not len(o.cand_ids):
            continue
        d = np.linalg.norm(o.cand_positions - o.position[None], axis=1) <= right_m
        # The arrays put verification's match first; the retrieval top-1 is then second.
        top = 1 if (o.stage is not None and o.stage["match_rank"] > 0 and len(d) > 1) else 0
        top1 += bool(d[top])
        topk += bool(d.any())
    n = int(np.asarray(revisit).sum())
    return {"right_m": right_m, "revisits": n, "top1": top1 / n if n else None,
            "top_k": topk / n if n else None}


def pose_metrics(outcomes: Sequence[QueryOutcome], map_positions: np.ndarray | None,
                 right_m: float = WRONG_M, always: bool = False) -> dict[str, Any] | None:
    """Per-stage pose metrics (JSON-ready), or None when no query carried a pose estimate
    (a map without 3D points, or the ROS path) unless ``always`` (a metric map whose
    queries all failed: zeros, not nothing).  ``map_positions`` float64 [M, 3]."""
    if not always and not any(o.published_pose is not None or (o.stage or {}).get("pose") is not None
                              for o in outcomes):
        return None
    revisit = np.asarray(revisit_mask(outcomes, map_positions, right_m), bool)
    # The ROS path (no engine record per query) sees only what the node published.
    stages = STAGES if any(o.stage is not None for o in outcomes) else ("published",)
    out: dict[str, Any] = {"thresholds": [list(t) for t in THRESHOLDS], "wrong_m": WRONG_M,
                           "stages": {s: stage_summary(errors(outcomes, s), revisit) for s in stages},
                           "retrieval": retrieval_ceiling(outcomes, revisit, right_m)}
    ver = [o.stage["verify_s"] for o in outcomes if o.stage is not None and o.stage["verify_ran"]]
    emb = [o.stage["embed_s"] for o in outcomes if o.stage is not None]
    out["latency_s"] = {"verify_and_pose_p50": _pct(np.asarray(ver), 50),
                        "verify_and_pose_p90": _pct(np.asarray(ver), 90),
                        "embed_p50": _pct(np.asarray(emb), 50)}
    return out
