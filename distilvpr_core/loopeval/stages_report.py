"""The per-stage part of the report: a table in report.md and ``pr_stages.png``."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import plots
from .stages import STAGES, camera_mount_near, stage_metrics

SCORE = {"raw": "cosine", "sequence": "cosine", "geometric": "inliers", "both": "inliers"}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def stages_markdown(st: dict[str, Any]) -> list[str]:
    """Lines of the "Stages" section (see loopeval/stages.py for the definitions)."""
    lines = ["## Stages: raw, sequence, geometric, both", "",
             f"Sequence window N = {st['sequence_n']}.  Operating point: the settings the engine "
             "ran with (score_threshold for raw/sequence, verify_min_inliers for geometric/both; "
             "pnp_min_inliers when the map has 3D points: the inliers are then PnP inliers).", "",
             "| stage | swept score | AP | max recall @ 100 % precision | recall @ precision 0.99 | "
             "operating point: accepted | correct | precision | recall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in STAGES:
        s = st["stages"][name]
        op = s["operating_point"]
        ap = "n/a" if s["ap"] is None else f"{s['ap']:.3f}"
        lines.append(f"| {name} | {SCORE[name]} | {ap} | {_pct(s['max_recall_at_100_precision'])} | "
                     f"{_pct(s['recall_at_precision_0.99'])} | {op['accepted']} | {op['correct']} | "
                     f"{_pct(op['precision'])} | {_pct(op['recall'])} |")
    lat, rot, rec = st["latency_s"], st["rotation"], st["recommended"]

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{1e3 * v:.1f} ms"

    lines += ["", f"Verification adds {ms(lat['verify_added_p50'])} p50 / {ms(lat['verify_added_p90'])} "
              f"p90 per verified keyframe ({lat['verified_queries']} verified: top-1 at or above "
              f"score_threshold), {ms(lat['verify_added_p50_all_keyframes'])} p50 / "
              f"{ms(lat['verify_added_mean_all_keyframes'])} mean over all keyframes; embedding "
              f"{ms(lat['embed_p50'])} p50.", ""]
    if rot["verified_true_matches"]:
        lines += [f"Relative rotation of {rot['verified_true_matches']} verified true matches: "
                  f"{_pct(rot['within_5deg'])} within 5 deg of ground truth (median "
                  f"{rot['median_deg']:.2f} deg).", ""]
    else:
        lines += ["Relative rotation: no verified true match with known ground-truth orientation "
                  "and camera mounting.", ""]
    if rec.get("stage"):
        lines += [f"**Recommended operating point**: stage `{rec['stage']}`, threshold "
                  f"{rec['threshold']:g} -> {rec['accepted']} accepted, precision "
                  f"{_pct(rec['precision'])}, recall {_pct(rec['recall'])}"
                  + ("" if rec["meets_precision_0.99"] else " (**precision 0.99 not reached**)")
                  + f"; node parameters {rec['params']}", ""]
    return lines + ["![pr_stages.png](pr_stages.png)", ""]


def stages_png(st: dict[str, Any], title: str) -> bytes:
    """Precision-recall of every stage on one plot."""
    fig, ax = plots._figure()
    any_data = False
    for i, name in enumerate(STAGES):
        s = st["stages"][name]
        pr = s["pr_curve"]
        if not pr["recall"]:
            continue
        any_data = True
        r = np.r_[0.0, pr["recall"]]
        p = np.r_[pr["precision"][0], pr["precision"]]
        ap = "n/a" if s["ap"] is None else f"{s['ap']:.3f}"
        ax.step(r, p, where="post", color=f"C{i}",
                label=f"{name} ({SCORE[name]}): AP {ap}, R@P100 {_pct(s['max_recall_at_100_precision'])}")
    if any_data:
        ax.legend(loc="upper right", fontsize=7)
    else:
        plots._no_data(ax, "no predictions with ground truth")
    plots.pr_axes(ax, f"Precision-recall per stage\n{title}")
    return plots._png(fig)


def offline_stages(outcomes: list, prior_map: Any, cfg: Any, settings: Any, source: str,
                   notes: list[str]) -> dict[str, Any]:
    """Per-stage metrics of an offline run against ``prior_map`` (``source``: the bag
    or dataset, where the camera mounting is looked up); adds notes."""
    from .metrics import revisit_mask
    if prior_map.features is None or not settings.verify:
        notes.append("geometric verification did not run (map without features or verify:=false): "
                     "the geometric and both stages predict nothing")
    revisit = revisit_mask(outcomes, np.asarray(prior_map.poses)[:, :3], cfg.radius_m)
    metric = prior_map.features is not None and prior_map.features.has_points
    return stage_metrics(outcomes, revisit, cfg.radius_m, settings,
                         base_camera_quat=camera_mount_near(source), metric=metric)


def recommendation_line(rec: dict[str, Any]) -> str:
    """One line for the terminal: the recommended operating point and its node parameters."""
    if not rec.get("stage"):
        return f"recommended operating point: none ({rec.get('reason', '')})"
    return (f"recommended operating point: stage {rec['stage']} (precision {rec['precision']:.3f}, "
            f"recall {rec['recall']:.3f}{'' if rec['meets_precision_0.99'] else ', precision 0.99 NOT reached'}); "
            "node parameters: " + " ".join(f"{k}:={v}" for k, v in rec["params"].items()))
