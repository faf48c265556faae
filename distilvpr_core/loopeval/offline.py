"""Offline evaluation: run the node's localization engine in this process, no ROS.

The frames go through the same :class:`~distilvpr_core.localize.engine.LocalizationEngine`
the node runs, with the same :class:`~distilvpr_core.localize.settings.LocalizerSettings`
(gating, top_k, exclusions, score threshold, consistency filter), after the
same warm-up frame the ROS replay sends.  So the list of :class:`QueryOutcome`
here differs from the ROS replay's only by transport: dropped frames and
latency.  Latency here is the engine's wall time per frame (decode, embed,
search, filters).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..data.bags import IMAGE_TYPES, BagReader
from ..data.images import BadImage
from ..foundation.errors import UserError
from .groundtruth import attach_positions, bag_track
from .outcome import QueryOutcome

#: The replay's warm-up frame is the first frame re-stamped this much earlier,
#: so no answer to it can be mistaken for a real frame's.
WARMUP_OFFSET_NS = 1000 * 1_000_000_000


def warmup_stamp(first_stamp_ns: int) -> int:
    """Header stamp of the warm-up copy of the first frame (>= 1 ns)."""
    return max(1, int(first_stamp_ns) - WARMUP_OFFSET_NS)


@dataclass
class Frame:
    """A query frame: stamp (ns), the image -- a sensor_msgs Image/CompressedImage
    message or decoded uint8 [H, W, 3] RGB -- and ground truth float64 [3] or None."""

    stamp_ns: int
    image: Any
    position: np.ndarray | None = None
    odom: np.ndarray | None = None  # float64 [7] odometry pose fed to the engine, or None
    orientation: np.ndarray | None = None  # float64 [4] ground-truth x y z w, or None


def _step(engine: Any, image: Any, stamp_ns: int) -> Any:
    if isinstance(image, np.ndarray):
        return engine.process_rgb(image, stamp_ns)
    return engine.process(image, stamp_ns)


def run_engine(engine: Any, frames: Iterable[Frame], warm_up: bool = True,
               progress: bool = False) -> list[QueryOutcome]:
    """One outcome per frame, in order, from ``engine`` (a LocalizationEngine).

    A frame the keyframe gate holds back or that does not decode is
    unanswered, as the node drops it.  With ``warm_up`` the first frame is
    first processed at :func:`warmup_stamp` (as the replay's warm-up): the
    first inference's allocations stay out of the latency, and the engine's
    filters see what the node's saw.
    """
    it: Iterable[Frame] = frames
    if progress:
        from tqdm import tqdm
        it = tqdm(frames, desc="offline eval", unit="frame")
    outcomes = []
    for f in it:
        if warm_up:
            warm_up = False
            try:
                _step(engine, f.image, warmup_stamp(f.stamp_ns))
            except BadImage:
                pass
        if f.odom is not None:
            engine.add_odometry(f.stamp_ns, f.odom)
        t0 = time.perf_counter()
        try:
            res = _step(engine, f.image, f.stamp_ns)
        except BadImage:
            res = None
        elapsed = time.perf_counter() - t0
        q = None if res is None else res.query
        if q is None:
            outcomes.append(QueryOutcome(f.stamp_ns, f.position, answered=False))
            continue
        outcomes.append(QueryOutcome(f.stamp_ns, f.position, True, q.ids, q.scores, q.poses[:, :3],
                                     latency_s=elapsed, accepted=bool(q.accepted),
                                     stage=stage_record(q, res.odom), orientation=f.orientation,
                                     published_pose=np.asarray(q.pose, np.float64) if q.localized else None))
    return outcomes


def stage_record(q: Any, odom: np.ndarray | None) -> dict[str, Any]:
    """What each stage saw for one QueryResult (QueryOutcome.stage)."""
    c = q.checks
    ok = c is not None and c.best >= 0 and c.result is not None
    return {"match_rank": int(q.match_rank), "raw_score": float(q.raw_score),
            "inliers": int(c.inliers[c.best]) if ok else -1, "verified": bool(q.verified),
            "rotation": c.result.rotation if ok else None,
            "match_orientation": np.asarray(q.poses[0, 3:7]) if len(q.ids) else None,
            "embed_s": float(q.embed_s), "verify_s": float(q.verify_s),
            "verify_ran": c is not None, "odom": None if odom is None else np.asarray(odom[:3]),
            # Metric maps: the PnP pose of the verified match (even when a later stage
            # rejected it), whether it was published, the pose-consistency verdict.
            "pose": None if q.pose is None else np.asarray(q.pose, np.float64),
            "localized": bool(q.localized), "pose_consistent": q.pose_consistent,
            "geometry_ok": bool(q.geometry_ok)}


def frames_from_bag(reader: BagReader, image_topic: str,
                    odom: tuple[np.ndarray, np.ndarray] | None = None) -> Iterator[Frame]:
    """A bag's image messages one at a time (constant memory), without ground truth;
    ``odom``: (stamps int64 [M], poses float64 [M, 7]) fed to the engine per image
    (the nearest pose; the engine's odom_timeout_s decides whether it is used)."""
    for rec in reader.image_records(image_topic):
        pose = None
        if odom is not None and len(odom[0]):
            j = int(np.argmin(np.abs(odom[0] - rec.stamp_ns)))
            pose = odom[1][j]
        yield Frame(rec.stamp_ns, reader.image_message(rec), odom=pose)


def evaluate_bag(engine: Any, reader: BagReader, image_topic: str, pose_topic: str | None,
                 max_gap_s: float, progress: bool = False,
                 odom_topic: str = "") -> tuple[list[QueryOutcome], str | None]:
    """Offline outcomes of a bag, and why there is no ground truth (None if there is).

    ``odom_topic``: Odometry topic fed to the engine (sequence score, distance
    gating); '' or absent from the bag: none.
    """
    reader.check(image_topic, IMAGE_TYPES, "; choose one with --image-topic", "image")
    track, problem = bag_track(reader, pose_topic)
    odom = reader.poses(odom_topic) if odom_topic and odom_topic in reader.topics else None
    outcomes = run_engine(engine, frames_from_bag(reader, image_topic, odom), progress=progress)
    if track is not None:
        attach_positions(outcomes, *track, max_gap_s)
        attach_orientations(outcomes, reader.poses(pose_topic)[0], reader.poses(pose_topic)[1], max_gap_s)
    return outcomes, problem


def attach_orientations(outcomes: list[QueryOutcome], stamps_ns: np.ndarray, poses: np.ndarray,
                        max_gap_s: float) -> None:
    """Set each outcome's ground-truth orientation (x y z w) from the nearest pose within the gap."""
    if not len(stamps_ns):
        return
    for o in outcomes:
        j = int(np.argmin(np.abs(stamps_ns - o.stamp_ns)))
        if abs(int(stamps_ns[j]) - o.stamp_ns) <= max_gap_s * 1e9:
            o.orientation = np.asarray(poses[j, 3:7], np.float64)


def frames_from_traversal(root: str | Path, traversal: str) -> Iterator[Frame]:
    """Frames of one traversal of a native synthetic dataset (poses are exact ground truth)."""
    from ..data import native
    ds = native.open_dataset(root)
    if traversal not in ds.traversals:
        raise UserError(f"{root}: traversal {traversal!r} not found; the dataset has "
                        f"{', '.join(ds.traversals)}")
    trav = ds.traversal(traversal)
    odom = trav.odom if (trav.root / "odom.npy").is_file() else None
    for i in range(len(trav.stamps_ns)):
        yield Frame(int(trav.stamps_ns[i]), trav.load_image(i), trav.poses[i, :3].copy(),
                    None if odom is None else odom[i], trav.poses[i, 3:7].copy())
