#!/usr/bin/env python3
"""Per-condition metric-pose table: one map drive, several query drives, each feature kind.

For every ``--features`` kind a map with 3D points is built from ``--map-traversal``
of a native synthetic dataset; every ``--queries`` traversal then runs through the
localizer's own engine (offline, node settings from config/localize.yaml, every frame
a query, plus ``--node-param`` overrides) and is scored with loopeval/pose_metrics.py.
Two rows per drive and kind:

* ``engine``: the full localizer (student retrieval -> verification -> PnP -> pose
  consistency), what the node publishes;
* ``oracle``: the same verifier, PnP and pose-consistency check on the ``--oracle-k``
  map keyframes nearest to the ground truth (perfect retrieval), over the drive's frames
  within 5 m of a keyframe: what the local features alone can do, so a gap between the
  rows is the retrieval's share.

    python scripts/pose_conditions.py --dataset DIR --map-traversal train_noon \\
        --queries val_dawn test_noon --model student.onnx --features orb sift --out OUT

``--features learned`` needs ``--local-model local_features.onnx`` (distilvpr
train-local), ``--features patch`` ``--local-model patch.onnx`` (distilvpr
export-patch; one model kind per run); ``--frame-stride N`` queries every N-th
frame of each drive (the odometry between the kept frames is still the drive's
own); ``--oracle-only`` skips the engine rows (a cheaper run for choosing a
feature kind's settings).

Writes OUT/pose_conditions.json, OUT/pose_conditions.md and OUT/pose_error_cdf_<kind>.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_bytes_atomic, write_text_atomic  # noqa: E402


def _oracle(engine, frames, map_xyz: np.ndarray, k: int, s, snaps: list | None = None) -> list:
    """Outcomes of the verifier + PnP on the k keyframes nearest the truth (no retrieval),
    then the same pose-consistency check against the drive's odometry as the engine's.
    ``snaps`` gets, per published pose, (its position error, the truth's distance to the
    keyframe whose points gave it, the pose's distance to that keyframe), metres."""
    from distilvpr_core.localize.geometry import passes
    from distilvpr_core.localize.pose_consistency import PoseConsistency
    from distilvpr_core.loopeval.outcome import QueryOutcome
    check = PoseConsistency(s.pose_consistency_n, s.pose_consistency_m, s.pose_consistency_deg)
    out = []
    for f in frames:
        d = np.linalg.norm(map_xyz - f.position[None], axis=1)
        ids = np.argsort(d)[:k].astype(np.int64)
        t0 = time.perf_counter()
        checks, _ = engine.verifier.check(f.image, ids, s)
        ok = passes(checks, s)
        pose = checks.pose if ok else None
        consistent = check.update(pose, f.odom)
        if consistent is None and s.pose_require_odom and s.pose_consistency_n > 1:
            consistent = False  # as the engine: no odometry, no closure
        stage = {"match_rank": 0, "raw_score": float("nan"), "inliers": -1, "verified": ok,
                 "verify_s": time.perf_counter() - t0, "embed_s": 0.0, "verify_ran": True,
                 "pose": pose, "localized": pose is not None and consistent is not False}
        out.append(QueryOutcome(f.stamp_ns, f.position, True, ids, np.ones(len(ids), np.float32),
                                map_xyz[ids], accepted=stage["localized"], stage=stage,
                                orientation=f.orientation, published_pose=pose if stage["localized"] else None))
        if stage["localized"] and snaps is not None:
            kf = map_xyz[ids[checks.best]]
            snaps.append((float(np.linalg.norm(pose[:3] - f.position)), float(np.linalg.norm(f.position - kf)),
                          float(np.linalg.norm(pose[:3] - kf))))
    return out


def _beyond_keyframe(snaps: list) -> dict | None:
    """Whether the oracle's poses localise or only return the keyframe's own pose: medians of
    the position error, of the truth's and of the pose's distance to the keyframe that gave
    it, and the share of poses closer to the truth than that keyframe is, by more than 5 cm
    (a pose that is the keyframe's own pose never is).  The query frames of the synthetic drives lie at
    about the map drive's frame positions, so a pose that only repeats the keyframe's pose
    still lands within 0.5 m of the truth."""
    if not snaps:
        return None
    a = np.asarray(snaps)
    return {"poses": len(a), "median_error_m": float(np.median(a[:, 0])),
            "median_truth_to_keyframe_m": float(np.median(a[:, 1])),
            "median_pose_to_keyframe_m": float(np.median(a[:, 2])),
            "share_closer_than_keyframe": float(np.mean(a[:, 0] < a[:, 1] - 0.05))}


def _frames(dataset: str, traversal: str, no_odom: bool):
    """The drive's frames, without their odometry when ``no_odom``."""
    from distilvpr_core.loopeval.offline import frames_from_traversal
    for f in frames_from_traversal(dataset, traversal):
        if no_odom:
            f.odom = None
        yield f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--map-traversal", default="train_noon")
    ap.add_argument("--queries", nargs="+", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", nargs="+", default=["orb", "sift"], choices=["orb", "sift", "learned", "patch"])
    ap.add_argument("--local-model", help="ONNX of the learned or patch local features (for --features "
                    "learned or patch; one of them per run)")
    ap.add_argument("--frame-stride", type=int, default=1, help="query every N-th frame (default 1: all)")
    ap.add_argument("--features-max", type=int, default=300)
    ap.add_argument("--depth-frames", type=int, help="map build: LiDAR scans of the frames within +-N of a "
                    "keyframe give its depth too (default: the map build config's depth.frames)")
    ap.add_argument("--depth-prefer", choices=["on", "off"], help="map build: keep the features with a 3D "
                    "point first (default: the map build config's depth.prefer)")
    ap.add_argument("--oracle-k", type=int, default=3)
    ap.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE")
    ap.add_argument("--oracle-only", action="store_true", help="skip the engine rows (no retrieval)")
    ap.add_argument("--no-odom", action="store_true",
                    help="feed no odometry (a robot without it): the pose-consistency check cannot run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    from distilvpr_core.data import native
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.localize.engine import LocalizationEngine
    from distilvpr_core.localize.settings import parse_overrides, settings_from_file
    from distilvpr_core.loopeval.offline import run_engine
    from distilvpr_core.loopeval.plots import error_cdf_png
    from distilvpr_core.loopeval.pose_metrics import pose_metrics
    from distilvpr_core.mapdb.build import build_map, dataset_stream
    from distilvpr_core.mapdb.config import MapBuildConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = native.open_dataset(args.dataset)
    overrides = {"min_interval_s": 0.0, "min_distance_m": 0.0, "intra_op_threads": 1,
                 **parse_overrides(args.node_param)}
    settings = settings_from_file(REPO / "config" / "localize.yaml", overrides)
    build_cfg = MapBuildConfig()
    if args.depth_frames is not None:
        build_cfg.depth.frames = args.depth_frames
    if args.depth_prefer is not None:
        build_cfg.depth.prefer = args.depth_prefer == "on"
    emb = load_embedder(args.model, intra_op_threads=1)
    results: dict = {"command": " ".join(sys.argv), "settings": settings.to_dict(),
                     "map_depth": {"frames": build_cfg.depth.frames, "prefer": build_cfg.depth.prefer},
                     "oracle_only": args.oracle_only, "kinds": {}}
    try:
        for kind in args.features:
            t0 = time.perf_counter()
            m = build_map([dataset_stream(args.dataset, args.map_traversal)], emb, build_cfg,
                          progress=False, features_max=args.features_max, features_kind=kind,
                          local_model=args.local_model if kind in ("learned", "patch") else None)
            m.save(out / f"map_{kind}", overwrite=True)
            size = sum(e.bytes for e in m.schema.files.values()) / len(m)
            feat = sum(e.bytes for n, e in m.schema.files.items() if n.startswith("features_")) / len(m)
            counts = m.features.counts
            with_pt = sum(int(np.isfinite(m.features.points(i)).all(axis=1).sum()) for i in range(len(m)))
            per = results["kinds"][kind] = {"map_keyframes": len(m), "map_bytes_per_keyframe": size,
                                            "map_features": int(counts.sum()),
                                            "map_features_with_point": with_pt,
                                            "feature_bytes_per_keyframe": feat,
                                            "map_build_s": time.perf_counter() - t0, "drives": {}}
            map_xyz = np.asarray(m.poses)[:, :3]
            cdf = {}
            for trav in args.queries:
                cond = ds.traversal(trav).conditions
                label = f"{trav} ({'/'.join(str(cond.get(k, '')) for k in ('time_of_day', 'weather', 'season'))})"
                frames = _strided(_frames(args.dataset, trav, args.no_odom), args.frame_stride)
                if args.oracle_only:
                    outcomes, pm = list(frames), None
                else:
                    eng = LocalizationEngine(emb, m, settings, source="pose_conditions")
                    outcomes = run_engine(eng, frames)
                    pm = pose_metrics(outcomes, map_xyz, always=True)
                near = [f for f in _strided(_frames(args.dataset, trav, args.no_odom), args.frame_stride)
                        if np.min(np.linalg.norm(map_xyz - f.position[None], axis=1)) <= 5.0]
                snaps: list = []
                oracle = pose_metrics(_oracle(LocalizationEngine(emb, m, settings), near, map_xyz,
                                              args.oracle_k, settings, snaps), map_xyz, always=True) if near else None
                per["drives"][trav] = {"role": ds.role(trav), "conditions": cond, "frames": len(outcomes),
                                       "engine": pm, "oracle": oracle,
                                       "oracle_beyond_keyframe": _beyond_keyframe(snaps)}
                if pm is not None or (args.oracle_only and oracle is not None):
                    cdf[label] = pm if pm is not None else oracle
                print(f"{kind} {label}: {_line(pm)} | oracle {_line(oracle)} | beyond keyframe "
                      f"{per['drives'][trav]['oracle_beyond_keyframe']}", flush=True)
            write_bytes_atomic(out / f"pose_error_cdf_{kind}.png",
                               error_cdf_png(cdf, f"{kind}, map {args.map_traversal}"))
    finally:
        emb.close()
    write_text_atomic(out / "pose_conditions.json", json.dumps(_strip(results), indent=2) + "\n")
    write_text_atomic(out / "pose_conditions.md", _markdown(results))
    return 0


def _strided(frames, stride: int):
    """Every ``stride``-th frame (the first always)."""
    import itertools
    return itertools.islice(frames, 0, None, max(1, int(stride)))


def _line(pm) -> str:
    if pm is None:
        return "no pose"
    st = pm["stages"]["published"]
    return (f"published {st['poses']}, revisits {st['revisits']}, within 0.5 m/5 deg "
            f"{st['share_of_revisits']['0.5m_5deg']}, wrong {st['wrong_closures']}")


def _strip(obj):
    """The JSON without the per-pose error lists (kept only for the plots)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "translation_errors_m"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _markdown(results: dict) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.0f} %"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    lines = [f"Command: `{results['command']}`", "",
             "| features | drive (role) | rows | revisits (<= 5 m) | published | of revisits within 0.25 m, 2° | "
             "0.5 m, 5° | 5 m, 10° | median m / ° | wrong (> 5 m) | retrieval top-k has the place | "
             "verify+PnP ms p50 |", "|" + "---|" * 12]
    for kind, per in results["kinds"].items():
        for trav, d in per["drives"].items():
            for row in ("engine", "oracle"):
                pm = d[row]
                if pm is None:
                    if row == "engine" and results.get("oracle_only"):
                        continue  # not run (--oracle-only)
                    lines.append(f"| {kind} | {trav} ({d['role']}) | {row} | | 0 | | | | | | | |")
                    continue
                st = pm["stages"]["published"]
                sh = st["share_of_revisits"]
                lat = pm["latency_s"]["verify_and_pose_p50"]
                lines.append(
                    f"| {kind} | {trav} ({d['role']}) | {row} | {st['revisits']} | {st['poses']} | "
                    f"{pct(sh['0.25m_2deg'])} | {pct(sh['0.5m_5deg'])} | {pct(sh['5m_10deg'])} | "
                    f"{num(st['translation_m']['median'])} / {num(st['rotation_deg']['median'])} | "
                    f"{st['wrong_closures']} | "
                    f"{pct(pm['retrieval']['top_k']) if row == 'engine' else '(oracle)'} | "
                    f"{'n/a' if lat is None else f'{1000 * lat:.0f}'} |")
        lines.append(f"| {kind} | map | | | | | | | | | {per['map_keyframes']} keyframes, "
                     f"{per['map_bytes_per_keyframe'] / 1024:.1f} KiB each "
                     f"({per['feature_bytes_per_keyframe'] / 1024:.1f} KiB features); "
                     f"{per['map_features_with_point']} of {per['map_features']} features with a 3D point "
                     f"(depth frames +-{results['map_depth']['frames']}, "
                     f"prefer {'on' if results['map_depth']['prefer'] else 'off'}) | |")
    lines += ["", "Oracle poses against the keyframe that gave them (medians, metres; share of poses closer "
              "to the truth than that keyframe, by more than 5 cm):", "",
              "| features | drive | poses | error | truth to keyframe | pose to keyframe | closer than keyframe |",
              "|---|---|---|---|---|---|---|"]
    for kind, per in results["kinds"].items():
        for trav, d in per["drives"].items():
            b = d.get("oracle_beyond_keyframe")
            if b is not None:
                lines.append(f"| {kind} | {trav} | {b['poses']} | {b['median_error_m']:.2f} | "
                             f"{b['median_truth_to_keyframe_m']:.2f} | {b['median_pose_to_keyframe_m']:.2f} | "
                             f"{pct(b['share_closer_than_keyframe'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
