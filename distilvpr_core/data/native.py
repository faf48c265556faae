"""The native dataset format written by ``distilvpr synth`` (see docs/synth.md).

Layout of a dataset root::

    dataset.json                  format, version, seed, camera, lidar, traversals (name, role, conditions)
    traversals/<name>/traversal.json
    traversals/<name>/poses.npy       float64 [N, 7] x y z qx qy qz qw, base_link in map (ENU, m)
    traversals/<name>/stamps_ns.npy   int64 [N] nanoseconds since the Unix epoch, strictly increasing
    traversals/<name>/odom.npy        float64 [N, 7] drifting odometry, base_link in odom
    traversals/<name>/images/NNNNNN.png   uint8 RGB, camera.height x camera.width
    traversals/<name>/lidar/NNNNNN.bin    float32 [P, 4] x y z intensity, lidar frame, little-endian

The whole directory is built in a temporary sibling and renamed into place by
the generator, so a reader never sees a half-written dataset.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError
from ..foundation.safe_files import read_bytes, read_npy

FORMAT = "distilvpr-native"
VERSION = 1
ROLES = ("train", "val", "test")


#: Largest LiDAR scan file read (float32 x y z i): 4 M points.
MAX_SCAN_BYTES = 64 << 20


def frame_name(i: int) -> str:
    """File stem of frame ``i`` (zero-padded to 6 digits)."""
    return f"{i:06d}"


# ----------------------------------------------------------------- writer
def write_frame(trav_dir: Path, i: int, png: bytes, points: np.ndarray) -> None:
    """Write frame ``i``: ``png`` encoded RGB image bytes, ``points`` float32 [P, 4]."""
    (trav_dir / "images").mkdir(parents=True, exist_ok=True)
    (trav_dir / "lidar").mkdir(parents=True, exist_ok=True)
    (trav_dir / "images" / f"{frame_name(i)}.png").write_bytes(png)
    pts = np.ascontiguousarray(points, dtype="<f4")
    assert pts.ndim == 2 and pts.shape[1] == 4, pts.shape
    (trav_dir / "lidar" / f"{frame_name(i)}.bin").write_bytes(pts.tobytes())


def write_traversal(trav_dir: Path, name: str, role: str, conditions: dict[str, Any], poses: np.ndarray,
                    stamps_ns: np.ndarray, odom: np.ndarray, extra: dict[str, Any] | None = None) -> None:
    """Write a traversal's poses/stamps/odometry and ``traversal.json`` (frames written before)."""
    poses = np.asarray(poses, dtype=np.float64)
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    if poses.ndim != 2 or poses.shape[1] != 7 or len(stamps_ns) != len(poses) or odom.shape != poses.shape:
        raise ValueError(f"inconsistent traversal arrays {poses.shape} {stamps_ns.shape} {odom.shape}")
    trav_dir.mkdir(parents=True, exist_ok=True)
    np.save(trav_dir / "poses.npy", poses)
    np.save(trav_dir / "stamps_ns.npy", stamps_ns)
    np.save(trav_dir / "odom.npy", np.asarray(odom, dtype=np.float64))
    meta = {"name": name, "role": role, "num_frames": int(len(poses)), "conditions": conditions}
    meta.update(extra or {})
    (trav_dir / "traversal.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def write_dataset_json(root: Path, meta: dict[str, Any]) -> None:
    """Write ``dataset.json``; ``meta`` must hold camera, lidar and traversals."""
    doc = {"format": FORMAT, "version": VERSION, **meta}
    (root / "dataset.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------- reader
@dataclass
class Traversal:
    """One drive of a native dataset; arrays are loaded on first access."""
    root: Path
    name: str
    role: str
    conditions: dict[str, Any]
    num_frames: int
    meta: dict[str, Any] = field(default_factory=dict)
    _poses: np.ndarray | None = None
    _stamps: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_frames

    @property
    def poses(self) -> np.ndarray:
        """float64 [N, 7] x y z qx qy qz qw, base_link in the map frame (ENU, metres)."""
        if self._poses is None:
            self._poses = _load_array(self.root / "poses.npy", np.float64, (self.num_frames, 7))
        return self._poses

    @property
    def stamps_ns(self) -> np.ndarray:
        """int64 [N] nanoseconds since the Unix epoch."""
        if self._stamps is None:
            self._stamps = _load_array(self.root / "stamps_ns.npy", np.int64, (self.num_frames,))
        return self._stamps

    @property
    def odom(self) -> np.ndarray:
        """float64 [N, 7] drifting odometry poses, base_link in the odom frame."""
        return _load_array(self.root / "odom.npy", np.float64, (self.num_frames, 7))

    def image_path(self, i: int) -> Path:
        """Path of frame ``i``'s PNG."""
        self._check_index(i)
        return self.root / "images" / f"{frame_name(i)}.png"

    def lidar_path(self, i: int) -> Path:
        """Path of frame ``i``'s LiDAR ``.bin`` (float32 [P, 4] little-endian)."""
        self._check_index(i)
        return self.root / "lidar" / f"{frame_name(i)}.bin"

    def load_image(self, i: int) -> np.ndarray:
        """uint8 [H, W, 3] RGB image of frame ``i``."""
        from .images import read_rgb_file
        return read_rgb_file(self.image_path(i), "(regenerate the dataset)")

    def load_lidar(self, i: int) -> np.ndarray:
        """float32 [P, 4] x y z (m, lidar frame) and intensity in [0, 1] of frame ``i``."""
        path = self.lidar_path(i)
        raw = read_bytes(path, MAX_SCAN_BYTES, f"{path}: LiDAR scan", follow_symlinks=True)
        if len(raw) % 16:
            raise UserError(f"{path}: size {len(raw)} bytes is not a multiple of 16 (float32 x y z i)")
        pts = np.frombuffer(raw, dtype="<f4").reshape(-1, 4).astype(np.float32)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(pts).all(axis=1)
        if bad.any():
            raise UserError(f"{path}: point {int(np.argmax(bad))} holds NaN or inf; regenerate the dataset")
        return pts

    def _check_index(self, i: int) -> None:
        if not 0 <= int(i) < self.num_frames:
            raise IndexError(f"frame {i} out of range for traversal {self.name!r} with {self.num_frames} frames")


class NativeDataset:
    """A validated native dataset; see :func:`open_dataset`."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.camera: dict[str, Any] = meta["camera"]
        self.lidar: dict[str, Any] = meta["lidar"]
        self.seed = meta.get("seed")
        self._trav = {t["name"]: t for t in meta["traversals"]}
        self.traversals: list[str] = [t["name"] for t in meta["traversals"]]

    def role(self, name: str) -> str:
        """"train" | "val" | "test" of traversal ``name``."""
        return self._get(name)["role"]

    def traversals_with_role(self, role: str) -> list[str]:
        """Names of the traversals with ``role``, in dataset order."""
        return [n for n in self.traversals if self._trav[n]["role"] == role]

    def traversal(self, name: str) -> Traversal:
        """The traversal ``name`` (arrays load lazily)."""
        t = self._get(name)
        root = self.root / "traversals" / name
        meta_path = root / "traversal.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{meta_path}: cannot read traversal metadata ({exc})") from None
        # traversal.json holds the full condition record (cars, buildings, reversal);
        # dataset.json only the headline time_of_day / weather / season.
        conditions = {**t["conditions"], **meta.get("conditions", {})}
        return Traversal(root=root, name=name, role=t["role"], conditions=conditions,
                         num_frames=int(t["num_frames"]), meta=meta)

    def _get(self, name: str) -> dict[str, Any]:
        if name not in self._trav:
            raise UserError(f"{self.root}: no traversal {name!r}; available: {self.traversals}")
        return self._trav[name]


def open_dataset(root: str | Path) -> NativeDataset:
    """Open and validate a native dataset directory; raises UserError saying what is wrong."""
    root = Path(root)
    path = root / "dataset.json"
    if not path.is_file():
        raise UserError(f"{root}: not a distilvpr dataset (no dataset.json); "
                        "create one with 'distilvpr synth --out DIR'")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise UserError(f"{path}: version {meta.get('version')!r} is not supported (this reader reads {VERSION}); "
                        "regenerate the dataset with this version of distilvpr")
    for key in ("camera", "lidar", "traversals"):
        if key not in meta:
            raise UserError(f"{path}: missing key {key!r}")
    for i, t in enumerate(meta["traversals"]):
        for key in ("name", "role", "num_frames", "conditions"):
            if key not in t:
                raise UserError(f"{path}: traversals[{i}] lacks {key!r}")
        if t["role"] not in ROLES:
            raise UserError(f"{path}: traversals[{i}].role is {t['role']!r}, expected one of {list(ROLES)}")
        if not (root / "traversals" / t["name"] / "poses.npy").is_file():
            raise UserError(f"{root / 'traversals' / t['name']}: traversal directory is missing or incomplete")
    return NativeDataset(root, meta)


def _load_array(path: Path, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    # The bounded reader: header checked before allocating, no FIFO, exact size.
    return read_npy(path, dtype, shape, fix="regenerate the dataset", follow_symlinks=True)
