"""LiDAR scan -> bird's-eye-view height/occupancy grid (numpy, data side).

The grid is centred on the sensor, axis 0 (rows) along lidar +x (forward),
axis 1 (cols) along lidar +y (left); metres.  Channels (float32, all in
[0, 1]): ``height_bins`` occupancy slices (log-scaled point counts between
``z_min`` and ``z_max``), the normalised maximum height, and the mean
intensity (clipped to [0, 1]).
"""
from __future__ import annotations

import numpy as np

from .config import BevConfig


def points_to_bev(points: np.ndarray, cfg: BevConfig) -> np.ndarray:
    """float32 [P, 3|4] x y z (intensity) in the lidar frame -> float32 [C, G, G]."""
    g = cfg.cells
    out = np.zeros((cfg.channels, g, g), dtype=np.float32)
    if points.size == 0:
        return out
    xyz = points[:, :3].astype(np.float32, copy=False)
    inten = points[:, 3] if points.shape[1] > 3 else np.ones(len(points), np.float32)
    cell = 2.0 * cfg.range_m / g
    ix = np.floor((xyz[:, 0] + cfg.range_m) / cell).astype(np.int64)
    iy = np.floor((xyz[:, 1] + cfg.range_m) / cell).astype(np.int64)
    z = xyz[:, 2]
    keep = (ix >= 0) & (ix < g) & (iy >= 0) & (iy < g) & (z >= cfg.z_min) & (z < cfg.z_max)
    ix, iy, z, inten = ix[keep], iy[keep], z[keep], inten[keep]
    if ix.size == 0:
        return out
    zn = (z - cfg.z_min) / (cfg.z_max - cfg.z_min)  # [0, 1)
    iz = np.minimum((zn * cfg.height_bins).astype(np.int64), cfg.height_bins - 1)
    flat = ix * g + iy
    counts = np.zeros((cfg.height_bins, g * g), np.float32)
    np.add.at(counts, (iz, flat), 1.0)
    # log scaling keeps near-sensor cells (hundreds of points) comparable to far ones.
    out[:cfg.height_bins] = (np.log1p(counts) / np.log1p(64.0)).clip(0, 1).reshape(cfg.height_bins, g, g)
    zmax = np.zeros(g * g, np.float32)
    np.maximum.at(zmax, flat, zn.astype(np.float32))
    out[cfg.height_bins] = zmax.reshape(g, g)
    isum = np.zeros(g * g, np.float32)
    n = np.zeros(g * g, np.float32)
    np.add.at(isum, flat, np.clip(inten, 0, 1).astype(np.float32))
    np.add.at(n, flat, 1.0)
    out[cfg.height_bins + 1] = (isum / np.maximum(n, 1)).reshape(g, g)
    return out
