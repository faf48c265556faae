"""Loop-closure metrics per filter stage: raw, sequence, geometric, both.

From one offline run of the engine (with verification on), every query's
record (:attr:`QueryOutcome.stage`) gives each stage's prediction:

* ``raw``: the retrieval top-1, scored by its cosine (the PR curve sweeps it).
* ``sequence``: the retrieval top-1, kept only when the sequence score
  (:class:`~distilvpr_core.localize.filters.SequenceScore`, recomputed here
  over the answered queries with the settings' ``sequence_n`` and tolerance,
  or ``sequence_eval_n`` when the setting is off) reaches
  ``sequence_min_score``; scored by cosine.
* ``geometric``: the verified match (the candidate with most inliers among
  the top ``verify_top_k``), kept when its cosine reaches
  ``score_threshold``; scored by its inlier count.  On a map with 3D points a
  PnP pose the engine's pose checks refused (inconsistent with the odometry,
  or no odometry to check it against) predicts nothing: it is never published.
* ``both``: ``geometric`` kept only when the sequence gate passes.

A query predicts nothing in a stage when that stage drops it; precision and
recall are as in :mod:`.metrics` (recall over revisits).  Also reported:
AP, max recall at 100 % precision, recall at precision >= 0.99, the
operating point each stage's settings give, the verification's added
latency (p50/p90, per keyframe), and the relative-rotation error of
verified true matches when ground-truth orientations and the camera
mounting are known.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..evaluation.recall import pr_curve
from .outcome import QueryOutcome

STAGES = ("raw", "sequence", "geometric", "both")


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def sequence_scores(outcomes: Sequence[QueryOutcome], n: int, tolerance_m: float) -> np.ndarray:
    """float [Q] sequence score of each query's retrieval top-1 (NaN: unanswered/short history)."""
    from ..localize.filters import SequenceScore
    seq = SequenceScore(n, tolerance_m)
    out = np.full(len(outcomes), np.nan)
    for i, o in enumerate(outcomes):
        if not o.answered or o.stage is None:
            continue
        top = 1 if (o.stage["match_rank"] > 0 and len(o.cand_ids) > 1) else 0
        has = len(o.cand_ids) > 0
        out[i] = seq.update(o.stage["odom"], o.cand_positions[top] if has else None,
                            int(o.cand_ids[top]) if has else -1)
    return out


def stage_predictions(outcomes: Sequence[QueryOutcome], radius_m: float, s: Any,
                      seq_n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """stage -> (score float [Q], NaN = no prediction; correct bool [Q])."""
    q = len(outcomes)
    raw_s, raw_ok = np.full(q, np.nan), np.zeros(q, bool)
    geo_s, geo_ok = np.full(q, np.nan), np.zeros(q, bool)
    seq = sequence_scores(outcomes, seq_n, s.sequence_tolerance_m)
    for i, o in enumerate(outcomes):
        if o.position is None or o.stage is None or len(o.cand_ids) == 0:
            continue
        d = np.linalg.norm(o.cand_positions - o.position[None], axis=1) <= radius_m
        top = 1 if (o.stage["match_rank"] > 0 and len(o.cand_ids) > 1) else 0
        raw_s[i], raw_ok[i] = o.stage["raw_score"], d[top]
        # A metric map's geometric acceptance includes the pose checks (consistency with the
        # odometry): a verified PnP pose they refuse is never published, so it predicts nothing.
        refused = o.stage.get("pose") is not None and not o.stage.get("geometry_ok", True)
        if o.stage["inliers"] >= 0 and float(o.cand_scores[0]) >= s.score_threshold and not refused:
            geo_s[i], geo_ok[i] = o.stage["inliers"], d[0]
    gate = seq >= s.sequence_min_score  # NaN fails
    return {"raw": (raw_s, raw_ok), "sequence": (np.where(gate, raw_s, np.nan), raw_ok),
            "geometric": (geo_s, geo_ok), "both": (np.where(gate, geo_s, np.nan), geo_ok)}


def _summary(score: np.ndarray, ok: np.ndarray, revisits: int, threshold: float) -> dict[str, Any]:
    pred = np.isfinite(score)
    pr = pr_curve(score[pred], ok[pred], revisits)
    prec, rec = np.asarray(pr["precision"]), np.asarray(pr["recall"])
    p99 = prec >= 0.99
    acc = pred & (score >= threshold)
    tp = int((acc & ok).sum())
    return {"ap": pr["auc"], "max_recall_at_100_precision": pr["max_recall_at_100_precision"],
            "recall_at_precision_0.99": float(rec[p99].max()) if p99.any() else 0.0,
            "threshold_at_precision_0.99": (float(np.asarray(pr["thresholds"])[p99][np.argmax(rec[p99])])
                                            if p99.any() else None),
            "operating_point": {"threshold": threshold, "accepted": int(acc.sum()), "correct": tp,
                                "precision": tp / int(acc.sum()) if acc.any() else None,
                                "recall": tp / revisits if revisits else None},
            "pr_curve": {"precision": pr["precision"], "recall": pr["recall"],
                         "thresholds": pr["thresholds"]}}


def rotation_errors_deg(outcomes: Sequence[QueryOutcome], radius_m: float,
                        base_camera_quat: np.ndarray | None) -> list[float]:
    """Angle (degrees) between estimated and true relative rotation of each verified
    true match (``base_camera_quat``: camera orientation in base_link, x y z w)."""
    if base_camera_quat is None:
        return []
    Rbc = _quat_matrix(base_camera_quat)
    errs = []
    for o in outcomes:
        st = o.stage
        if (st is None or not st["verified"] or st["rotation"] is None or o.orientation is None
                or o.position is None or st["match_orientation"] is None):
            continue
        if np.linalg.norm(o.cand_positions[0] - o.position) > radius_m:
            continue
        true = (_quat_matrix(st["match_orientation"]) @ Rbc).T @ (_quat_matrix(o.orientation) @ Rbc)
        diff = np.asarray(st["rotation"]).T @ true
        errs.append(float(np.degrees(np.arccos(np.clip((np.trace(diff) - 1) / 2, -1, 1)))))
    return errs


def stage_metrics(outcomes: Sequence[QueryOutcome], revisit: np.ndarray, radius_m: float, s: Any,
                  seq_eval_n: int = 3, base_camera_quat: np.ndarray | None = None,
                  metric: bool = False) -> dict[str, Any]:
    """Per-stage metrics (JSON-ready); ``s``: the LocalizerSettings the engine ran with;
    ``metric``: the map has 3D points, so the geometric stages' inliers are PnP inliers
    and their threshold is ``pnp_min_inliers``."""
    seq_n = s.sequence_n if s.sequence_n > 1 else seq_eval_n
    preds = stage_predictions(outcomes, radius_m, s, seq_n)
    n_rev = int(np.asarray(revisit).sum())
    thr = {"raw": s.score_threshold, "sequence": s.score_threshold,
           "geometric": s.pnp_min_inliers if metric else s.verify_min_inliers,
           "both": s.pnp_min_inliers if metric else s.verify_min_inliers}
    out: dict[str, Any] = {"sequence_n": seq_n, "stages": {
        name: _summary(*preds[name], n_rev, thr[name]) for name in STAGES}}
    st = [o.stage for o in outcomes if o.stage is not None]
    ver = [x["verify_s"] for x in st if x["verify_ran"]]
    emb = [x["embed_s"] for x in st]

    def pct(v: list[float], p: float) -> float | None:
        return float(np.percentile(v, p)) if v else None

    every = [x["verify_s"] for x in st]  # ~0 where the score threshold already rejected
    out["latency_s"] = {"embed_p50": pct(emb, 50), "verify_added_p50": pct(ver, 50),
                        "verify_added_p90": pct(ver, 90), "verified_queries": len(ver),
                        "verify_added_p50_all_keyframes": pct(every, 50),
                        "verify_added_mean_all_keyframes": float(np.mean(every)) if every else None}
    errs = rotation_errors_deg(outcomes, radius_m, base_camera_quat)
    out["rotation"] = {"verified_true_matches": len(errs),
                       "within_5deg": (float(np.mean(np.asarray(errs) < 5.0)) if errs else None),
                       "median_deg": float(np.median(errs)) if errs else None}
    out["recommended"] = recommend(preds, n_rev, s, seq_n, metric)
    return out


def recommend(preds: dict[str, tuple[np.ndarray, np.ndarray]], revisits: int, s: Any,
              seq_eval_n: int = 3, metric: bool = False) -> dict[str, Any]:
    """The operating point to use: the stage and threshold with the highest recall at
    precision >= 0.99; if none reaches 0.99, the highest precision.  Ties go to the
    stage that needs less: raw, geometric (no odometry), sequence, both.  Returns
    the node parameters that select it."""
    best = None
    for name in ("raw", "geometric", "sequence", "both"):
        score, ok = preds[name]
        pred = np.isfinite(score)
        for t in np.unique(score[pred]):
            acc = pred & (score >= t)
            tp, n = int((acc & ok).sum()), int(acc.sum())
            if n == 0:
                continue
            key = (tp / n >= 0.99, tp / revisits if revisits else 0.0, tp / n)
            if key[0] is False:
                key = (False, tp / n, tp / revisits if revisits else 0.0)
            if best is None or key > best[0]:
                best = (key, name, float(t), tp, n)
    if best is None:
        return {"stage": None, "reason": "no stage predicted anything"}
    _, name, t, tp, n = best
    params: dict[str, Any] = {"verify": name in ("geometric", "both")}
    if name in ("raw", "sequence"):
        params["score_threshold"] = round(t, 4)
    else:
        # A metric map's geometric score is the PnP inlier count (at least 6, the setting's floor).
        params.update({"score_threshold": s.score_threshold,
                       ("pnp_min_inliers" if metric else "verify_min_inliers"): max(int(t), 6 if metric else 5)})
    if name in ("sequence", "both"):
        params["sequence_n"] = int(s.sequence_n if s.sequence_n > 1 else seq_eval_n)
        params["sequence_min_score"] = float(s.sequence_min_score)
    return {"stage": name, "threshold": t, "accepted": n, "correct": tp, "precision": tp / n,
            "recall": tp / revisits if revisits else None, "params": params,
            "meets_precision_0.99": tp / n >= 0.99}


def camera_mount_near(path: str) -> np.ndarray | None:
    """Camera orientation in base_link (x y z w) from the synthetic dataset's
    ``dataset.json`` ("camera" "T_base_camera") at ``path`` or up to two
    directories above (a bag under ``town/bags/NAME``); None if not found."""
    import json
    from pathlib import Path
    p = Path(path).resolve()
    for d in (p, *list(p.parents)[:2]):
        f = d / "dataset.json"
        if f.is_file():
            try:
                t = json.loads(f.read_text())["camera"]["T_base_camera"]
                return np.asarray(t[3:7], np.float64)
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                return None
    return None
