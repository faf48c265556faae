"""Offline evaluation: embed a traversal or a bag with an Embedder, search a PriorMap.

No ROS.  Produces the same :class:`QueryOutcome` list as the ROS replay path,
so the two Recall@1 values can be compared directly.  Latency here is the
wall time of embedding + search per frame (no transport, no queueing).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import UserError
from .bagsource import BagSource
from .groundtruth import attach_positions
from .outcome import QueryOutcome


@dataclass
class Frame:
    """A query frame: stamp (ns), uint8 [H, W, 3] RGB image, ground truth float64 [3] or None."""

    stamp_ns: int
    image: np.ndarray
    position: np.ndarray | None


@dataclass
class SearchSettings:
    """The node's search settings, mirrored so both paths ask the same question.

    ``k`` candidates; ``min_score`` drops weaker rows (as the node does before
    publishing); the exclusions are PriorMap.search's own arguments.
    """

    k: int = 10
    min_score: float = -1.0
    exclude_within_s: float = 0.0
    exclude_last_n: int = 0


def frames_from_bag(bag: BagSource) -> Iterator[Frame]:
    """A checked bag's images one at a time (constant memory), without ground truth.

    Ground truth is attached afterwards with :func:`.groundtruth.attach_positions`.
    """
    for rec in bag.images():
        yield Frame(rec.stamp_ns, bag.decode_rgb(rec), None)


def evaluate_bag(prior_map: Any, embedder: Any, bag: BagSource, max_gap_s: float,
                 search: SearchSettings | None = None) -> tuple[list[QueryOutcome], str | None]:
    """Offline outcomes of a bag, and why there is no ground truth (None if there is)."""
    bag.check_images()
    problem = bag.pose_problem()
    outcomes = evaluate_frames(prior_map, embedder, frames_from_bag(bag), search)
    if problem is None:
        attach_positions(outcomes, *bag.pose_track(), max_gap_s)
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


def evaluate_frames(prior_map: Any, embedder: Any, frames: Iterable[Frame],
                    search: SearchSettings | None = None,
                    progress: bool = False) -> list[QueryOutcome]:
    """Embed each frame, search the map, keep the rows above ``min_score``.

    ``prior_map``: a :class:`distilvpr_core.mapdb.PriorMap`; ``embedder``: an
    object with ``embed(uint8 [H, W, 3]) -> float32 [1, D]`` (L2-normalised).
    """
    search = search or SearchSettings()
    if getattr(embedder, "dim", None) is not None and prior_map.dim != embedder.dim:
        raise UserError(f"map descriptor dim {prior_map.dim} != model dim {embedder.dim}; "
                        "evaluate the map with the model it was built with")
    positions = np.asarray(prior_map.poses, np.float64)[:, :3]
    id_to_row = {int(i): r for r, i in enumerate(np.asarray(prior_map.ids))}
    it: Iterable[Frame] = frames
    if progress:
        from tqdm import tqdm
        it = tqdm(frames, desc="offline eval", unit="frame")
    outcomes = []
    warmed = False
    for f in it:
        if not warmed:
            # The first inference allocates buffers; the node's warm-up frame
            # hides it too, so both latencies measure the steady state.
            embedder.embed(f.image)
            warmed = True
        t0 = time.perf_counter()
        desc = embedder.embed(f.image)
        res = prior_map.search(desc, search.k, query_stamp_ns=f.stamp_ns,
                               exclude_within_s=search.exclude_within_s,
                               exclude_last_n=search.exclude_last_n)
        elapsed = time.perf_counter() - t0
        ids = np.asarray(res.ids[0], np.int64)
        scores = np.asarray(res.scores[0], np.float32)
        keep = (ids >= 0) & (scores >= search.min_score)
        ids, scores = ids[keep], scores[keep]
        pos = positions[[id_to_row[int(i)] for i in ids]] if len(ids) else np.zeros((0, 3))
        outcomes.append(QueryOutcome(f.stamp_ns, f.position, True, ids, scores, pos, elapsed))
    return outcomes


def load_model_and_map(map_path: str | Path, model_path: str | Path,
                       backend: str = "onnxruntime") -> tuple[Any, Any]:
    """(Embedder, PriorMap), the map checked against the model's fingerprint and dim."""
    if not Path(map_path).is_dir():
        raise UserError(f"--map {map_path}: no such map directory; build one with "
                        "'distilvpr map build' or fix the path")
    if not Path(model_path).is_file():
        raise UserError(f"--model {model_path}: no such model file; export one with "
                        "'distilvpr export' or fix the path")
    from ..infer import load_embedder
    from ..mapdb import PriorMap
    embedder = load_embedder(model_path, backend=backend)
    prior_map = PriorMap.load(map_path, expect_fingerprint=embedder.fingerprint,
                              expect_dim=embedder.dim)
    return embedder, prior_map
