#!/usr/bin/env python3
"""Which geometric checks a wrong metric closure passes: per-candidate evidence of PnP poses.

For every frame of each ``--queries`` drive (native synthetic dataset) the query's local
features are matched to three kinds of map keyframes: the student's retrieval top-3
(``retrieval``), the 3 keyframes nearest the ground truth (``near``: perfect retrieval)
and 3 random keyframes more than 60 m away (``far``).  Each pair goes through the
engine's own steps (fundamental-matrix screen, PnP with RANSAC on the 2D-3D matches,
covariance) and every PnP pose is recorded with what a rule could test: inliers, inlier
ratio, position std-dev (sqrt of the covariance trace), its distance and rotation from the
matched keyframe, its height offset from it, and its error against the truth (right:
<= 5 m, wrong: > 5 m).  The pose-consistency check over successive frames is not applied
here (the engine rows of scripts/pose_conditions.py have it).

    python scripts/closure_audit.py --dataset DIR --map MAP --model student.onnx \\
        --queries val_dawn --out OUT

Writes OUT/closure_audit.json (every pose) and OUT/closure_audit.md (percentiles per drive,
source and verdict, and the wrong poses one by one).
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

KEYS = ("pnp_inliers", "inlier_ratio", "pos_std_m", "to_keyframe_m", "to_keyframe_deg", "abs_dz_m")


def audit_drive(dataset: str, trav: str, emb, m, s, seed: int = 0) -> list[dict]:
    """One record per PnP pose of the drive's frames against their candidates."""
    from distilvpr_core.features import pnp, registry, two_view
    from distilvpr_core.features.rotations import pose_to_matrix, rotation_angle_deg
    from distilvpr_core.loopeval.offline import frames_from_traversal
    from distilvpr_core.loopeval.pose_metrics import pose_error
    store, rng = m.features, np.random.default_rng(seed)
    T_cam_base = np.linalg.inv(pose_to_matrix(store.T_base_camera))
    mxyz = np.asarray(m.poses)[:, :3]
    rows = []
    for i, f in enumerate(frames_from_traversal(dataset, trav)):
        d = np.linalg.norm(mxyz - f.position[None], axis=1)
        res = m.search(emb.embed(f.image), 3)
        far_pool = np.flatnonzero(d > 60.0)
        cands = {"retrieval": [int(k) for k in res.ids[0] if k >= 0],
                 "near": [int(k) for k in np.argsort(d)[:3]],
                 "far": [int(k) for k in rng.choice(far_pool, min(3, len(far_pool)), replace=False)]}
        qf = registry.extract(store.kind, f.image, s.verify_max_features)
        for src, kids in cands.items():
            for kid in kids:
                v = two_view.verify(qf, store.get(kid), store.camera, ransac_px=s.verify_ransac_px,
                                    seed=kid, pose=False)
                pairs = v.extra.get("pairs")
                if pairs is None or len(pairs) < 6:
                    continue
                r = pnp.solve(qf.keypoints[pairs[:, 0]], store.points(kid)[pairs[:, 1]], store.camera,
                              s.pnp_ransac_px, seed=kid)
                if not r.ok:
                    continue
                pose, cov = pnp.body_pose(r, T_cam_base)
                err_m, err_deg = pose_error(pose, f.position, f.orientation)
                T, K = pose_to_matrix(pose), pose_to_matrix(m.poses[kid])
                rows.append({"drive": trav, "frame": i, "source": src, "keyframe": kid,
                             "keyframe_from_truth_m": float(d[kid]), "pnp_inliers": r.inliers,
                             "inlier_ratio": r.inliers / max(len(pairs), 1),
                             "pos_std_m": float(np.sqrt(np.trace(cov[:3, :3]))),
                             "to_keyframe_m": float(np.linalg.norm(T[:3, 3] - K[:3, 3])),
                             "to_keyframe_deg": rotation_angle_deg(K[:3, :3].T @ T[:3, :3]),
                             "abs_dz_m": float(abs(T[2, 3] - K[2, 3])), "err_m": err_m, "err_deg": err_deg})
    return rows


def markdown(rows: list[dict], command: str) -> str:
    """Percentiles (p10 / p50 / p90) of each check per drive, source and verdict; wrong poses listed."""
    lines = [f"Command: `{command}`", "", "| drive | source | verdict | poses | "
             + " | ".join(f"{k} p10/p50/p90" for k in KEYS) + " |", "|" + "---|" * (4 + len(KEYS))]
    for drive in dict.fromkeys(r["drive"] for r in rows):
        for src in ("retrieval", "near", "far"):
            for verdict, sel in (("right (<= 5 m)", lambda r: r["err_m"] <= 5.0),
                                 ("wrong (> 5 m)", lambda r: r["err_m"] > 5.0)):
                x = [r for r in rows if r["drive"] == drive and r["source"] == src and sel(r)]
                if not x:
                    continue
                cells = []
                for k in KEYS:
                    p = np.percentile([r[k] for r in x], [10, 50, 90])
                    cells.append(" / ".join(f"{v:.2f}" if k in ("inlier_ratio", "pos_std_m") else f"{v:.1f}"
                                            for v in p))
                lines.append(f"| {drive} | {src} | {verdict} | {len(x)} | " + " | ".join(cells) + " |")
    lines += ["", "Wrong poses (> 5 m), by position std-dev:", "",
              "| drive | frame | source | keyframe (m from truth) | error m / deg | inliers | ratio | std m | "
              "to keyframe m / deg | abs dz m |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in rows if r["err_m"] > 5.0), key=lambda r: r["pos_std_m"]):
        lines.append(f"| {r['drive']} | {r['frame']} | {r['source']} | {r['keyframe']} "
                     f"({r['keyframe_from_truth_m']:.1f}) | {r['err_m']:.1f} / {r['err_deg']:.0f} | "
                     f"{r['pnp_inliers']} | {r['inlier_ratio']:.2f} | {r['pos_std_m']:.2f} | "
                     f"{r['to_keyframe_m']:.1f} / {r['to_keyframe_deg']:.0f} | {r['abs_dz_m']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the audit and write the JSON and Markdown; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--map", required=True, help="map with 3D points (distilvpr map build)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--queries", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.localize.settings import settings_from_file
    from distilvpr_core.mapdb import PriorMap
    emb = load_embedder(args.model, intra_op_threads=1)
    m = PriorMap.load(args.map, expect_fingerprint=emb.fingerprint, expect_dim=emb.dim)
    if m.features is None or not m.features.has_points:
        raise SystemExit(f"{args.map}: the map has no 3D points (build it from a dataset with LiDAR)")
    s = settings_from_file(REPO / "config" / "localize.yaml")
    try:
        rows = [r for t in args.queries for r in audit_drive(args.dataset, t, emb, m, s)]
    finally:
        emb.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(sys.argv)
    write_text_atomic(out / "closure_audit.json", json.dumps({"command": command, "poses": rows}, indent=1) + "\n")
    write_text_atomic(out / "closure_audit.md", markdown(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
