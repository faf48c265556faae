"""Per-keyframe local features of a prior map, for geometric verification and metric pose.

Stored beside the map's other arrays, listed in ``schema.json`` ``files`` (so
the checksums cover them) and described under the top-level key
``"features"`` (see docs/map.md)::

    "features": {"kind": "orb", "max_per_keyframe": 300,
                 "camera": {"fx": 80.0, "fy": 80.0, "cx": 79.5, "cy": 59.5,
                            "width": 160, "height": 120},
                 "T_base_camera": [1.2, 0.0, 1.6, qx, qy, qz, qw],      (with points3d only)
                 "files": {"keypoints": "features_keypoints.npy",
                           "descriptors": "features_descriptors.npy",
                           "counts": "features_counts.npy",
                           "points3d": "features_points3d.npy",           (optional)
                           "model": "features_model.onnx"}}               (kinds "learned", "patch")

    features_keypoints.npy    float32 [N, F, 2]  x, y pixels of the keyframe image (padded rows 0)
    features_descriptors.npy  uint8   [N, F, D]  descriptors of ``kind`` (D = 32 orb, 128 sift,
                                                 128 learned, 128 patch)
    features_counts.npy       int32   [N]        valid rows of keyframe i (0..F)
    features_points3d.npy     float32 [N, F, 3]  each feature's 3D point in the MAP frame (m),
                                                 NaN where the depth source had none
    features_model.onnx                          the network of kind "learned" or "patch" (its ONNX
                                                 export), so the localizer extracts what the map stores

F = ``max_per_keyframe``; keyframe i's features are the first ``counts[i]``
rows.  ``kind`` names the extractor (features/registry.py); a localizer
only matches queries of the same kind.  With ``points3d`` a verified match
gives a metric pose by PnP (features/pnp.py); ``T_base_camera`` (the
camera's pose on base_link, x y z qx qy qz qw) turns the camera pose into
the robot's.  A keyframe added online has count 0 until the engine stores
its features (its points are NaN: no depth on the robot).  Maps written
before ``kind`` could be "sift" or "learned" or before ``points3d`` load unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..foundation.errors import UserError
from ..features import registry
from ..features.types import Features, Intrinsics
from .invariants import check_number
from .rows import GrowableArray
from ..foundation.atomic import write_bytes_atomic
from .schema import FileEntry, file_entry, load_npy, save_npy

FILES = {"keypoints": "features_keypoints.npy", "descriptors": "features_descriptors.npy",
         "counts": "features_counts.npy"}
POINTS_FILE = "features_points3d.npy"
MODEL_FILE = "features_model.onnx"
CAMERA_KEYS = ("fx", "fy", "cx", "cy", "width", "height")
#: Largest image side, pixels, and focal length per pixel of that side (a 0.06 degree
#: field of view): bounds that no camera reaches and that keep projections finite.
MAX_IMAGE_SIDE = 1 << 16
MAX_FOCAL_PER_SIDE = 1000
MAX_FEATURES = 100_000


def check_intrinsics(cam: Intrinsics, where: str) -> Intrinsics:
    """``cam`` if it is a usable pinhole camera, else UserError naming ``where``."""
    if not (1 <= cam.width <= MAX_IMAGE_SIDE and 1 <= cam.height <= MAX_IMAGE_SIDE):
        raise UserError(f"{where}: camera size {cam.width}x{cam.height} must be 1..{MAX_IMAGE_SIDE} "
                        "pixels per side")
    vals = [cam.fx, cam.fy, cam.cx, cam.cy]
    f_max = MAX_FOCAL_PER_SIDE * max(cam.width, cam.height)
    if not all(np.isfinite(v) for v in vals) or not (0 < cam.fx <= f_max and 0 < cam.fy <= f_max) \
            or not (0 <= cam.cx <= cam.width and 0 <= cam.cy <= cam.height):
        raise UserError(f"{where}: camera intrinsics fx={cam.fx} fy={cam.fy} cx={cam.cx} cy={cam.cy} "
                        f"are not a valid pinhole camera for {cam.width}x{cam.height} images "
                        f"(0 < fx, fy <= {f_max:g}; principal point inside the image; all finite)")
    return cam


class FeatureStore:
    """Features of every keyframe, row i = keyframe id i.

    ``camera``: intrinsics of the keyframe images; ``max_per_keyframe``: F;
    ``kind``: the extractor (features/registry.py); ``T_base_camera``: float64
    [7] camera pose on base_link when the store keeps 3D points, else None;
    ``model_path``: the ONNX file of a kind that needs one (registry.NEEDS_MODEL),
    whose bytes the map carries (written as ``MODEL_FILE``).
    """

    def __init__(self, camera: Intrinsics, max_per_keyframe: int, kind: str = "orb",
                 arrays: tuple[np.ndarray, ...] | None = None,
                 T_base_camera: np.ndarray | None = None, model_path: str | Path | None = None):
        f = int(max_per_keyframe)
        if f < 5:
            raise UserError(f"features: max_per_keyframe must be >= 5 (the minimal set), got {f}")
        self.camera, self.max_per_keyframe = check_intrinsics(camera, "features"), f
        self.kind = kind
        self.desc_dim = registry.get(kind).desc_dim
        if (kind in registry.NEEDS_MODEL) != (model_path is not None):
            raise UserError(f"features: kind {kind!r} " + ("needs its model file (--local-model FILE.onnx)"
                                                            if model_path is None else "takes no model file"))
        self.model_path = None if model_path is None else Path(model_path)
        self._model_bytes = None if model_path is None else self.model_path.read_bytes()
        self.T_base_camera = None if T_base_camera is None else np.asarray(T_base_camera, np.float64).reshape(7)
        kp, desc, counts, pts = (*arrays, None)[:4] if arrays is not None else (None,) * 4
        self._kp = GrowableArray(np.float32, (f, 2), kp)
        self._desc = GrowableArray(np.uint8, (f, self.desc_dim), desc)
        self._counts = GrowableArray(np.int32, (), counts)
        self._pts = (GrowableArray(np.float32, (f, 3), pts)
                     if self.T_base_camera is not None else None)

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def has_points(self) -> bool:
        """Whether each feature has a 3D point (metric pose by PnP is possible)."""
        return self._pts is not None

    @property
    def counts(self) -> np.ndarray:
        """int32 [N] features per keyframe."""
        return self._counts.view()

    def _check_kind(self, feats: Features | None) -> None:
        if feats is not None and feats.kind != self.kind:
            raise ValueError(f"{feats.kind!r} features for a store of {self.kind!r}")

    def append(self, feats: Features | None, points: np.ndarray | None = None) -> None:
        """Add one keyframe's features (None or empty: a keyframe that cannot be verified);
        ``points`` float32 [>= n, 3] their map-frame 3D points (NaN: unknown)."""
        self._check_kind(feats)
        f = self.max_per_keyframe
        kp = np.zeros((1, f, 2), np.float32)
        desc = np.zeros((1, f, self.desc_dim), np.uint8)
        n = 0 if feats is None else min(len(feats), f)
        if n:
            kp[0, :n] = feats.keypoints[:n]
            desc[0, :n] = feats.descriptors[:n]
        self._kp.append(kp)
        self._desc.append(desc)
        self._counts.append(np.array([n], np.int32))
        if self._pts is not None:
            pts = np.full((1, f, 3), np.nan, np.float32)
            if n and points is not None:
                pts[0, :n] = np.asarray(points, np.float32)[:n]
            self._pts.append(pts)

    def set(self, kid: int, feats: Features | None) -> None:
        """Replace keyframe ``kid``'s features (online mapping fills a padded row; no depth)."""
        self._check_kind(feats)
        n = 0 if feats is None else min(len(feats), self.max_per_keyframe)
        # Rows are only set after append/pad_to, which owns (copies) the buffers.
        kp, desc = self._kp.view(), self._desc.view()
        kp[kid], desc[kid] = 0, 0
        if n:
            kp[kid, :n], desc[kid, :n] = feats.keypoints[:n], feats.descriptors[:n]
        if self._pts is not None:
            self._pts.view()[kid] = np.nan
        self._counts.view()[kid] = n

    def pad_to(self, n: int) -> None:
        """Append featureless keyframes until there are ``n`` (keeps rows == keyframe ids)."""
        while len(self) < n:
            self.append(None)

    def get(self, kid: int) -> Features:
        """Features of keyframe ``kid`` (copies, so later appends cannot change them)."""
        n = int(self._counts.view()[kid])
        return Features(np.array(self._kp.view()[kid, :n]), np.array(self._desc.view()[kid, :n]), self.kind)

    def points(self, kid: int) -> np.ndarray | None:
        """float32 [n, 3] map-frame points of keyframe ``kid``'s features (NaN: no depth),
        or None when the store has no points."""
        if self._pts is None:
            return None
        n = int(self._counts.view()[kid])
        return np.array(self._pts.view()[kid, :n])

    def meta(self) -> dict[str, Any]:
        """The ``"features"`` entry of schema.json."""
        c = self.camera
        files = dict(FILES)
        out: dict[str, Any] = {"kind": self.kind, "max_per_keyframe": self.max_per_keyframe,
                               "camera": {"fx": c.fx, "fy": c.fy, "cx": c.cx, "cy": c.cy,
                                          "width": c.width, "height": c.height}}
        if self._pts is not None:
            files["points3d"] = POINTS_FILE
            out["T_base_camera"] = [float(v) for v in self.T_base_camera]
        if self._model_bytes is not None:
            files["model"] = MODEL_FILE
        out["files"] = files
        return out

    def write(self, directory: Path) -> dict[str, FileEntry]:
        """Write the .npy files into ``directory``; their schema entries."""
        out = {FILES["keypoints"]: save_npy(directory / FILES["keypoints"], self._kp.view()),
               FILES["descriptors"]: save_npy(directory / FILES["descriptors"], self._desc.view()),
               FILES["counts"]: save_npy(directory / FILES["counts"], self._counts.view())}
        if self._pts is not None:
            out[POINTS_FILE] = save_npy(directory / POINTS_FILE, self._pts.view())
        if self._model_bytes is not None:
            out[MODEL_FILE] = file_entry(write_bytes_atomic(directory / MODEL_FILE, self._model_bytes))
        return out

    @classmethod
    def load(cls, directory: Path, meta: Any, n: int, listed: Mapping[str, Any]) -> "FeatureStore":
        """Read the features described by ``meta`` (schema.json's "features") for ``n``
        keyframes.  ``listed``: the schema's files (their checksums were verified
        already); every problem is a UserError naming the file or key."""
        where = f"{directory / 'schema.json'}: \"features\""
        if not isinstance(meta, Mapping):
            raise UserError(f"{where} must be an object, got {type(meta).__name__}; rebuild the map")
        kind = meta.get("kind")
        if kind not in registry.KINDS:
            raise UserError(f"{where}: kind {kind!r} is not supported (known: {list(registry.KINDS)}); "
                            "rebuild the map with this distilvpr")
        try:
            cam_d, files = meta["camera"], meta["files"]
            # JSON numbers only: float("80") would take a string, float(1e300) a useless camera.
            size = [int(check_number(cam_d[k], f"{where}: camera.{k}", 1, MAX_IMAGE_SIDE, True))
                    for k in CAMERA_KEYS[4:]]
            cam = Intrinsics(*(float(check_number(cam_d[k], f"{where}: camera.{k}", 0, float("inf")))
                               for k in CAMERA_KEYS[:4]), *size)
            f = int(check_number(meta["max_per_keyframe"], f"{where}: max_per_keyframe", 5,
                                 MAX_FEATURES, True))
            names = {key: files[key] for key in FILES}
            if "points3d" in files:
                names["points3d"] = files["points3d"]
                t_bc = np.asarray([check_number(v, f"{where}: T_base_camera", -1e6, 1e6)
                                   for v in meta["T_base_camera"]], np.float64).reshape(7)
                if abs(np.linalg.norm(t_bc[3:]) - 1) > 1e-3:
                    raise ValueError("T_base_camera: the quaternion is not unit length")
            else:
                t_bc = None
            if kind in registry.NEEDS_MODEL:
                if "model" not in files:
                    raise UserError(f"{where}: kind {kind!r} but no \"model\" file; the map cannot "
                                    f"extract its features -- rebuild it with --local-model FILE.onnx")
                names["model"] = files["model"]
            if not all(isinstance(v, str) for v in names.values()):
                raise TypeError(f"files {names}")
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: missing or invalid entry {str(exc)[:120]}; the map is "
                            "damaged, rebuild it") from None
        for key, name in names.items():
            if name not in listed:
                raise UserError(f"{where}: file {name} ({key}) is not listed in \"files\", so its "
                                "checksum is unknown; the map is damaged, rebuild it")
        dim = registry.get(kind).desc_dim
        kp = load_npy(directory / names["keypoints"], np.float32, (n, f, 2))
        desc = load_npy(directory / names["descriptors"], np.uint8, (n, f, dim))
        counts = load_npy(directory / names["counts"], np.int32, (n,))
        pts = load_npy(directory / names["points3d"], np.float32, (n, f, 3)) if t_bc is not None else None
        if n and (counts.min() < 0 or counts.max() > f):
            raise UserError(f"{directory / names['counts']}: counts outside 0..{f}; the map is damaged")
        inside = np.isfinite(kp).all(axis=(1, 2)) & (kp >= 0).all(axis=(1, 2)) \
            & (kp[..., 0] <= cam.width).all(axis=1) & (kp[..., 1] <= cam.height).all(axis=1)
        if not inside.all():
            raise UserError(f"{directory / names['keypoints']}: keyframe {int(np.argmin(inside))} has "
                            f"keypoints that are NaN, inf or outside the {cam.width}x{cam.height} "
                            "image; the map is damaged")
        # NaN is "no depth"; anything else must be a finite point at a sane distance (metres).
        if pts is not None and (np.isinf(pts).any() or (np.abs(pts[np.isfinite(pts)]) > 1e9).any()):
            raise UserError(f"{directory / names['points3d']}: points contain inf or |value| > 1e9 "
                            "(NaN is 'no depth'); the map is damaged")
        model = directory / names["model"] if "model" in names else None
        return cls(check_intrinsics(cam, where), f, kind, (kp, desc, counts, pts), t_bc, model)


def intrinsics_from_dataset(camera: Mapping[str, Any], where: str) -> Intrinsics:
    """Intrinsics of a native dataset's ``dataset.json`` "camera" (pinhole, no distortion)."""
    try:
        if str(camera.get("distortion", "none")) != "none" or camera.get("model", "pinhole") != "pinhole":
            raise UserError(f"{where}: camera model {camera.get('model')!r} with distortion "
                            f"{camera.get('distortion')!r} is not supported (pinhole, no distortion); "
                            "pass --no-features")
        cam = Intrinsics(*(float(camera[k]) for k in CAMERA_KEYS[:4]),
                         int(camera["width"]), int(camera["height"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: camera intrinsics missing or invalid ({exc}); add fx fy cx cy "
                        "width height to the camera, or pass --no-features") from None
    return check_intrinsics(cam, where)


def intrinsics_from_camera_info(info: Mapping[str, Any], where: str) -> Intrinsics:
    """Intrinsics of a CameraInfo as read by ``data.bags.read_camera_info`` (K float64 [3, 3])."""
    k = np.asarray(info["k"], np.float64).reshape(3, 3)
    cam = Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                     int(info["width"]), int(info["height"]))
    if cam.fx <= 0 or cam.fy <= 0:
        raise UserError(f"{where}: CameraInfo K has fx={cam.fx} fy={cam.fy} (an uncalibrated camera "
                        "publishes zeros); record a calibrated camera_info or pass --no-features")
    return check_intrinsics(cam, where)
