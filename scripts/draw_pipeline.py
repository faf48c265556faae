"""Draw README's picture of the pipeline: docs/img/pipeline.png.

    .venv/bin/python scripts/draw_pipeline.py [--out docs/img/pipeline.png]

Offline (top): a camera+LiDAR teacher is distilled into a camera-only student, which is
exported and embeds the mapping drive into a prior map.  On the robot (bottom): the
localizer node runs the student on each camera frame, searches the map, verifies the
match and publishes loop closures for SLAM.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the headless backend is chosen)
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OFFLINE, ROBOT, DATA = "#dbe8f6", "#f6e0e3", "#e4f2df"
BOXES = {  # name: (x, y, w, h, colour, text)
    "town": (0.1, 4.3, 2.5, 1.1, DATA,
             "drives in every condition\ncamera + LiDAR + poses\n(synthetic towns,\nOxford, Boreas)"),
    "teacher": (3.1, 4.3, 2.2, 1.1, OFFLINE, "teacher\ncamera + LiDAR\n(triplet loss)"),
    "student": (5.8, 4.3, 2.4, 1.1, OFFLINE,
                "student: camera only\ntriplet + relation distillation\n(Euclid, sphere, Poincaré)"),
    "export": (8.8, 4.3, 2.0, 1.1, OFFLINE, "ONNX\n(ONNX Runtime / TensorRT\nengine)"),
    "map": (8.8, 2.5, 2.0, 1.1, DATA, "prior map: FAISS + poses\n+ local features with\nLiDAR 3D points"),
    "camera": (0.2, 0.5, 2.2, 1.1, ROBOT, "robot camera\nsensor_msgs/Image"),
    "engine": (3.0, 0.5, 4.6, 1.1, ROBOT,
               "localizer node (one ROS-free engine)\ndecode -> embed -> search -> filters\n"
               "-> local features -> PnP metric pose"),
    "slam": (8.4, 0.5, 2.8, 1.1, ROBOT,
             "~/loop_closure (LIO-SAM), ~/pose\n~/candidates, ~/match_pose,\n~/relative_pose, /diagnostics"),
}
ARROWS = [("town", "teacher", "train"), ("teacher", "student", "relations"), ("student", "export", "export"),
          ("export", "map", "embed the mapping drive"), ("camera", "engine", ""), ("engine", "slam", "publish"),
          ("map", "engine", "search")]


def _anchor(box: tuple, towards: tuple) -> tuple[float, float]:
    x, y, w, h = box[:4]
    cx, cy = x + w / 2, y + h / 2
    tx, ty = towards[0] + towards[2] / 2, towards[1] + towards[3] / 2
    if abs(tx - cx) * h > abs(ty - cy) * w:  # leave through the left or right side
        return (x + w if tx > cx else x, cy)
    return (cx, y + h if ty > cy else y)


def draw(out: Path) -> None:
    """Write the figure to ``out`` (PNG, 150 dpi)."""
    fig, ax = plt.subplots(figsize=(11.5, 6.2))
    ax.set_xlim(0, 11.4)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    ax.text(0.2, 5.85, "offline: train and distil (GPU or CPU)", fontsize=12, weight="bold")
    ax.text(0.2, 1.95, "on the robot: camera only (Jetson / GPU / CPU)", fontsize=12, weight="bold")
    for x, y, w, h, colour, text in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#445"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)
    for a, b, label in ARROWS:
        pa, pb = _anchor(BOXES[a], BOXES[b]), _anchor(BOXES[b], BOXES[a])
        ax.add_patch(FancyArrowPatch(pa, pb, arrowstyle="-|>", mutation_scale=14, color="#334", lw=1.3))
        if label:
            ax.text((pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2 + 0.12, label, ha="center", fontsize=8, color="#334")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--out PATH``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs/img/pipeline.png")
    draw(p.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
