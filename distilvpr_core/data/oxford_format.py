"""The Oxford RobotCar / PointNetVLAD benchmark format (as used by MinkLoc++ and DistilVPR).

Layout under an export root (the ``dataset_folder`` of those code bases)::

    oxford/<run>/pointcloud_20m_10overlap/<ts_us>.bin   float64 [4096 * 3] x y z in [-1, 1]
    oxford/<run>/pointcloud_locations_20m_10overlap.csv timestamp,northing,easting
    images4lidar/<run>/<ts_us>.png                      RGB image taken with that scan
    training_queries_baseline.pickle    {i: TrainingTuple}  train runs; positives <= 10 m, non-negatives <= 50 m
    test_queries_baseline.pickle        {i: TrainingTuple}  val runs, same radii
    oxford_evaluation_database.pickle   [ {i: {query, northing, easting, timestamp}} per test run ]
    oxford_evaluation_query.pickle      [ {i: {query, northing, easting, timestamp, <run j>: [db ids <= 25 m]}} ]
    lidar2image_ndx.pickle              {lidar ts_us: [image ts_us, nearest first]}
    runs.json                           run folder -> traversal name and role

``<run>`` is a 19-character date ``YYYY-MM-DD-HH-MM-SS`` (MinkLoc++ asserts
that length); timestamps are microseconds; northing = map y, easting = map x.

Reading uses the restricted unpickler of :mod:`.benchmark_pickles`, so a
malicious pickle cannot run code.  The public benchmark keeps images in a
separate folder (``data.image_root``: ``<image_root>/<run>/<ts>.png`` and
``<image_root>/lidar2image_ndx.pickle``); this export keeps them under
``images4lidar/`` next to the pickles, which the reader also accepts.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError
# The readers live in benchmark_pickles (shared with Boreas); re-exported here.
from .benchmark_layout import LayoutSpec
from .benchmark_pickles import load_pickle, read_evaluation_sets, read_training_tuples  # noqa: F401
from .training_tuple import TrainingTuple

SUBMAP_DIR = "pointcloud_20m_10overlap"
LOCATIONS_CSV = "pointcloud_locations_20m_10overlap.csv"
POINTS = 4096
POSITIVE_M, NON_NEGATIVE_M, EVAL_TRUE_M = 10.0, 50.0, 25.0


# ------------------------------------------------------------------ writing
def run_folder_name(stamp_ns: int) -> str:
    """The 19-character run folder of a traversal starting at ``stamp_ns`` (UTC)."""
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(stamp_ns // 1_000_000_000))


def submap_relpath(run: str, ts_us: int) -> str:
    """Path of a submap relative to the export root."""
    return f"oxford/{run}/{SUBMAP_DIR}/{ts_us}.bin"


def make_submap(points: np.ndarray, rng: np.random.Generator, n: int = POINTS, sensor_height: float = 1.9,
                crop_m: float = 30.0) -> np.ndarray:
    """float64 [n, 3] submap from a float32 [P, 4] scan, PointNetVLAD style.

    Ground removed (< 0.25 m above the road), cropped to +-``crop_m`` around
    the sensor, resampled to exactly ``n`` points, centred on the mean and
    scaled so the largest coordinate magnitude is 1.  Axes: lidar frame.
    """
    xyz = points[:, :3].astype(np.float64)
    keep = (xyz[:, 2] + sensor_height > 0.25) & (np.abs(xyz[:, 0]) < crop_m) & (np.abs(xyz[:, 1]) < crop_m)
    xyz = xyz[keep]
    if len(xyz) == 0:
        xyz = np.zeros((1, 3))
    idx = rng.choice(len(xyz), size=n, replace=len(xyz) < n)
    sub = xyz[np.sort(idx)]
    sub -= sub.mean(axis=0)
    scale = np.abs(sub).max()
    return sub / scale if scale > 0 else sub


def write_submap(root: Path, relpath: str, submap: np.ndarray) -> None:
    """Write a float64 [4096, 3] submap as raw little-endian float64 (``np.fromfile`` readable)."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.ascontiguousarray(submap, dtype="<f8").tobytes())


def _within(a: np.ndarray, b: np.ndarray, r: float) -> list[np.ndarray]:
    """For each row of ``a`` [N, 2], sorted indices of rows of ``b`` [M, 2] within ``r`` metres."""
    out = []
    for start in range(0, len(a), 1024):
        d = np.linalg.norm(a[start:start + 1024, None, :] - b[None, :, :], axis=2)
        out.extend(np.nonzero(row <= r)[0].astype(np.int64) for row in d)
    return out


def training_tuples(relpaths: list[str], timestamps_us: np.ndarray, positions: np.ndarray,
                    pos_r: float = POSITIVE_M, nonneg_r: float = NON_NEGATIVE_M) -> dict[int, TrainingTuple]:
    """``{id: TrainingTuple}`` over all given scans; ``positions`` float64 [N, 2] northing, easting."""
    pos = _within(positions, positions, pos_r)
    non = _within(positions, positions, nonneg_r)
    return {i: TrainingTuple(id=i, timestamp=int(timestamps_us[i]), rel_scan_filepath=relpaths[i],
                             positives=pos[i][pos[i] != i], non_negatives=non[i],
                             position=np.asarray(positions[i], dtype=np.float64))
            for i in range(len(relpaths))}


def write_export_index(root: Path, runs: list[dict[str, Any]]) -> None:
    """Write CSVs and pickles for ``runs``: dicts with ``run`` (folder), ``name``, ``role``,
    ``timestamps_us`` int64 [N], ``positions`` float64 [N, 2] (northing, easting) and
    ``image_timestamps_us`` int64 [N] (the image taken with each scan)."""
    for r in runs:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["timestamp", "northing", "easting"])
        for ts, (north, east) in zip(r["timestamps_us"], r["positions"]):
            w.writerow([int(ts), f"{north:.6f}", f"{east:.6f}"])
        path = root / "oxford" / r["run"] / LOCATIONS_CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(buf.getvalue())
    for role, fname in (("train", "training_queries_baseline.pickle"), ("val", "test_queries_baseline.pickle")):
        sel = [r for r in runs if r["role"] == role]
        if not sel:
            continue
        rel = [submap_relpath(r["run"], int(t)) for r in sel for t in r["timestamps_us"]]
        ts = np.concatenate([r["timestamps_us"] for r in sel])
        pos = np.concatenate([r["positions"] for r in sel])
        _dump(root / fname, training_tuples(rel, ts, pos))
    tests = [r for r in runs if r["role"] == "test"]
    database, queries = [], []
    for r in tests:
        entries = {i: {"query": submap_relpath(r["run"], int(t)), "northing": float(p[0]), "easting": float(p[1]),
                       "timestamp": int(t)} for i, (t, p) in enumerate(zip(r["timestamps_us"], r["positions"]))}
        database.append(entries)
        queries.append({i: dict(e) for i, e in entries.items()})
    for j, qr in enumerate(tests):
        for i, dr in enumerate(tests):
            if i == j:
                continue
            near = _within(qr["positions"], dr["positions"], EVAL_TRUE_M)
            for k in range(len(near)):
                queries[j][k][i] = near[k].tolist()
    if tests:
        _dump(root / "oxford_evaluation_database.pickle", database)
        _dump(root / "oxford_evaluation_query.pickle", queries)
    l2i = {int(t): [int(it)] for r in runs for t, it in zip(r["timestamps_us"], r["image_timestamps_us"])}
    _dump(root / "lidar2image_ndx.pickle", l2i)
    (root / "runs.json").write_text(json.dumps(
        [{"run": r["run"], "name": r["name"], "role": r["role"], "frames": int(len(r["timestamps_us"]))} for r in runs],
        indent=2) + "\n")


def _dump(path: Path, obj: Any) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


# ------------------------------------------------------------------ reading
def read_submap(path: str | Path, n: int = POINTS) -> np.ndarray:
    """float64 [n, 3] submap from a ``.bin`` file."""
    from ..foundation.safe_files import read_bytes
    from .boreas import check_cloud_values
    path = Path(path)
    fix = "regenerate the submap or check data.format"
    # A regular file only (a FIFO would hang np.fromfile), and never more than one submap.
    raw = read_bytes(path, n * 3 * 8, str(path), follow_symlinks=True)
    if len(raw) != n * 3 * 8:
        raise UserError(f"{path}: {len(raw) // 8} float64 values, expected {n * 3} ({n} points x 3, "
                        f"the PointNetVLAD .bin submap); {fix}")
    pc = np.frombuffer(raw, dtype="<f8").reshape(n, 3)
    check_cloud_values(pc, path, fix)
    return pc


def read_cloud(path: Path) -> np.ndarray:
    """float32 [4096, 4] from a ``.bin`` submap (no intensity stored: set to 1)."""
    pts = read_submap(path).astype(np.float32)
    return np.concatenate([pts, np.ones((len(pts), 1), np.float32)], axis=1)


def _image_dirs(image_root: Path, run: str) -> list[Path]:
    # Public layout first; then this module's export, which keeps images in images4lidar/.
    return [image_root / run, image_root / "images4lidar" / run]


def oxford_layout() -> LayoutSpec:
    """The :class:`~.benchmark_layout.LayoutSpec` of the Oxford RobotCar benchmark."""
    return LayoutSpec(name="oxford", train_pickle="training_queries_baseline.pickle",
                      val_pickle="test_queries_baseline.pickle",
                      eval_database="oxford_evaluation_database.pickle",
                      eval_query="oxford_evaluation_query.pickle", l2i_pickle="lidar2image_ndx.pickle",
                      l2i_in_image_root=True, image_dirs=_image_dirs, read_cloud=read_cloud)
