"""The report directory: metrics.json, report.md, per_query.csv and four PNG plots.

Every file is written atomically, so a crash or a second run never leaves a
half-written file.  A report is written even when something is missing (no
ground truth, node never answered): ``metrics.json`` then has
``"complete": false`` and ``"missing"`` says what, and report.md says it first.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..foundation.atomic import write_bytes_atomic, write_text_atomic
from . import plots
from .config import EvalConfig
from .metrics import compute_metrics
from .outcome import QueryOutcome
from .pose_metrics import pose_metrics

PLOTS = ("pr_curve.png", "recall_at_n.png", "trajectory.png", "latency_hist.png")


def _json_safe(v: Any) -> Any:
    """NaN/inf become null so metrics.json is strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return _json_safe(v.item())
    return v


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{1e3 * v:.1f}"


def _markdown(result: dict[str, Any]) -> str:
    m, meta = result["metrics"], result["meta"]
    c = m["counts"]
    lines = [f"# Loop-closure evaluation: {meta.get('title', '')}", ""]
    if result["missing"]:
        lines += ["**INCOMPLETE** — these results are partial:", ""]
        lines += [f"- {text}" for text in result["missing"]] + [""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in meta.items() if k != "title"]
    lines += [f"| true-match radius | {m['radius_m']:g} m |", ""]
    lines += ["## Frames", "", "| queries | with ground truth | revisits | answered | dropped | "
              "empty answers | correct top-1 | wrong top-1 | stray answers | duplicate answers |",
              "|---|---|---|---|---|---|---|---|---|---|",
              f"| {c['queries']} | {c['with_ground_truth']} | {c['revisits']} | {c['answered']} | "
              f"{c['dropped']} | {c['empty_answers']} | {c['correct_top1']} | {c['incorrect_top1']} | "
              f"{c.get('unmatched_answers', 0)} | {c.get('duplicate_answers', 0)} |", ""]
    ns = list(m["recall_at_n"])
    thr = m["threshold_at_100_precision"]
    lines += ["## Recall", "", "| " + " | ".join(f"Recall@{n}" for n in ns)
              + " | PR AUC (AP) | max recall @ 100 % precision | at score >= |",
              "|" + "---|" * (len(ns) + 3),
              "| " + " | ".join(_pct(m["recall_at_n"][n]) for n in ns)
              + f" | {'n/a' if m['pr_auc'] is None else format(m['pr_auc'], '.3f')} | "
              f"{_pct(m['max_recall_at_100_precision'])} | "
              f"{'n/a' if thr is None else format(thr, '.4f')} |",
              ""]
    op = m["operating_point"]
    if op["accepted"] is not None:
        lines += ["## Loop closures the localizer accepted (its threshold and consistency filter)", "",
                  "| accepted | correct | precision | recall |", "|---|---|---|---|",
                  f"| {op['accepted']} | {op['accepted_correct']} | {_pct(op['precision'])} | "
                  f"{_pct(op['recall'])} |", ""]
    lat = m["latency_s"]
    lines += ["## Latency per frame (ms)", "", "| frames | mean | min | median | p90 | p95 | p99 | max |",
              "|---|---|---|---|---|---|---|---|",
              f"| {lat['count']} | " + " | ".join(_ms(lat[k]) for k in
                                                ("mean", "min", "median", "p90", "p95", "p99", "max"))
              + " |", ""]
    if "stages" in m:
        from .stages_report import stages_markdown
        lines += stages_markdown(m["stages"])
    if "pose" in m:
        lines += pose_markdown(m["pose"])
    lines += ["## Highest-scoring false positives", ""]
    if m["false_positives"]:
        lines += ["| query # | query stamp (ns) | map id | score | distance (m) |", "|---|---|---|---|---|"]
        lines += [f"| {f['query_index']} | {f['query_stamp_ns']} | {f['map_id']} | {f['score']:.4f} | "
                  f"{f['distance_m']:.1f} |" for f in m["false_positives"]]
    else:
        lines += ["None."]
    plots_here = PLOTS + (("pose_error_cdf.png",) if "pose" in m else ())
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots_here]
    if result["notes"]:
        lines += ["", "## Notes", ""] + [f"- {t}" for t in result["notes"]]
    return "\n".join(lines) + "\n"


def pose_markdown(pose: dict[str, Any]) -> list[str]:
    """The report's "Metric pose" section (loopeval/pose_metrics.py)."""
    keys = list(next(iter(pose["stages"].values()))["share_of_poses"])
    lines = ["## Metric pose (PnP on the map's 3D points)", "",
             "| stage | poses | median m | p90 m | median deg | "
             + " | ".join(f"within {k.replace('_', ', ')}" for k in keys)
             + " | of revisits (0.5 m, 5 deg) | wrong (> 5 m) |",
             "|" + "---|" * (len(keys) + 7)]

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    for name, st in pose["stages"].items():
        t, r = st["translation_m"], st["rotation_deg"]
        lines.append(f"| {name} | {st['poses']} | {f(t['median'])} | {f(t['p90'])} | {f(r['median'])} | "
                     + " | ".join(_pct(st["share_of_poses"][k]) for k in keys)
                     + f" | {_pct(st['share_of_revisits']['0.5m_5deg'])} | {st['wrong_closures']} |")
    ret, lat = pose["retrieval"], pose["latency_s"]
    lines += ["", f"Retrieval ceiling: the right place (within {ret['right_m']:g} m) is the retrieval "
              f"top-1 for {_pct(ret['top1'])} and in the top-k for {_pct(ret['top_k'])} of "
              f"{ret['revisits']} revisits. Verification + PnP added {_ms(lat['verify_and_pose_p50'])} ms "
              f"(p50; p90 {_ms(lat['verify_and_pose_p90'])}) per verified keyframe, embedding "
              f"{_ms(lat['embed_p50'])} ms.", ""]
    return lines


def _per_query_csv(outcomes: Sequence[QueryOutcome], radius_m: float) -> str:
    rows = ["index,stamp_ns,gt_x,gt_y,gt_z,answered,latency_s,n_candidates,top1_id,top1_score,"
            "top1_distance_m,top1_correct,accepted"]
    for i, o in enumerate(outcomes):
        gt = ["", "", ""] if o.position is None else [f"{v:.3f}" for v in o.position]
        top = ["", "", "", ""]
        if len(o.cand_ids):
            top = [str(int(o.cand_ids[0])), f"{o.cand_scores[0]:.6f}", "", ""]
            if o.position is not None:
                d = float(np.linalg.norm(o.cand_positions[0] - o.position))
                top[2:] = [f"{d:.3f}", str(int(d <= radius_m))]
        lat = "" if o.latency_s is None else f"{o.latency_s:.6f}"
        acc = "" if o.accepted is None else str(int(o.accepted))
        rows.append(",".join([str(i), str(o.stamp_ns), *gt, str(int(o.answered)), lat,
                              str(len(o.cand_ids)), *top, acc]))
    return "\n".join(rows) + "\n"


def write_report(out_dir: str | Path, outcomes: Sequence[QueryOutcome],
                 map_positions: np.ndarray | None, cfg: EvalConfig | None = None,
                 meta: dict[str, Any] | None = None, missing: Sequence[str] = (),
                 notes: Sequence[str] = (), extra_counts: dict[str, int] | None = None,
                 stages: dict[str, Any] | None = None, metric_map: bool = False) -> dict[str, Any]:
    """Compute the metrics and write the report directory; return metrics.json's content.

    Args:
        out_dir: report directory (created; files in it are replaced).
        outcomes: one per query frame, in order.
        map_positions: float64 [M, 3] map keyframe positions or ``None``.
        meta: settings shown in the report (source, mode, rate, map, model...).
        missing: what could not be measured; non-empty makes the report partial.
        notes: other remarks for the reader.
        extra_counts: added to ``metrics.counts`` (e.g. unmatched answers).
        stages: per-stage metrics (loopeval/stages.py): ``metrics.stages``,
            a report section and ``pr_stages.png``.
        metric_map: the map has 3D points, so ``metrics.pose`` is written even when
            no query got a pose (zeros, not nothing).
    """
    cfg = cfg or EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(outcomes, map_positions, cfg)
    metrics["counts"].update(extra_counts or {})
    if stages is not None:
        metrics["stages"] = stages
    pose = pose_metrics(outcomes, map_positions, always=metric_map)
    if pose is not None:
        metrics["pose"] = pose
    meta = {k: v for k, v in (meta or {}).items()}
    result = _json_safe({"complete": not missing, "missing": list(missing), "notes": list(notes),
                         "meta": meta, "config": {"radius_m": cfg.radius_m,
                                                  "recall_ns": cfg.recall_ns,
                                                  "gt_max_gap_s": cfg.gt_max_gap_s},
                         "metrics": metrics})
    title = str(meta.get("title", ""))
    write_bytes_atomic(out / "pr_curve.png", plots.pr_curve_png(metrics, title))
    write_bytes_atomic(out / "recall_at_n.png", plots.recall_at_n_png(metrics, title))
    write_bytes_atomic(out / "trajectory.png",
                       plots.trajectory_png(outcomes, map_positions, cfg.radius_m, title))
    write_bytes_atomic(out / "latency_hist.png", plots.latency_png(outcomes, metrics, title))
    if "pose" in metrics:
        write_bytes_atomic(out / "pose_error_cdf.png",
                           plots.error_cdf_png({"this run": result["metrics"]["pose"]}, title))
    if stages is not None:
        from .stages_report import stages_png
        write_bytes_atomic(out / "pr_stages.png", stages_png(result["metrics"]["stages"], title))
    write_text_atomic(out / "per_query.csv", _per_query_csv(outcomes, cfg.radius_m))
    write_text_atomic(out / "report.md", _markdown(result))
    # metrics.json last: its presence means the whole report is there.
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result


def compare_reports(ros: dict[str, Any], off: dict[str, Any], settings_differ: list[str]) -> dict[str, Any]:
    """comparison.json of ``--compare-offline``: the ROS and offline metrics side by side."""
    rm, om = ros["metrics"], off["metrics"]
    r_ros, r_off = rm["recall_at_n"]["1"], om["recall_at_n"]["1"]
    auc_ros, auc_off = rm["pr_auc"], om["pr_auc"]
    return {"recall_at_1_ros": r_ros, "recall_at_1_offline": r_off,
            "difference_points": None if r_ros is None or r_off is None else 100.0 * (r_ros - r_off),
            "pr_auc_ros": auc_ros, "pr_auc_offline": auc_off,
            "pr_auc_difference_points": (None if auc_ros is None or auc_off is None
                                         else 100.0 * (auc_ros - auc_off)),
            "accepted_ros": rm["operating_point"]["accepted"],
            "accepted_offline": om["operating_point"]["accepted"],
            "ros_dropped": rm["counts"]["dropped"], "offline_dropped": om["counts"]["dropped"],
            "ros_latency_mean_s": rm["latency_s"]["mean"],
            "offline_latency_mean_s": om["latency_s"]["mean"],
            "settings_that_differ": settings_differ}
