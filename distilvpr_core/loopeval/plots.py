"""PNG plots of one evaluation (matplotlib, Agg backend, no display needed).

Each function returns PNG bytes so the caller writes them atomically.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from .outcome import QueryOutcome


def _figure(size: tuple[float, float] = (6.0, 4.5)) -> tuple[Any, Any]:
    # The object-oriented API with an Agg canvas: no pyplot global state, no
    # display, safe in threads and on headless robots.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def pr_axes(ax: Any, title: str) -> None:
    """Limits, labels, title and grid of a precision-recall plot (recall on x)."""
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall (true loop closures found / revisits)")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def pr_curve_png(metrics: dict[str, Any], title: str) -> bytes:
    """Precision (y) against recall (x) over the top-1 score threshold."""
    fig, ax = _figure()
    pr = metrics["pr_curve"]
    if pr["recall"]:
        r = np.r_[0.0, pr["recall"]]
        p = np.r_[pr["precision"][0], pr["precision"]]
        ax.step(r, p, where="post", color="C0", label=f"AUC (AP) = {metrics['pr_auc']:.3f}")
        ax.plot(pr["recall"], pr["precision"], "o", color="C0", ms=3)
        best = metrics["max_recall_at_100_precision"]
        if best:
            ax.plot([best], [1.0], "*", color="C3", ms=12,
                    label=f"max recall @ 100% precision = {best:.3f} "
                          f"(score >= {metrics['threshold_at_100_precision']:.3f})")
        ax.legend(loc="lower left", fontsize=8)
    else:
        _no_data(ax, "no predictions with ground truth")
    pr_axes(ax, f"Precision-recall of top-1 over score threshold\n{title}")
    return _png(fig)


def recall_at_n_png(metrics: dict[str, Any], title: str) -> bytes:
    """Recall@N for N = 1..max N, in percent."""
    fig, ax = _figure()
    curve = metrics["recall_curve"]
    if curve and curve[0] is not None:
        n = np.arange(1, len(curve) + 1)
        vals = 100.0 * np.asarray(curve, dtype=float)
        ax.plot(n, vals, "-o", color="C0")
        for k, v in metrics["recall_at_n"].items():
            ax.annotate(f"R@{k} = {100 * v:.1f}%", (int(k), 100 * v), textcoords="offset points",
                        xytext=(4, -14), fontsize=8)
        ax.set_xticks(n)
    else:
        _no_data(ax, "no revisits: recall undefined")
    ax.set_ylim(0, 105)
    ax.set_xlabel("N (candidates considered)")
    ax.set_ylabel("Recall@N (%)")
    ax.set_title(f"Recall@N (correct within {metrics['radius_m']:g} m)\n{title}", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def trajectory_png(outcomes: Sequence[QueryOutcome], map_positions: np.ndarray | None,
                   radius_m: float, title: str) -> bytes:
    """Top view (x, y in the map frame): queries coloured by their top-1 outcome.

    Green = correct top-1, red = wrong top-1, grey = no match (dropped or
    empty answer); a thin line links each query to its top-1 map keyframe.
    Published metric poses (maps with 3D points) are blue crosses, each
    joined to its query's true position.
    """
    fig, ax = _figure((7.0, 6.0))
    if map_positions is not None and len(map_positions):
        mp = np.asarray(map_positions).reshape(-1, 3)
        ax.plot(mp[:, 0], mp[:, 1], ".", color="0.75", ms=3, label="map keyframes", zorder=1)
    groups: dict[str, list[np.ndarray]] = {"correct": [], "incorrect": [], "no match": []}
    links: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"correct": [], "incorrect": []}
    for o in outcomes:
        if o.position is None:
            continue
        if len(o.cand_ids) == 0:
            groups["no match"].append(o.position)
            continue
        key = ("correct" if np.linalg.norm(o.cand_positions[0] - o.position) <= radius_m
               else "incorrect")
        groups[key].append(o.position)
        links[key].append((o.position, o.cand_positions[0]))
    colors = {"correct": "tab:green", "incorrect": "tab:red", "no match": "0.45"}
    from matplotlib.collections import LineCollection
    for key, segs in links.items():
        if segs:
            ax.add_collection(LineCollection([[a[:2], b[:2]] for a, b in segs],
                                             colors=colors[key], linewidths=0.6, alpha=0.5,
                                             zorder=2))
    for key, pts in groups.items():
        if pts:
            p = np.stack(pts)
            ax.plot(p[:, 0], p[:, 1], "o", color=colors[key], ms=4, zorder=3,
                    label=f"{key} ({len(pts)})", mfc=colors[key] if key != "no match" else "none")
    loc = [(o.position, o.published_pose) for o in outcomes
           if o.position is not None and o.published_pose is not None]
    if loc:
        ax.add_collection(LineCollection([[a[:2], b[:2]] for a, b in loc], colors="tab:blue",
                                         linewidths=0.8, zorder=4))
        p = np.stack([b for _, b in loc])
        ax.plot(p[:, 0], p[:, 1], "x", color="tab:blue", ms=5, zorder=5,
                label=f"published metric pose ({len(loc)})")
    if not any(groups.values()):
        _no_data(ax, "no query has a ground-truth position")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m, map frame)")
    ax.set_ylabel("y (m, map frame)")
    ax.set_title(f"Queries by top-1 outcome, lines = match links\n{title}", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def latency_png(outcomes: Sequence[QueryOutcome], metrics: dict[str, Any], title: str) -> bytes:
    """Histogram of per-frame latency in milliseconds, with mean and p95 marked."""
    fig, ax = _figure()
    lat = np.array([o.latency_s for o in outcomes if o.latency_s is not None]) * 1e3
    if len(lat):
        ax.hist(lat, bins=min(50, max(5, len(lat) // 3)), color="C0", alpha=0.8)
        st = metrics["latency_s"]
        ax.axvline(st["mean"] * 1e3, color="C1", label=f"mean {st['mean'] * 1e3:.1f} ms")
        ax.axvline(st["p95"] * 1e3, color="C3", ls="--", label=f"p95 {st['p95'] * 1e3:.1f} ms")
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "no answered frames: no latency")
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"Latency ({len(lat)} answered frames)\n{title}", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def error_cdf_png(runs: dict[str, dict[str, Any]], title: str) -> bytes:
    """Cumulative share of published poses (y) within a translation error (x, m, log
    scale), one curve per run (``runs``: label -> metrics "pose" of loopeval/pose_metrics.py),
    the 0.25 / 0.5 / 5 m benchmark thresholds dashed."""
    fig, ax = _figure()
    drawn = False
    for label, pose in runs.items():
        e = np.sort(np.asarray(pose["stages"]["published"]["translation_errors_m"], np.float64))
        if not len(e):
            continue
        drawn = True
        ax.step(np.maximum(e, 1e-3), np.arange(1, len(e) + 1) / len(e), where="post",
                label=f"{label} ({len(e)} poses)")
    for t in (0.25, 0.5, 5.0):
        ax.axvline(t, color="0.6", ls="--", lw=0.8)
    if not drawn:
        _no_data(ax, "no published metric pose")
    ax.set_xscale("log")
    ax.set_xlim(1e-2, 100)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("translation error (m)")
    ax.set_ylabel("share of published poses")
    ax.set_title(f"Metric pose error CDF\n{title}", fontsize=10)
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)
