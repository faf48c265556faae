"""`distilvpr map init|build|info|verify|merge|query`: make, inspect and search prior maps."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..foundation.errors import UserError

HELP = "prior map: init (empty), build from a dataset or rosbag, info, verify, merge, query"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands of ``distilvpr map``: init, build, info, verify, merge and query, with their options."""
    from ..foundation.config import add_config_args
    sub = parser.add_subparsers(dest="map_command", metavar="ACTION")

    n = sub.add_parser("init", help="create an empty map for a model (the first map of a SLAM session)",
                       description="Write an empty map whose descriptor size, model fingerprint and "
                                   "preprocessing are the model's, for the localizer's online mapping "
                                   "(online_mapping:=true, then ~/save_map).")
    n.add_argument("out", help="map directory to write")
    n.add_argument("--model", required=True, help="student .onnx (or .pt with --backend torch)")
    n.add_argument("--backend", default="onnxruntime", help="embedder backend: onnxruntime | torch | tensorrt")
    n.add_argument("--index", choices=["flat", "hnsw", "ivfpq"], default="flat",
                   help="index type (default: flat, exact)")
    n.add_argument("--camera", metavar="FX,FY,CX,CY,WIDTH,HEIGHT",
                   help="intrinsics of the robot's camera (pixels): keyframes added online then store "
                        "local features, so later loop closures are verified geometrically")
    n.add_argument("--features-max", type=int, default=300,
                   help="ORB features stored per keyframe with --camera (default 300)")
    n.add_argument("--overwrite", action="store_true", help="replace an existing map at OUT")

    b = sub.add_parser("build", help="embed keyframes of dataset traversals and/or bags into a new map",
                       description="Select keyframes (by distance/time), embed them with the student "
                                   "and write a verified map directory atomically.")
    b.add_argument("--model", required=True, help="student .onnx (or .pt with --backend torch)")
    b.add_argument("--backend", default="onnxruntime", help="embedder backend: onnxruntime | torch | tensorrt")
    b.add_argument("--dataset", help="native dataset root (from 'distilvpr synth')")
    b.add_argument("--traversal", action="append", default=[], help="traversal of --dataset (repeatable)")
    b.add_argument("--bag", action="append", default=[], help="rosbag2 directory or file (repeatable)")
    b.add_argument("--image-topic", default="/camera/image_raw", help="bag image topic (Image or CompressedImage)")
    b.add_argument("--pose-topic", default="/ground_truth/pose",
                   help="bag pose topic (PoseStamped or Odometry, map frame), e.g. /odom")
    b.add_argument("--camera-info-topic", default="/camera/camera_info",
                   help="bag CameraInfo topic: intrinsics for geometric verification")
    b.add_argument("--no-features", action="store_true",
                   help="store no local features (no camera intrinsics needed; the localizer then "
                        "cannot verify loop closures geometrically)")
    b.add_argument("--features-max", type=int, default=300,
                   help="local features stored per keyframe (default 300: about 12 KB with orb, "
                        "42 KB with sift or learned, plus 3.5 KB of 3D points with depth)")
    b.add_argument("--features", default="sift", choices=["orb", "sift", "learned", "patch"],
                   help="local feature kind stored for verification and metric pose: sift (default: "
                        "RootSIFT on a CLAHE-normalised image, chosen on a validation drive), orb "
                        "(cheaper fallback), learned or patch (the student's own layer-3 cells; both "
                        "need --local-model); the localizer uses the map's kind")
    b.add_argument("--local-model", metavar="FILE.onnx",
                   help="with --features learned: the network written by 'distilvpr train-local' "
                        "(local_features.onnx); with --features patch: the file written by 'distilvpr "
                        "export-patch'; the map stores a copy, so the localizer needs nothing else")
    b.add_argument("--no-points", action="store_true",
                   help="store no 3D points of the features even when the dataset has LiDAR "
                        "(no metric pose; essential-matrix verification only)")
    b.add_argument("--depth-frames", type=int, metavar="N",
                   help="3D points from the LiDAR scans of the frames within +-N of each keyframe too "
                        "(their poses known; occluded returns dropped), not only its own scan: more "
                        "features get a 3D point (default: config depth.frames, 8; 0 = own scan only)")
    b.add_argument("--out", required=True, help="map directory to write")
    b.add_argument("--overwrite", action="store_true", help="replace an existing map at --out")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(b)

    i = sub.add_parser("info", help="print a map's schema (no checksum verification)")
    i.add_argument("map", help="map directory")
    i.add_argument("--json", action="store_true", help="print schema.json as is")

    v = sub.add_parser("verify", help="verify checksums, counts and (with --model) the model fingerprint")
    v.add_argument("map", help="map directory")
    v.add_argument("--model", help="check the map against this model's fingerprint and dim")
    v.add_argument("--backend", default="onnxruntime")

    m = sub.add_parser("merge", help="merge two maps built with the same model into a new map")
    m.add_argument("first", help="first map (its ids are kept)")
    m.add_argument("second", help="second map (ids renumbered after the first)")
    m.add_argument("--out", required=True, help="merged map directory")
    m.add_argument("--index", choices=["flat", "hnsw", "ivfpq"], help="index type (default: the first map's)")
    m.add_argument("--overwrite", action="store_true")

    q = sub.add_parser("query", help="top-k keyframes for images (or saved descriptors)")
    q.add_argument("map", help="map directory")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", nargs="+", help="query image files (needs --model)")
    src.add_argument("--descriptors", help=".npy float32 [Q, D] query descriptors")
    q.add_argument("--model", help="student model for --image (and fingerprint check)")
    q.add_argument("--backend", default="onnxruntime")
    q.add_argument("-k", type=int, default=5, help="results per query (default 5)")
    q.add_argument("--center", help="radius filter centre 'x,y,z' (m, map frame)")
    q.add_argument("--radius", type=float, help="radius filter (m) around --center")
    q.add_argument("--json", action="store_true", help="print results as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the ``distilvpr map`` action chosen on the command line; UserError if none was given."""
    actions = {"init": _init, "build": _build, "info": _info, "verify": _verify, "merge": _merge, "query": _query}
    if args.map_command not in actions:
        raise UserError(f"choose an action: {', '.join(actions)} (see 'distilvpr map --help')")
    return actions[args.map_command](args)


def _embedder(model: str, backend: str):
    from ..infer import load_embedder
    if not Path(model).is_file():
        raise UserError(f"--model {model}: file not found")
    return load_embedder(model, backend=backend)


def _check_out(out: Path, overwrite: bool, flag: str = "--out ") -> None:
    """Refuse a bad output path (given as ``flag``) before any expensive work."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / "schema.json").is_file():
            raise UserError(f"{flag}{out}: exists and is not an empty directory or a map; choose another path")
        if not overwrite:
            raise UserError(f"{flag}{out}: a map exists already; pass --overwrite to replace it")


def _camera(text: str):
    """``--camera fx,fy,cx,cy,width,height`` -> Intrinsics (UserError naming the flag)."""
    from ..features.types import Intrinsics
    from .features import CAMERA_KEYS, check_intrinsics
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != len(CAMERA_KEYS):
            raise ValueError(f"{len(parts)} values")
        cam = Intrinsics(*(float(p) for p in parts[:4]), int(parts[4]), int(parts[5]))
    except ValueError as exc:
        raise UserError(f"--camera {text!r}: expected {','.join(CAMERA_KEYS)} (numbers; width and "
                        f"height integers), e.g. 525,525,319.5,239.5,640,480 ({exc})") from None
    return check_intrinsics(cam, f"--camera {text!r}")


def _init(args: argparse.Namespace) -> int:
    from .features import FeatureStore
    from .priormap import PriorMap
    out = Path(args.out)
    _check_out(out, args.overwrite, flag="")
    camera = _camera(args.camera) if args.camera else None
    if camera is not None and not 5 <= args.features_max <= 2000:
        raise UserError(f"--features-max {args.features_max}: expected 5..2000")
    emb = _embedder(args.model, args.backend)
    try:
        m = PriorMap.create(emb.dim, emb.fingerprint, emb.contract, index=args.index)
    finally:
        emb.close()
    if camera is not None:
        m.attach_features(FeatureStore(camera, args.features_max))
    m.save(out, overwrite=args.overwrite)
    print(f"wrote {out}: empty map, dim {m.dim}, index {m.index_type}, model {m.fingerprint[:16]}, "
          + (f"features for a {camera.width}x{camera.height} camera" if camera else "no features")
          + "; start the localizer with online_mapping:=true and save with ~/save_map")
    return 0


def _build(args: argparse.Namespace) -> int:
    from ..foundation.config import load_config
    from .build import bag_stream, build_map, dataset_stream
    from .config import MapBuildConfig
    cfg = load_config(MapBuildConfig, args.config, args.overrides)
    if args.depth_frames is not None:
        if not 0 <= args.depth_frames <= 50:
            raise UserError(f"--depth-frames {args.depth_frames}: expected 0..50 (0 = each keyframe's "
                            "own LiDAR scan only)")
        cfg.depth.frames = args.depth_frames
    if not args.bag and not args.dataset:
        raise UserError("map build: give --dataset ROOT --traversal NAME and/or --bag PATH")
    if args.dataset and not args.traversal:
        raise UserError("map build: --dataset needs at least one --traversal NAME")
    if args.traversal and not args.dataset:
        raise UserError("map build: --traversal needs --dataset ROOT")
    out = Path(args.out)
    _check_out(out, args.overwrite)
    streams = [dataset_stream(args.dataset, t) for t in args.traversal]
    streams += [bag_stream(b, args.image_topic, args.pose_topic, cfg.sync_tolerance_s,
                           "" if args.no_features else args.camera_info_topic) for b in args.bag]
    nfeat = 0 if args.no_features else args.features_max
    source = {"learned": "distilvpr train-local", "patch": "distilvpr export-patch"}
    if args.features in source and not args.no_features and not args.local_model:
        raise UserError(f"map build --features {args.features} needs --local-model FILE.onnx (from "
                        f"'{source[args.features]}'); or choose --features sift")
    if args.local_model and args.features not in source:
        raise UserError(f"--local-model is only for --features learned or patch (got --features {args.features})")
    if not args.no_features:
        from .build import feature_camera
        feature_camera(streams)  # missing intrinsics: fail before loading the model
        if not 5 <= nfeat <= 2000:
            raise UserError(f"--features-max {nfeat}: expected 5..2000 (or --no-features)")
    emb = _embedder(args.model, args.backend)
    try:
        m = build_map(streams, emb, cfg, progress=not args.quiet, features_max=nfeat,
                      features_kind=args.features, points=not args.no_points, local_model=args.local_model)
    finally:
        emb.close()
    m.save(out, overwrite=args.overwrite)
    total = sum(e.bytes for e in m.schema.files.values())
    if m.features is None:
        feat = "no features"
    else:
        feat = f"{nfeat} {m.features.kind} features max" + (" with 3D points" if m.features.has_points else "")
    print(f"wrote {out}: {len(m)} keyframes from {len(m.source_names)} source(s), dim {m.dim}, "
          f"index {m.index_type}, {feat}, {total / max(len(m), 1) / 1024:.1f} KiB per keyframe")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .schema import SCHEMA_FILE, read_schema
    schema = read_schema(Path(args.map))
    if args.json:
        print((Path(args.map) / SCHEMA_FILE).read_text(), end="")
        return 0
    total = sum(e.bytes for e in schema.files.values())
    print(f"map {args.map}\n  format version {schema.format_version}, created {schema.created_at}\n"
          f"  keyframes {schema.keyframes}, sources {schema.sources}, dim {schema.dim}, metric {schema.metric}\n"
          f"  index {schema.index_type} {dict(schema.index_params)}\n"
          f"  model fingerprint {schema.model_fingerprint}\n"
          f"  preprocessing {json.dumps(dict(schema.preprocessing))}\n"
          f"  files {len(schema.files)} ({total / 2**20:.1f} MiB)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..foundation.contract import check_contract
    from .priormap import PriorMap
    from .schema import V1_NOTE, read_schema
    from .storage import LockUnavailable, remove_stale_partials, writer_lock
    path = Path(args.map)
    try:
        if not path.is_dir():  # nothing to clean, and verify must create nothing
            raise UserError(f"{path}: map directory not found")
        with writer_lock(path, clean=False):
            # Holding the lock proves no live writer owns the partials.
            for p, size in remove_stale_partials(path):
                print(f"removed {p} ({size / 1e6:.1f} MB): left by a writer that died mid-save")
    except LockUnavailable as exc:  # read-only storage: verify reads, it need not lock
        print(f"note: {exc}; stale temporary directories were not looked for")
    except UserError as exc:
        if not path.is_dir():
            raise
        print(f"note: {exc}; its temporary directory is left alone")
    fp = dim = contract = None
    if args.model:
        emb = _embedder(args.model, args.backend)
        fp, dim, contract = emb.fingerprint, emb.dim, emb.contract.to_dict()
        emb.close()
    m = PriorMap.load(path, expect_fingerprint=fp, expect_dim=dim)
    if contract is not None:
        check_contract(m.contract, contract, str(path), str(args.model))
    version = read_schema(path).format_version
    print(f"ok: {args.map}: {len(m)} keyframes, {len(m.schema.files)} files verified"
          + (", model and preprocessing match" if fp else ""))
    if version < 2:
        print(f"note: {V1_NOTE}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .merge import merge_maps
    from .priormap import PriorMap
    out = Path(args.out)
    _check_out(out, args.overwrite)
    a, b = PriorMap.load(args.first), PriorMap.load(args.second)
    merged = merge_maps(a, b, index=args.index)
    merged.save(out, overwrite=args.overwrite)
    print(f"wrote {out}: {len(merged)} keyframes ({len(a)} + {len(b)}), index {merged.index_type}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from .priormap import PriorMap
    emb = _embedder(args.model, args.backend) if args.model else None
    if args.image and emb is None:
        raise UserError("map query --image needs --model")
    m = PriorMap.load(args.map, expect_fingerprint=emb.fingerprint if emb else None,
                      expect_dim=emb.dim if emb else None)
    if emb is not None:
        from ..foundation.contract import check_contract
        check_contract(m.contract, emb.contract.to_dict(), str(args.map), str(args.model))
    if args.image:
        from PIL import Image
        images = []
        for p in args.image:
            try:
                with Image.open(p) as im:
                    images.append(np.asarray(im.convert("RGB")))
            except (OSError, ValueError) as exc:
                raise UserError(f"--image {p}: cannot be read as an image ({exc})") from None
        queries, names = emb.embed(images), list(args.image)
        emb.close()
    else:
        from ..foundation.safe_files import read_npy
        queries = read_npy(args.descriptors, what=f"--descriptors {args.descriptors}",
                           check=lambda dt, shape: None if dt.kind == "f" and len(shape) in (1, 2) else
                           f"expected float [Q, D] or [D] descriptors, got {dt.name} {list(shape)}",
                           follow_symlinks=True, max_bytes=1 << 30)
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
        names = [f"{args.descriptors}[{i}]" for i in range(len(queries))]
    center = None
    if args.center is not None:
        try:
            center = [float(v) for v in args.center.split(",")]
        except ValueError:
            raise UserError(f"--center {args.center!r}: expected 'x,y,z' in metres") from None
    res = m.search(queries, args.k, center_xyz=center, radius_m=args.radius)
    rows = []
    for qi, name in enumerate(names):
        for rank, (kid, score) in enumerate(zip(res.ids[qi], res.scores[qi])):
            if kid < 0:
                continue
            rows.append({"query": name, "rank": rank + 1, "id": int(kid), "score": float(score),
                         "source": str(m.sources[kid]), "frame_index": int(m.frame_index[kid]),
                         "stamp_ns": int(m.stamps_ns[kid]), "xyz": [float(v) for v in m.poses[kid, :3]]})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            x, y, z = r["xyz"]
            print(f"{r['query']}  #{r['rank']}  id {r['id']:>7}  score {r['score']:.4f}  "
                  f"{r['source']}[{r['frame_index']}]  xyz ({x:.2f}, {y:.2f}, {z:.2f})")
    return 0
