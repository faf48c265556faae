"""Build a prior map from dataset traversals or rosbags: select keyframes, embed, index.

A *frame stream* yields ``(frame_index, stamp_ns, pose float64 [7], image)``
where image is uint8 [H, W, 3] RGB or a zero-argument loader of one (so a
dataset decodes only keyframe images).  Keyframes of every stream are
embedded in batches and added to one map in a single ``add`` (IVF-PQ trains
on that add).  With ``features_max`` each keyframe's local features (of
``features_kind``, features/registry.py) are stored too (mapdb.features),
which needs the camera intrinsics of every stream: the dataset's camera
model, or the bag's CameraInfo.  When every stream also has a LiDAR scan per
frame and the extrinsics of camera and LiDAR (a native dataset does), each
feature's 3D point in the map frame is stored as well (mapdb/points3d.py),
which gives the localizer a metric pose; bags keep the features without
points (essential-matrix verification only).  ``cfg.depth.frames`` > 0 adds
the scans of the neighbouring frames (a stream with per-frame poses, like a
native dataset; others fall back to the single scan, with a note on stderr)
through an occlusion test (mapdb/depth_aggregate.py); ``cfg.depth.prefer``
fills the feature budget with features that have a 3D point first.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..foundation.errors import UserError
from .config import MapBuildConfig
from .keyframes import KeyframeSelector, nearest_pose
from .priormap import PriorMap

Frame = tuple[int, int, np.ndarray, Any]


@dataclass
class FrameStream:
    """Frames of one source: ``name`` is stored as the keyframes' source."""

    name: str
    total: int | None
    frames: Iterator[Frame]
    camera: Any = None  # features.types.Intrinsics of the images, or None when unknown
    #: frame_index -> float32 [P, >=3] LiDAR scan (LiDAR frame) taken with the image, or None.
    scan: Any = None
    T_base_camera: Any = None  # float64 [7] camera pose on base_link (with scan)
    T_base_lidar: Any = None   # float64 [7] LiDAR pose on base_link (with scan)
    #: float64 [T, 7] base_link pose in the map of every frame_index 0..T-1 (with scan), so
    #: neighbouring scans can be moved into a keyframe (cfg.depth.frames); None: unknown.
    scan_poses: Any = None


def dataset_stream(root: str | Path, traversal: str) -> FrameStream:
    """Frames of one traversal of a native dataset (poses are ground truth, map frame)."""
    from ..data import native
    ds = native.open_dataset(root)
    if traversal not in ds.traversals:
        raise UserError(f"{root}: no traversal {traversal!r}; the dataset has {ds.traversals}")
    trav = ds.traversal(traversal)
    poses, stamps = trav.poses, trav.stamps_ns
    camera = None
    if isinstance(getattr(ds, "camera", None), dict):
        from .features import intrinsics_from_dataset
        camera = intrinsics_from_dataset(ds.camera, f"{root}/dataset.json camera")

    def frames() -> Iterator[Frame]:
        for i in range(len(trav)):
            yield i, int(stamps[i]), poses[i], (lambda i=i: trav.load_image(i))
    t_bc, t_bl = _extrinsic(ds.camera, "T_base_camera"), _extrinsic(getattr(ds, "lidar", None), "T_base_lidar")
    scan = trav.load_lidar if (camera is not None and t_bc is not None and t_bl is not None) else None
    return FrameStream(traversal, len(trav), frames(), camera, scan, t_bc, t_bl,
                       poses if scan is not None else None)


def _extrinsic(sensor: Any, key: str) -> np.ndarray | None:
    """float64 [7] ``sensor[key]`` (x y z qx qy qz qw on base_link), or None if absent or invalid."""
    try:
        t = np.asarray(sensor[key], np.float64).reshape(7)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    ok = np.all(np.isfinite(t)) and abs(np.linalg.norm(t[3:]) - 1.0) < 1e-3
    return t if ok else None


def bag_stream(bag: str | Path, image_topic: str, pose_topic: str, tolerance_s: float,
               camera_info_topic: str = "") -> FrameStream:
    """Frames of a rosbag2: each image with the pose (PoseStamped, PoseWithCovarianceStamped
    or Odometry) nearest in stamp.

    ``camera_info_topic``: CameraInfo topic giving the stream's intrinsics
    (for local features); '' or absent from the bag: none.

    Images with no pose within ``tolerance_s`` are skipped; if none has one,
    UserError names both topics and their time spans.  frame_index is the
    image's position on its topic.
    """
    from ..data import bags
    bag = Path(bag)
    pose_stamps, poses = bags.read_pose_stream(bag, pose_topic)
    order = np.argsort(pose_stamps, kind="stable")
    pose_stamps, poses = pose_stamps[order], poses[order]
    images = bags.read_image_stream(bag, image_topic)
    total = bags.bag_topics(bag).get(image_topic, ("", None))[1]

    def frames() -> Iterator[Frame]:
        matched, first, last = 0, None, None
        for i, (stamp, image) in enumerate(images):
            first = stamp if first is None else first
            last = stamp
            j = nearest_pose(pose_stamps, stamp, tolerance_s)
            if j >= 0:
                matched += 1
                yield i, int(stamp), poses[j], image
        if matched == 0:
            raise UserError(
                f"{bag}: no image on {image_topic} has a pose on {pose_topic} within {tolerance_s} s "
                f"(images span {_span(first, last)}, poses span {_span(pose_stamps[0], pose_stamps[-1])}); "
                "check the topics or raise sync_tolerance_s")
    return FrameStream(str(bag), total, frames(), _bag_camera(bag, camera_info_topic))


def _bag_camera(bag: Path, topic: str) -> Any:
    """Intrinsics from the bag's CameraInfo on ``topic``, or None ('' or not in the bag)."""
    from ..data import bags
    if not topic or topic not in bags.bag_topics(bag):
        return None
    from .features import intrinsics_from_camera_info
    return intrinsics_from_camera_info(bags.read_camera_info(bag, topic), f"{bag} {topic}")


def _span(a: Any, b: Any) -> str:
    if a is None:
        return "nothing"
    return f"{int(a) / 1e9:.3f}..{int(b) / 1e9:.3f} s"


def build_map(streams: list[FrameStream], embedder: Any, cfg: MapBuildConfig,
              progress: bool = True, features_max: int = 0, features_kind: str = "sift",
              points: bool = True, local_model: str | Path | None = None) -> PriorMap:
    """Select keyframes from each stream, embed them with ``embedder`` and index them.

    embedder: a distilvpr_core.infer Embedder (``embed``, ``dim``,
    ``fingerprint``, ``contract``).  ``features_max`` > 0: also store up to
    that many local features of ``features_kind`` per keyframe (UserError,
    before any work, when a stream has no intrinsics or the streams'
    intrinsics differ), with their map-frame 3D points when ``points`` and
    every stream has LiDAR scans and one camera mounting.  ``local_model``: the
    ONNX file of a kind that needs one ("learned"); the map carries a copy.
    Raises UserError if no keyframe results.
    """
    from tqdm import tqdm
    from ..features import registry
    registry.get(features_kind, "map build --features")
    extractor = registry.bound(features_kind, local_model) if features_max else None
    camera = feature_camera(streams) if features_max else None
    t_bc = depth_mounting(streams) if (features_max and points) else None
    feats: list[Any] = []
    pts: list[Any] = []
    depth = _DepthSource(camera, cfg.depth.frames) if t_bc is not None else None
    desc, stamps, poses, frames, sources = [], [], [], [], []
    k = cfg.keyframes
    for stream in streams:
        selector = KeyframeSelector(k.min_distance_m, k.min_interval_s, k.combine)
        batch: list[np.ndarray] = []

        def flush() -> None:
            if batch:
                desc.append(embedder.embed(batch))
                batch.clear()
        bar = tqdm(total=stream.total, desc=f"map {Path(stream.name).name}", unit="frame",
                   disable=not progress, file=sys.stderr)
        try:
            for index, stamp, pose, image in stream.frames:
                bar.update(1)
                if not selector.accept(stamp, pose):
                    continue
                batch.append(image() if callable(image) else image)
                if camera is not None:
                    prefer = t_bc is not None and cfg.depth.prefer
                    f = _keyframe_features(batch[-1], camera, features_max * (2 if prefer else 1),
                                           stream.name, index, extractor)
                    p = None if t_bc is None else depth.points(stream, index, pose, f.keypoints)
                    if prefer:
                        f, p = _depth_first(f, p, features_max)
                    feats.append(f)
                    pts.append(p)
                stamps.append(stamp)
                poses.append(np.asarray(pose, np.float64))
                frames.append(index)
                sources.append(stream.name)
                if len(batch) >= cfg.batch_size:
                    flush()
            flush()
        finally:
            bar.close()
    if not stamps:
        raise UserError("map build: no keyframes selected; check the inputs")
    m = PriorMap.create(embedder.dim, embedder.fingerprint, embedder.contract,
                        index=cfg.index.type, index_params=cfg.index.params)
    m.add(np.concatenate(desc), np.asarray(stamps, np.int64), np.stack(poses), sources,
          np.asarray(frames, np.int64))
    if camera is not None:
        from .features import FeatureStore
        store = FeatureStore(camera, features_max, features_kind, T_base_camera=t_bc,
                             model_path=local_model if features_kind in registry.NEEDS_MODEL else None)
        for f, p in zip(feats, pts):
            store.append(f, p)
        m.attach_features(store)
    if depth is not None:
        depth.report()
    return m


class _DepthSource:
    """Map-frame 3D points of a keyframe's features from its stream's LiDAR scans:
    its own scan, plus those of the frames within +-``frames`` when the stream knows
    their poses (mapdb/depth_aggregate.py), else the own scan alone (noted once)."""

    def __init__(self, camera: Any, frames: int):
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 0 <= frames <= 50:
            raise UserError(f"map build: depth frames {frames!r} must be an integer 0..50 "
                            "(0 = each keyframe's own scan only)")
        self.camera, self.frames = camera, int(frames)
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._single: list[str] = []
        self._skipped = 0

    def points(self, stream: FrameStream, index: int, pose: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """float32 [F, 3] map-frame points of ``keypoints`` float [F, 2] (NaN: no depth)."""
        from . import depth_aggregate, points3d
        poses = stream.scan_poses
        if self.frames == 0 or poses is None or not 0 <= index < len(poses):
            if self.frames and stream.name not in self._single:
                self._single.append(stream.name)
                print(f"map build: {stream.name} has no per-frame poses for its scans; its keyframes "
                      "use their own scan only (depth frames ignored)", file=sys.stderr)
            return points3d.keypoint_points_map(keypoints, stream.scan(index), self.camera,
                                                stream.T_base_lidar, stream.T_base_camera, pose)
        scans = []
        for j in depth_aggregate.neighbour_frames(index, len(poses), self.frames):
            scan = self._scan(stream, j, required=j == index)
            if scan is not None and np.all(np.isfinite(poses[j])):
                scans.append((scan, poses[j]))
        cam_pts = depth_aggregate.scans_in_camera(scans, pose, stream.T_base_lidar, stream.T_base_camera)
        cam_pts = cam_pts[depth_aggregate.visible(cam_pts, self.camera)]
        return points3d.points_from_camera(keypoints, cam_pts, self.camera, stream.T_base_camera, pose)

    def _scan(self, stream: FrameStream, j: int, required: bool) -> np.ndarray | None:
        key = (stream.name, j)
        if key not in self._cache:
            try:
                self._cache[key] = np.asarray(stream.scan(j), np.float32)[:, :3]
            except (UserError, OSError):
                if required:
                    raise
                self._skipped += 1
                return None
            while len(self._cache) > 4 * self.frames + 2:   # keyframes advance: drop the oldest
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def report(self) -> None:
        """Say on stderr how many neighbouring scans could not be read (and were left out)."""
        if self._skipped:
            print(f"map build: {self._skipped} neighbouring LiDAR scan(s) could not be read and were "
                  "left out of the keyframes' depth", file=sys.stderr)


def _depth_first(feats: Any, points: np.ndarray, limit: int) -> tuple[Any, np.ndarray]:
    """The first ``limit`` features, those with a 3D point first (each group in the
    extractor's order), and their points float32 [<= limit, 3]."""
    has = np.isfinite(points).all(axis=1)
    order = np.r_[np.flatnonzero(has), np.flatnonzero(~has)][:limit]
    from ..features.types import Features
    return Features(feats.keypoints[order], feats.descriptors[order], feats.kind), points[order]


def feature_camera(streams: list[FrameStream]) -> Any:
    """The one camera of all streams; UserError naming the stream without intrinsics."""
    cams = {s.camera for s in streams}
    missing = [s.name for s in streams if s.camera is None]
    if missing:
        raise UserError(f"map build: no camera intrinsics for {missing[0]} (a bag needs a "
                        "sensor_msgs/CameraInfo topic, see --camera-info-topic; a dataset needs "
                        "fx fy cx cy width height in dataset.json) -- they are needed for geometric "
                        "verification; pass --no-features to build a map without it")
    if len(cams) > 1:
        raise UserError(f"map build: the inputs have different camera intrinsics {sorted(map(str, cams))}; "
                        "build one map per camera, or pass --no-features")
    return cams.pop()


def depth_mounting(streams: list[FrameStream]) -> np.ndarray | None:
    """The camera mounting (float64 [7]) when every stream has scans and the same
    extrinsics, else None (the map then stores no 3D points)."""
    if not streams or any(s.scan is None for s in streams):
        return None
    mounts = {tuple(np.round(np.r_[s.T_base_camera, s.T_base_lidar], 9)) for s in streams}
    return np.asarray(streams[0].T_base_camera, np.float64) if len(mounts) == 1 else None


def _keyframe_features(rgb: np.ndarray, camera: Any, limit: int, source: str, index: int,
                       extractor: Any) -> Any:
    if rgb.shape[:2] != (camera.height, camera.width):
        raise UserError(f"map build: {source} frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but the "
                        f"camera intrinsics are for {camera.width}x{camera.height}; fix the "
                        "camera_info topic or pass --no-features")
    return extractor(rgb, limit)


