"""The difficulty report: baselines' Recall@1 at 25 m for every ordered traversal pair.

This is what shows the world is a fair test: LiDAR geometry should match
across conditions, tiny images only within a condition.  ``generate`` writes
it; ``python -m distilvpr_core.sim.difficulty DIR`` recomputes it from a
native dataset on disk.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .baselines import lidar_ring_spectrum, recall_at_1, tiny_image

RADIUS_M = 25.0


@dataclass
class Drive:
    """What the report needs to know about one traversal."""
    name: str
    time_of_day: str
    weather: str
    season: str
    xy: np.ndarray           # float64 [N, 2] ground-truth positions, map frame (m)

    @property
    def condition(self) -> str:
        return f"{self.time_of_day}/{self.weather}/{self.season}"


def pair_kind(a: Drive, b: Drive) -> list[str]:
    """Labels of a pair: same_condition, day_night, clear_fog (several may apply) or other."""
    kinds = []
    if a.condition == b.condition:
        kinds.append("same_condition")
    if {a.time_of_day == "night", b.time_of_day == "night"} == {True, False}:
        kinds.append("day_night")
    if {a.weather, b.weather} == {"clear", "fog"}:
        kinds.append("clear_fog")
    return kinds or ["other"]


def difficulty_report(drives: list[Drive], tiny: list[np.ndarray], lidar: list[np.ndarray]) -> dict[str, Any]:
    """Recall@1 (25 m) of both baselines for each ordered pair (query, database).

    ``tiny[k]`` float32 [N_k, 768] and ``lidar[k]`` float32 [N_k, D] are the
    descriptors of drive ``k``'s frames.
    """
    pairs = []
    for qi, q in enumerate(drives):
        for di, d in enumerate(drives):
            if qi == di:
                continue
            pairs.append({"query": q.name, "database": d.name, "query_condition": q.condition,
                          "database_condition": d.condition, "kinds": pair_kind(q, d),
                          "tiny_image_r1": recall_at_1(tiny[qi], q.xy, tiny[di], d.xy, RADIUS_M),
                          "lidar_r1": recall_at_1(lidar[qi], q.xy, lidar[di], d.xy, RADIUS_M)})
    summary: dict[str, Any] = {}
    for kind in ("same_condition", "day_night", "clear_fog", "other"):
        sel = [p for p in pairs if kind in p["kinds"]]
        if sel:
            t = [p["tiny_image_r1"] for p in sel]
            summary[kind] = {"pairs": len(sel), "tiny_image_r1_mean": float(np.mean(t)),
                             "tiny_image_r1_min": float(np.min(t)), "tiny_image_r1_max": float(np.max(t)),
                             "lidar_r1_min": float(np.min([p["lidar_r1"] for p in sel]))}
    if pairs:
        summary["all"] = {"pairs": len(pairs), "lidar_r1_min": float(np.min([p["lidar_r1"] for p in pairs])),
                          "lidar_r1_mean": float(np.mean([p["lidar_r1"] for p in pairs]))}
    return {"radius_m": RADIUS_M, "pairs": pairs, "summary": summary,
            "targets": {"lidar_r1_min_all": 0.85, "tiny_image_r1_same_condition_min": 0.7,
                        "tiny_image_r1_day_night_max": 0.4, "tiny_image_r1_clear_fog_max": 0.4}}


def format_report(report: dict[str, Any]) -> str:
    """Human-readable table of a difficulty report."""
    lines = [f"Difficulty report: Recall@1 at {report['radius_m']:.0f} m (query -> database)",
             f"{'query':<18}{'database':<18}{'tiny-img':>9}{'lidar':>8}  kinds"]
    for p in report["pairs"]:
        lines.append(f"{p['query']:<18}{p['database']:<18}{p['tiny_image_r1']:>9.3f}{p['lidar_r1']:>8.3f}  "
                     f"{','.join(p['kinds'])}")
    lines.append("summary:")
    for kind, s in report["summary"].items():
        lines.append(f"  {kind:<15} " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in s.items()))
    return "\n".join(lines) + "\n"


def report_from_dataset(root: str | Path) -> dict[str, Any]:
    """Recompute the report from a native dataset's images and scans."""
    from ..data.native import open_dataset
    ds = open_dataset(root)
    drives, tiny, lidar = [], [], []
    height = float(ds.lidar["T_base_lidar"][2])
    for name in ds.traversals:
        tr = ds.traversal(name)
        c = tr.conditions
        drives.append(Drive(name, c["time_of_day"], c["weather"], c["season"], tr.poses[:, :2].copy()))
        tiny.append(np.stack([tiny_image(tr.load_image(i)) for i in range(len(tr))]))
        lidar.append(np.stack([lidar_ring_spectrum(tr.load_lidar(i), height) for i in range(len(tr))]))
    return difficulty_report(drives, tiny, lidar)


def main(argv: list[str] | None = None) -> int:
    """``python -m distilvpr_core.sim.difficulty DIR [--json OUT]``: print (and save) the report."""
    p = argparse.ArgumentParser(prog="python -m distilvpr_core.sim.difficulty", description=__doc__)
    p.add_argument("dataset", help="native dataset directory")
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    rep = report_from_dataset(args.dataset)
    print(format_report(rep), end="")
    if args.json:
        from ..foundation.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(rep, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
