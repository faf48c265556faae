#!/usr/bin/env python3
"""How far matched query keypoints lie from where the map's 3D points really are, per drive.

What PnP can do is bounded by its input: a query keypoint matched to a keyframe
feature should lie on the projection of that feature's 3D point (map frame,
from the keyframe's depth) into the query camera at its ground-truth pose.  For
every ``--frame-stride``-th frame of each ``--queries`` drive within 5 m of a
keyframe of the map at ``--map`` (a saved map with 3D points, e.g. the
``map_<kind>`` directory scripts/pose_conditions.py writes), the keyframe
nearest the truth is matched with the engine's own matcher
(features/matching.py) and, for the matches with a 3D point in front of the
query camera, the error is ``|query point - projection|`` in pixels of the
image as captured, the query point being what the engine gives PnP
(``matching.query_points``: the keypoint, or its coarse-to-fine refinement).
Beside it, the same for the keyframe's own keypoint pixel
("no motion": what a keypoint that does not move with the content would give),
so a kind whose keypoints only repeat the keyframe's pixels shows the same
numbers in both columns.

    python scripts/keypoint_reprojection.py --dataset DIR --map OUT/map_patch \\
        --queries val_dawn train_night --frame-stride 4 --out runs/x/reprojection.json

Writes ``--out`` (JSON: per drive, the share of matches within 1, 2, 4 and
8 px, the median error, the pair counts, for the keypoints and for "no motion").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402

THRESHOLDS_PX = (1.0, 2.0, 4.0, 8.0)


def _summary(err: np.ndarray) -> dict:
    """Shares within THRESHOLDS_PX and the median of float [N] pixel errors."""
    if not len(err):
        return {"pairs": 0, "median_px": None, **{f"within_{t:g}px": None for t in THRESHOLDS_PX}}
    return {"pairs": int(len(err)), "median_px": float(np.median(err)),
            **{f"within_{t:g}px": float(np.mean(err <= t)) for t in THRESHOLDS_PX}}


def drive_errors(store, map_poses: np.ndarray, frames, extract, max_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint errors, no-motion errors), float64 [N] pixels, over the frames' matches."""
    from distilvpr_core.features import matching
    from distilvpr_core.features.rotations import pose_to_matrix
    K = store.camera.matrix()
    T_bc = pose_to_matrix(store.T_base_camera)
    errs, still = [], []
    for f in frames:
        d = np.linalg.norm(map_poses[:, :3] - f.position[None], axis=1)
        kid = int(np.argmin(d))
        if d[kid] > 5.0:
            continue
        q, kf = extract(f.image, max_features), store.get(kid)
        pairs = matching.match(q, kf)
        if not len(pairs):
            continue
        p3 = store.points(kid)[pairs[:, 1]].astype(np.float64)
        T_map_cam = pose_to_matrix(np.r_[f.position, f.orientation]) @ T_bc
        T = np.linalg.inv(T_map_cam)
        pc = p3 @ T[:3, :3].T + T[:3, 3]
        ok = np.all(np.isfinite(pc), axis=1) & (pc[:, 2] > 0.1)
        if not ok.any():
            continue
        uv = (pc[ok] @ K.T)[:, :2] / pc[ok, 2:3]
        # The points PnP gets (refined on the query's fine map for coarse-to-fine patch features).
        pts = matching.query_points(q, kf, pairs[ok])
        errs.append(np.linalg.norm(pts - uv, axis=1))
        still.append(np.linalg.norm(kf.keypoints[pairs[ok, 1]] - uv, axis=1))
    def cat(v):
        return (np.concatenate(v) if v else np.zeros(0))
    return cat(errs), cat(still)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--map", required=True, help="saved map with 3D points (map build with depth)")
    ap.add_argument("--queries", nargs="+", required=True)
    ap.add_argument("--frame-stride", type=int, default=4)
    ap.add_argument("--features-max", type=int, default=300)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from distilvpr_core.features import registry
    from distilvpr_core.loopeval.offline import frames_from_traversal
    from distilvpr_core.mapdb import PriorMap
    import itertools

    m = PriorMap.load(args.map)
    store = m.features
    if store is None or not store.has_points:
        print(f"{args.map}: no local features with 3D points; build the map with depth", file=sys.stderr)
        return 2
    extract = registry.bound(store.kind, getattr(store, "model_path", None))
    out = {"command": " ".join(sys.argv), "kind": store.kind, "drives": {}}
    for trav in args.queries:
        frames = itertools.islice(frames_from_traversal(args.dataset, trav), 0, None, max(1, args.frame_stride))
        e, s = drive_errors(store, np.asarray(m.poses, np.float64), frames, extract, args.features_max)
        out["drives"][trav] = {"keypoints": _summary(e), "no_motion": _summary(s)}
        k, n = out["drives"][trav]["keypoints"], out["drives"][trav]["no_motion"]
        print(f"{store.kind} {trav}: {k['pairs']} pairs; within 2 px {k['within_2px']} (no motion "
              f"{n['within_2px']}); median {k['median_px']} px (no motion {n['median_px']})", flush=True)
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
