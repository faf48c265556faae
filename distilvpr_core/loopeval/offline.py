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
from ..errors import UserError
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
                                     latency_s=elapsed, accepted=bool(q.accepted)))
    return outcomes


def frames_from_bag(reader: BagReader, image_topic: str) -> Iterator[Frame]:
    """A bag's image messages one at a time (constant memory), without ground truth."""
    for rec in reader.image_records(image_topic):
        yield Frame(rec.stamp_ns, reader.image_message(rec))


def evaluate_bag(engine: Any, reader: BagReader, image_topic: str, pose_topic: str | None,
                 max_gap_s: float, progress: bool = False) -> tuple[list[QueryOutcome], str | None]:
    """Offline outcomes of a bag, and why there is no ground truth (None if there is)."""
    reader.check(image_topic, IMAGE_TYPES, "; choose one with --image-topic", "image")
    track, problem = bag_track(reader, pose_topic)
    outcomes = run_engine(engine, frames_from_bag(reader, image_topic), progress=progress)
    if track is not None:
        attach_positions(outcomes, *track, max_gap_s)
    return outcomes, problem


def frames_from_traversal(root: str | Path, traversal: str) -> Iterator[Frame]:
    """Frames of one traversal of a native synthetic dataset (poses are exact ground truth)."""
    from ..data import native
    ds = native.open_dataset(root)
    if traversal not in ds.traversals:
        raise UserError(f"{root}: traversal {traversal!r} not found; the dataset has "
                        f"{', '.join(ds.traversals)}")
    trav = ds.traversal(traversal)
    for i in range(len(trav.stamps_ns)):
        yield Frame(int(trav.stamps_ns[i]), trav.load_image(i), trav.poses[i, :3].copy())
