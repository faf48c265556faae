#!/usr/bin/env python3
"""Where local features lose a query, against ground truth: keypoints, matches, 3D points.

For every ``--stride``-th frame of each ``--queries`` drive of a native synthetic
dataset that lies within 5 m of a keyframe of ``--map`` (a map built with 3D
points, e.g. by scripts/pose_conditions.py), the nearest keyframe's features
(with their map-frame 3D points) are projected into the query with the
drive's ground-truth camera pose, and the query's features (the map's kind and
model) are matched to them with the engine's matcher:

* ``repeatability``: share of projected keyframe features with a query keypoint
  within 2 px (the detector's share);
* ``matches``: putative matches per frame (mutual nearest neighbours + ratio test);
* ``correct``: matches whose keyframe 3D point projects within 3 px of the query
  keypoint (what PnP can use; a feature without depth never counts);
* ``map_features_with_point``: how many of the map's stored features have a 3D point.

    python scripts/local_match_diag.py --dataset DIR --map OUT/map_learned \\
        --queries val_dawn train_night --out diag_learned.json

Writes ``--out`` (JSON) and prints one line per drive.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402


def _project(P: np.ndarray, T_cam_map: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [N, 2] pixels, bool [N] finite and in front) of map points P [N, 3]."""
    Xc = P @ T_cam_map[:3, :3].T + T_cam_map[:3, 3]
    ok = np.isfinite(Xc).all(1) & (Xc[:, 2] > 0.1)
    uv = (Xc[:, :2] / np.where(ok, Xc[:, 2], 1.0)[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    return uv, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--map", required=True, help="map directory with features and 3D points")
    ap.add_argument("--queries", nargs="+", required=True)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--max-features", type=int, default=300)
    ap.add_argument("--ratio", type=float, default=0.8)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from distilvpr_core.data import native
    from distilvpr_core.features import matching, registry
    from distilvpr_core.features.rotations import pose_to_matrix
    from distilvpr_core.mapdb import PriorMap
    m = PriorMap.load(args.map)
    st = m.features
    if st is None or not st.has_points:
        print(f"{args.map}: no features with 3D points", file=sys.stderr)
        return 2
    extract = registry.bound(st.kind, getattr(st, "model_path", None))
    ds = native.open_dataset(args.dataset)
    T_bc = pose_to_matrix(np.asarray(st.T_base_camera))
    K = st.camera.matrix()
    key_xyz = np.asarray(m.poses)[:, :3]
    with_pt = sum(int(np.isfinite(st.points(i)).all(axis=1).sum()) for i in range(len(m)))
    out = {"command": " ".join(sys.argv), "kind": st.kind, "map_features": int(st.counts.sum()),
           "map_features_with_point": with_pt, "drives": {}}
    print(f"{args.map}: {with_pt} of {int(st.counts.sum())} map features have a 3D point", flush=True)
    for trav in args.queries:
        t = ds.traversal(trav)
        rep, nm, nc, frames = [], [], [], 0
        for i in range(0, len(t.stamps_ns), max(1, args.stride)):
            d = np.linalg.norm(key_xyz - t.poses[i, None, :3], axis=1)
            k = int(np.argmin(d))
            if d[k] > 5.0:
                continue
            frames += 1
            T_cm = np.linalg.inv(pose_to_matrix(t.poses[i]) @ T_bc)
            q, kf, P = extract(t.load_image(i), args.max_features), st.get(k), st.points(k)
            uv, ok = _project(P, T_cm, K)
            if len(q) and ok.any():
                rep.append(float(np.mean(np.linalg.norm(uv[ok][:, None] - q.keypoints[None], axis=2).min(1) < 2)))
            pairs = matching.match(q, kf, args.ratio)
            nm.append(len(pairs))
            if len(pairs):
                err = np.linalg.norm(uv[pairs[:, 1]] - q.keypoints[pairs[:, 0]], axis=1)
                nc.append(int(((err < 3) & ok[pairs[:, 1]]).sum()))
            else:
                nc.append(0)
        row = {"frames": frames, "repeatability_2px": float(np.mean(rep)) if rep else None,
               "matches_per_frame": float(np.mean(nm)) if nm else None,
               "correct_per_frame": float(np.mean(nc)) if nc else None,
               "frames_with_6_correct": int(np.sum(np.asarray(nc) >= 6))}
        out["drives"][trav] = row
        print(f"{st.kind} {trav}: {row}", flush=True)
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
