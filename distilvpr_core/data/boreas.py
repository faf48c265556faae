"""Boreas in the DistilVPR layout (camera + LiDAR sequences, sub-sampled every 10 frames).

Layout read here (one directory per sequence)::

    <root>/<seq>/pointcloud_locations_interval10.csv   header: timestamp,northing,easting
    <root>/<seq>/lidar_1_4096_interval10/<timestamp>.npy  float [P, 3|4] x y z (intensity)
    <root>/<seq>/camera_lidar_interval10/<timestamp>.png  RGB image taken with that scan

Positions are (northing, easting) in metres; only their differences are used
(true-neighbour radius), so the UTM zone does not matter.  Point clouds are
read as stored: the released 4096-point clouds are normalised to about
[-1, 1], so a BEV grid over them needs ``teacher.bev.range_m: 1.0`` and
matching z limits.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

LOCATIONS_CSV = "pointcloud_locations_interval10.csv"
LIDAR_DIR = "lidar_1_4096_interval10"
CAMERA_DIR = "camera_lidar_interval10"


class BoreasSequence:
    """One Boreas sequence: ``positions`` float64 [N, 2] (northing, easting, metres),
    ``timestamps`` list[str] (file stems), ``load_image(i)`` uint8 [H, W, 3] RGB,
    ``load_lidar(i)`` float32 [P, 4]."""

    has_lidar = True

    def __init__(self, root: str | Path, name: str, role: str) -> None:
        self.root = Path(root) / name
        self.name, self.role = name, role
        csv_path = self.root / LOCATIONS_CSV
        if not csv_path.is_file():
            raise UserError(f"{csv_path}: missing; a Boreas sequence directory needs {LOCATIONS_CSV}, "
                            f"{LIDAR_DIR}/ and {CAMERA_DIR}/ (check data.root and data.boreas_sequences)")
        stamps, pos = [], []
        with csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"timestamp", "northing", "easting"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise UserError(f"{csv_path}: expected columns {sorted(need)}, got {reader.fieldnames}")
            for row_no, row in enumerate(reader, start=2):
                try:
                    pos.append((float(row["northing"]), float(row["easting"])))
                except ValueError:
                    raise UserError(f"{csv_path}:{row_no}: northing/easting are not numbers") from None
                stamps.append(row["timestamp"].strip())
        if not stamps:
            raise UserError(f"{csv_path}: no rows")
        self.timestamps = stamps
        self.positions = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        for sub, ext in ((LIDAR_DIR, ".npy"), (CAMERA_DIR, ".png")):
            first = self.root / sub / f"{stamps[0]}{ext}"
            if not first.is_file():
                raise UserError(f"{first}: missing (listed in {csv_path})")

    def __len__(self) -> int:
        return len(self.timestamps)

    def load_image(self, i: int) -> np.ndarray:
        path = self.root / CAMERA_DIR / f"{self.timestamps[i]}.png"
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read image ({exc})") from None

    def load_lidar(self, i: int) -> np.ndarray:
        path = self.root / LIDAR_DIR / f"{self.timestamps[i]}.npy"
        try:
            pts = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read point cloud ({exc})") from None
        if pts.ndim != 2 or pts.shape[1] not in (3, 4):
            raise UserError(f"{path}: expected an array [P, 3|4], got shape {pts.shape}")
        pts = pts.astype(np.float32, copy=False)
        if pts.shape[1] == 3:  # no intensity stored: constant, so the BEV channel is uninformative
            pts = np.concatenate([pts, np.ones((len(pts), 1), np.float32)], axis=1)
        return pts


def open_boreas(root: str | Path, sequences: dict[str, str]) -> list[BoreasSequence]:
    """The sequences ``{name: role}`` under ``root`` (role: train | val | test)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root: {root}: directory not found")
    if not sequences:
        raise UserError("data.boreas_sequences: empty; list the sequences as {name: train|val|test}")
    return [BoreasSequence(root, name, role) for name, role in sequences.items()]
