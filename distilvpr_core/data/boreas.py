"""Boreas in the layout the DistilVPR tooling uses (camera + LiDAR, every 10th frame).

Layout (``data.root`` = the benchmark folder, ``data.image_root`` = the image
folder, which is ``<root>/boreas`` in the DistilVPR release)::

    <root>/boreas_training_queries_baseline.pickle  {id: TrainingTuple}            -> train
    <root>/boreas_test_queries_baseline.pickle      {id: TrainingTuple} (optional) -> val
    <root>/boreas_evaluation_database.pickle        [ {i: {query, northing, easting}} per sequence ]
    <root>/boreas_evaluation_query.pickle           same + {j: [db ids of sequence j within 25 m]}
    <root>/boreas_lidar2image_ndx.pickle            {lidar ts: [image ts, nearest first]}
    <root>/boreas/<seq>/lidar_1_4096_interval10/<ts>.npy        float [P, 3|4] x y z (intensity)
    <image_root>/<seq>/camera_lidar_interval10/<image ts>.png   RGB image

``<seq>`` is ``boreas-YYYY-MM-DD-HH-MM``.  Positions are (northing,
easting) in metres.  The reference quantises Boreas clouds with 1 m voxels
(Oxford: 0.01 on [-1, 1] submaps), i.e. the clouds are in metres, so the BEV
teacher's grid is set in metres (config/distil_boreas.yaml).  Clouds are read
without pickles (foundation.safe_files.read_npy): a ``.npy`` holding pickled
objects is refused instead of run (the reference loads them with pickles
allowed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..foundation.errors import UserError
from ..foundation.safe_files import read_npy
from .benchmark_layout import LayoutSpec

LIDAR_DIR = "lidar_1_4096_interval10"
CAMERA_DIR = "camera_lidar_interval10"


def read_cloud(path: Path) -> np.ndarray:
    """float32 [P, 4] x y z intensity from a Boreas ``.npy`` (intensity 1 when not stored).

    Read with foundation.safe_files.read_npy: a regular file (a FIFO would hang
    the loader), its header checked before any allocation (an empty file, a
    header claiming 3e11 rows, pickled objects), then every value finite and
    within :data:`MAX_ABS_M`.
    """
    fix = ("Boreas clouds must be plain numeric .npy arrays [P, 3|4]; regenerate the cloud with "
           "the Boreas benchmark scripts")
    pts = read_npy(path, check=_cloud_header, max_bytes=MAX_CLOUD_BYTES, fix=fix, follow_symlinks=True)
    check_cloud_values(pts, path, fix)
    pts = pts.astype(np.float32, copy=False)
    if pts.shape[1] == 3:  # no intensity stored: constant, so the BEV channel is uninformative
        pts = np.concatenate([pts, np.ones((len(pts), 1), np.float32)], axis=1)
    return pts


#: Largest |value| of a cloud, metres (and intensity): a LiDAR sees < 1 km; 1e308 is damage.
MAX_ABS_M = 1e5
#: Largest cloud file: 1 M points of float64 x y z intensity, far above a 4096-point scan.
MAX_CLOUD_BYTES = 1 << 25


def _cloud_header(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
    if len(shape) != 2 or shape[1] not in (3, 4) or shape[0] == 0 or dtype.kind not in "iuf":
        return f"expected a numeric array [P, 3|4] (x y z [intensity]), got {dtype.name} {list(shape)}"
    return None


def check_cloud_values(pts: np.ndarray, path: Path, fix: str) -> None:
    """UserError naming ``path`` unless every value is finite and within MAX_ABS_M."""
    with np.errstate(all="ignore"):
        bad = ~(np.isfinite(pts) & (np.abs(pts) <= MAX_ABS_M)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path}: point {i} is {pts[i].tolist()} (NaN, inf or beyond "
                        f"+-{MAX_ABS_M:g}); {fix}")


def image_dirs(image_root: Path, run: str) -> list[Path]:
    """<image_root>/<seq>/...; with image_root left at root, the release's <root>/boreas/<seq>/...
    (a module-level function, not a lambda: DataLoader workers receive the dataset pickled)."""
    return [image_root / run / CAMERA_DIR, image_root / "boreas" / run / CAMERA_DIR]


BOREAS = LayoutSpec(
    name="boreas",
    train_pickle="boreas_training_queries_baseline.pickle",
    val_pickle="boreas_test_queries_baseline.pickle",
    eval_database="boreas_evaluation_database.pickle",
    eval_query="boreas_evaluation_query.pickle",
    l2i_pickle="boreas_lidar2image_ndx.pickle",
    l2i_in_image_root=False,
    image_dirs=image_dirs,
    read_cloud=read_cloud,
)
