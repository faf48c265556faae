"""Spinning multi-beam LiDAR by ray casting (Embree through trimesh).

Points are returned in the ``lidar`` frame (x forward, y left, z up, axes
parallel to base_link, origin at ``LidarConfig.position_m``).
"""
from __future__ import annotations

import numpy as np

from .config import LidarConfig
from .camera import rotate
from .scene import Scene
from .world import REFLECTIVITY


def beam_directions(lidar: LidarConfig) -> np.ndarray:
    """Unit directions float64 [beams*azimuth_bins, 3], beam-major, azimuth from +x counter-clockwise."""
    elev = np.deg2rad(np.linspace(lidar.vfov_down_deg, lidar.vfov_up_deg, lidar.beams))
    az = np.arange(lidar.azimuth_bins) * (2 * np.pi / lidar.azimuth_bins)
    e, a = np.meshgrid(elev, az, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)


def scan(scene: Scene, lidar: LidarConfig, dirs_lidar: np.ndarray, t_map_base: np.ndarray,
         rng: np.random.Generator, extra_dropout: float = 0.0) -> np.ndarray:
    """One revolution: float32 [P, 4] x y z (m, lidar frame) and intensity in [0, 1].

    Returns are dropped beyond ``max_range_m``, nearer than ``min_range_m``,
    and at random (``dropout`` + ``extra_dropout`` for rain/fog); ranges get
    Gaussian noise.  Intensity = material reflectivity x |cos incidence|.
    """
    rot = t_map_base[:3, :3]
    origin = t_map_base[:3, :3] @ np.asarray(lidar.position_m) + t_map_base[:3, 3]
    d = rotate(dirs_lidar, rot)
    face, dist = scene.cast(origin, d, max_dist=lidar.max_range_m + 1.0)
    ok = (face >= 0) & (dist <= lidar.max_range_m) & (dist >= lidar.min_range_m)
    ok &= rng.random(len(d)) >= min(0.99, lidar.dropout + extra_dropout)
    idx = np.nonzero(ok)[0]
    r = dist[idx] + rng.normal(0.0, lidar.noise_m, len(idx))
    pts = dirs_lidar[idx] * r[:, None]
    f = face[idx]
    cos = np.abs(np.einsum("ij,ij->i", scene.normal[f].astype(np.float64), d[idx]))
    inten = np.clip(REFLECTIVITY[scene.material[f]] * (0.3 + 0.7 * cos) + rng.normal(0.0, 0.02, len(idx)), 0.0, 1.0)
    return np.concatenate([pts, inten[:, None]], axis=1).astype(np.float32)
