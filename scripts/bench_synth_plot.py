"""The synthetic benchmark's figure: R@1 of every camera row, one panel per protocol.

Input is the report's JSON document (:func:`bench_synth_report.collect`).  Each
row is a bar at its mean over seeds with one dot per seed, so a reader sees the
spread and whether the seeds agree; the dashed line is the protocol's chance
level.  The teacher (camera + LiDAR, ~95 % R@1) is left out of the bars, which
would otherwise squash the camera rows, and named in the panel title instead.
Returns PNG bytes; the caller writes them atomically.
"""
from __future__ import annotations

import io
import statistics
from typing import Any

from bench_synth_report import LABELS, PROTOCOLS

# Bar colours by kind of row: the two key rows stand out, baselines grey, ablations light blue.
KEY_COLOURS = {"no_distillation": "#d62728", "distilvpr": "#1f77b4", "teacher_image": "#8c564b"}


def _colour(row: str) -> str:
    if row in KEY_COLOURS:
        return KEY_COLOURS[row]
    return "#9ecae1" if LABELS.get(row, "").startswith("ablation") else "#999999"


def benchmark_png(doc: dict[str, Any]) -> bytes | None:
    """PNG of the camera rows' R@1 (percent) under P, D and S; None when no row finished."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    protos = [p for p in PROTOCOLS if doc["protocols"].get(p, {}).get("rows")]
    if not protos:
        return None
    order = [r for r in LABELS if r != "teacher"]   # the report's row order
    rows = [r for r in order if any(r in doc["protocols"][p]["rows"] for p in protos)]
    fig = Figure(figsize=(4.2 * len(protos), 0.42 * len(rows) + 1.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, proto in enumerate(protos):
        ax = fig.add_subplot(1, len(protos), i + 1)
        p = doc["protocols"][proto]
        for y, row in enumerate(rows):
            r1 = p["rows"].get(row, {}).get("r1", [])
            if not r1:
                continue
            ax.barh(y, statistics.mean(r1), color=_colour(row), alpha=0.85, height=0.7)
            ax.plot(r1, [y] * len(r1), "k.", markersize=5)
        if p.get("chance_r1") is not None:
            ax.axvline(p["chance_r1"], color="k", linestyle="--", linewidth=1, label="chance")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([LABELS.get(r, r) for r in rows] if i == 0 else [], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("R@1 (%); bar = mean, dots = seeds")
        teacher = p["rows"].get("teacher", {}).get("r1", [])
        extra = f"\nteacher (camera + LiDAR): {statistics.mean(teacher):.1f}" if teacher else ""
        ax.set_title(PROTOCOLS[proto].split(" (")[0] + extra, fontsize=9)   # "P: unseen places"
        ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()
