"""Tiny copies of the two public benchmark layouts, written the way the
community's generator scripts write them (field names, structures, module
name of TrainingTuple, numpy scalars for positions, no timestamps in the
evaluation pickles, per-run neighbour lists in the query pickle).

Positions are UTM-like (northing ~5.7e6 m): float32 would be off by metres.
Places lie every 10 m along a line; the test region is the last places.
Every run is a training run outside the test region and its test-region
frames form the validation set (as in ``generate_training_tuples_baseline``);
the last runs are also evaluation runs (database = all their frames, queries
= their test-region frames, as in ``generate_test_sets``).
"""
from __future__ import annotations

import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
from PIL import Image

NORTH0, EAST0 = 5_735_000.0, 620_000.0
PLACES, TEST_FROM = 16, 10
OXFORD_RUNS = ("2014-05-19-13-20-57", "2014-06-24-14-47-45", "2014-11-18-13-20-12", "2015-02-10-11-58-05")
BOREAS_SEQS = ("boreas-2020-11-26-13-58", "boreas-2020-12-01-13-26", "boreas-2021-01-26-11-22",
               "boreas-2021-04-08-12-44")
EVAL_RUNS = (1, 2, 3)


class _UpstreamTuple:
    """Stands in for the upstream ``datasets.oxford.TrainingTuple`` when pickling."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _dump_with_upstream_class(path: Path, obj) -> None:
    mod = types.ModuleType("datasets.oxford")
    _UpstreamTuple.__module__, _UpstreamTuple.__qualname__ = "datasets.oxford", "TrainingTuple"
    mod.TrainingTuple = _UpstreamTuple
    saved = {k: sys.modules.get(k) for k in ("datasets", "datasets.oxford")}
    sys.modules["datasets"], sys.modules["datasets.oxford"] = types.ModuleType("datasets"), mod
    try:
        path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def positions(run: int) -> np.ndarray:
    """float64 [PLACES, 2] (northing, easting) of one run; runs differ by < 1.5 m."""
    rng = np.random.default_rng(500 + run)
    north = NORTH0 + np.arange(PLACES) * 10.0 + rng.uniform(-1, 1, PLACES)
    east = EAST0 + rng.uniform(-1, 1, PLACES)
    return np.c_[north, east]


def _image(place: int, run: int, size=(40, 30)) -> bytes:
    w, h = size
    prng, rng = np.random.default_rng(place), np.random.default_rng(1000 * run + place)
    img = np.full((h, w, 3), prng.integers(40, 200, 3), np.uint8)
    for _ in range(3):
        x0, y0 = prng.integers(0, w - 8), prng.integers(0, h - 8)
        img[y0:y0 + 8, x0:x0 + 10] = prng.integers(0, 255, 3)
    img = np.clip(img * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _tuples(frames: list[tuple[str, int, np.ndarray]]) -> dict[int, _UpstreamTuple]:
    pos = np.array([p for _, _, p in frames])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    return {i: _UpstreamTuple(id=i, timestamp=ts, rel_scan_filepath=rel,
                              positives=np.setdiff1d(np.flatnonzero(d[i] <= 10), [i]),
                              non_negatives=np.flatnonzero(d[i] <= 50), position=p)
            for i, (rel, ts, p) in enumerate(frames)}


def _eval_sets(runs: list[list[tuple[str, np.ndarray]]]) -> tuple[list[dict], list[dict]]:
    """(database sets, query sets) like generate_test_sets: numpy-float positions, no timestamps,
    neighbour lists (sklearn query_radius semantics: distance <= 25 m) keyed by run index."""
    database = [{i: {"query": rel, "northing": np.float64(p[0]), "easting": np.float64(p[1])}
                 for i, (rel, p) in enumerate(frames)} for frames in runs]
    queries = [{k: {"query": rel, "northing": np.float64(p[0]), "easting": np.float64(p[1])}
                for k, (rel, p) in enumerate([f for i, f in enumerate(frames) if i >= TEST_FROM])}
               for frames in runs]
    for n, qset in enumerate(queries):
        for m, frames in enumerate(runs):
            if m == n:
                continue
            db = np.array([p for _, p in frames])
            for e in qset.values():
                d = np.linalg.norm(db - np.array([e["northing"], e["easting"]]), axis=1)
                e[m] = np.flatnonzero(d <= 25.0).tolist()
    return database, queries


def _write_layout(root: Path, image_root: Path, runs: tuple[str, ...], scan_of, image_dir_of, cloud,
                  names: dict[str, str]) -> None:
    l2i, train, val, evals = {}, [], [], []
    for r, run in enumerate(runs):
        pos = positions(r)
        frames = []
        for k in range(PLACES):
            ts = 1_400_000_000_000_000 + r * 10**9 + k * 10**6
            rel = scan_of(run, ts)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cloud(root / rel, np.random.default_rng(k).uniform(-1, 1, (4096, 3)))
            img_ts = ts + 12_345
            l2i[ts] = [img_ts, img_ts + 50_000]
            img_dir = image_dir_of(image_root, run)
            img_dir.mkdir(parents=True, exist_ok=True)
            (img_dir / f"{img_ts}.png").write_bytes(_image(k, r))
            (train if k < TEST_FROM else val).append((rel, ts, pos[k]))
            frames.append((rel, pos[k]))
        if r in EVAL_RUNS:
            evals.append(frames)
    _dump_with_upstream_class(root / names["train"], _tuples(train))
    _dump_with_upstream_class(root / names["val"], _tuples(val))
    database, queries = _eval_sets(evals)
    (root / names["database"]).write_bytes(pickle.dumps(database, protocol=pickle.HIGHEST_PROTOCOL))
    (root / names["query"]).write_bytes(pickle.dumps(queries, protocol=pickle.HIGHEST_PROTOCOL))
    l2i_dir = image_root if names["l2i_in_images"] else root
    (l2i_dir / names["l2i"]).write_bytes(pickle.dumps(l2i, protocol=pickle.HIGHEST_PROTOCOL))


def make_oxford(base: Path) -> tuple[Path, Path]:
    """(data.root, data.image_root): ``benchmark_datasets`` and a separate image folder."""
    root, image_root = base / "benchmark_datasets", base / "RobotCar_images"
    image_root.mkdir(parents=True, exist_ok=True)
    _write_layout(root, image_root, OXFORD_RUNS,
                  lambda run, ts: f"oxford/{run}/pointcloud_20m_10overlap/{ts}.bin",
                  lambda ir, run: ir / run,
                  lambda path, pts: path.write_bytes(pts.astype("<f8").tobytes()),
                  {"train": "training_queries_baseline.pickle", "val": "test_queries_baseline.pickle",
                   "database": "oxford_evaluation_database.pickle", "query": "oxford_evaluation_query.pickle",
                   "l2i": "lidar2image_ndx.pickle", "l2i_in_images": True})
    return root, image_root


def make_boreas(base: Path) -> tuple[Path, Path]:
    """(data.root, data.image_root) of the DistilVPR Boreas release (images under root/boreas)."""
    root = base / "BenchmarkBoreasv3"
    image_root = root / "boreas"
    _write_layout(root, image_root, BOREAS_SEQS,
                  lambda run, ts: f"boreas/{run}/lidar_1_4096_interval10/{ts}.npy",
                  lambda ir, run: ir / run / "camera_lidar_interval10",
                  lambda path, pts: np.save(path, (pts * 40).astype(np.float32)),  # metres
                  {"train": "boreas_training_queries_baseline.pickle",
                   "val": "boreas_test_queries_baseline.pickle",
                   "database": "boreas_evaluation_database.pickle", "query": "boreas_evaluation_query.pickle",
                   "l2i": "boreas_lidar2image_ndx.pickle", "l2i_in_images": False})
    return root, image_root
