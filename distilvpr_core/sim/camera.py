"""Pinhole camera rendering by ray casting: shading, shadows, fog, sky, noise.

Camera frame is the ROS optical frame (z forward, x right, y down); its pose
on base_link is ``CameraConfig.position_m`` plus ``pitch_deg``.  Intrinsics
follow sensor_msgs/CameraInfo: pixel (0, 0) centre is at coordinate 0.
"""
from __future__ import annotations

import numpy as np

from .conditions import Look
from .config import CameraConfig
from .scene import Scene
from .world import FOLIAGE, GLASS, LAMP, ROAD, MARKING, WALL, Facade

# base_link <- optical: optical z = base x, optical x = -base y, optical y = -base z.
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rotate(vectors: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``vectors @ rot.T`` for float32 [N, 3] without BLAS.

    A BLAS matmul with an inner size of 3 is slow (and may start threads that
    fight the render workers); three fused multiply-adds are not.
    """
    r = rot.astype(np.float32)
    return vectors[:, 0:1] * r[:, 0] + vectors[:, 1:2] * r[:, 1] + vectors[:, 2:3] * r[:, 2]


def _dot3(vectors: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise dot product of [N, 3] with one 3-vector, without BLAS."""
    return vectors[:, 0] * v[0] + vectors[:, 1] * v[1] + vectors[:, 2] * v[2]


def intrinsics(cam: CameraConfig) -> dict:
    """fx, fy, cx, cy (pixels) of the pinhole model; square pixels."""
    fx = (cam.width / 2.0) / np.tan(np.deg2rad(cam.hfov_deg) / 2.0)
    return {"fx": float(fx), "fy": float(fx), "cx": (cam.width - 1) / 2.0, "cy": (cam.height - 1) / 2.0}


def base_from_camera(cam: CameraConfig) -> np.ndarray:
    """4x4 transform optical camera frame -> base_link (pitch about base y, + looks up)."""
    p = np.deg2rad(cam.pitch_deg)
    # Rotating about base y by -pitch tilts the forward axis up for pitch > 0.
    ry = np.array([[np.cos(-p), 0.0, np.sin(-p)], [0.0, 1.0, 0.0], [-np.sin(-p), 0.0, np.cos(-p)]])
    t = np.eye(4)
    t[:3, :3] = ry @ R_BASE_OPTICAL
    t[:3, 3] = cam.position_m
    return t


def pixel_rays(cam: CameraConfig) -> np.ndarray:
    """Unit ray directions in the optical frame, float64 [H*W, 3], row-major."""
    k = intrinsics(cam)
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    d = np.stack([(u - k["cx"]) / k["fx"], (v - k["cy"]) / k["fy"], np.ones_like(u)], -1).reshape(-1, 3)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def facade_arrays(facades: list[Facade]) -> dict[str, np.ndarray]:
    """Facade table as arrays indexed by facade id."""
    sign = np.array([f.sign if f.sign is not None else (-1.0, -1.0, -1.0) for f in facades], dtype=np.float32)
    return {"window": np.array([f.window for f in facades], dtype=np.float32).reshape(-1, 3),
            "floor_h": np.array([f.floor_h for f in facades], dtype=np.float32),
            "spacing": np.array([f.win_spacing for f in facades], dtype=np.float32),
            "win_w": np.array([f.win_w for f in facades], dtype=np.float32),
            "win_h": np.array([f.win_h for f in facades], dtype=np.float32),
            "sign": sign.reshape(-1, 3), "door_u": np.array([f.door_u for f in facades], dtype=np.float32),
            "lit": np.array([f.lit_seed for f in facades], dtype=np.int64)}


def _hash01(*ints: np.ndarray) -> np.ndarray:
    """Deterministic per-element pseudo-random numbers in [0, 1) from integer keys."""
    h = np.uint64(1469598103934665603)
    for x in ints:
        h = (h ^ np.asarray(x).astype(np.uint64)) * np.uint64(1099511628211)
        h ^= h >> np.uint64(29)
    return (h % np.uint64(1 << 24)).astype(np.float64) / float(1 << 24)


def render(scene: Scene, fac: dict[str, np.ndarray], look: Look, cam: CameraConfig, rays_cam: np.ndarray,
           t_map_base: np.ndarray, lamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render one image, uint8 [H, W, 3] RGB.

    ``t_map_base`` 4x4 base_link pose in map; ``lamps`` float64 [L, 3] street
    lights (used at night); ``rng`` draws this frame's sensor noise.
    Shading is done in float32 on hit pixels only (it dominates the frame time).
    """
    t_map_cam = t_map_base @ base_from_camera(cam)
    d = rotate(rays_cam, t_map_cam[:3, :3])
    o = t_map_cam[:3, 3]
    # Beyond ~7 fog lengths a surface is invisible: stop rays there.
    max_dist = 7.0 * look.fog_distance_m if np.isfinite(look.fog_distance_m) else None
    face, dist = scene.cast(o, d, max_dist=max_dist)
    hit = face >= 0
    hf = face[hit]
    dh = d[hit]
    disth = dist[hit].astype(np.float32)
    p = (t_map_cam[:3, 3].astype(np.float32) + dh * disth[:, None])
    n = scene.normal[hf]
    n = np.where((np.einsum("ij,ij->i", n, dh) > 0)[:, None], -n, n)
    mat = scene.material[hf]
    alb = scene.albedo[hf]
    emit = None

    # Procedural facades: windows on upper floors, door + shop sign at street level.
    wall = np.nonzero(mat == WALL)[0]
    if len(wall):
        hw = hf[wall]
        fi = scene.facade[hw]
        u = np.einsum("ij,ij->i", p[wall], scene.tangent[hw]) - scene.u0[hw]
        z = p[wall, 2] - scene.z0[hw]
        fh, sp = fac["floor_h"][fi], fac["spacing"][fi]
        zf = z / fh
        floor = np.floor(zf)
        fz = zf - floor
        us = u / sp
        col = np.floor(us)
        fu = us - col
        win = (floor >= 1) & (np.abs(fu - 0.5) < fac["win_w"][fi] * 0.5) & (fz > 0.3) & (fz < 0.3 + fac["win_h"][fi])
        a = alb[wall]
        a[win] = fac["window"][fi[win]]
        sign = fac["sign"][fi]
        has_sign = (sign[:, 0] >= 0) & (z > 2.6) & (z < 3.3)
        a[has_sign] = sign[has_sign]
        door = (z < 2.3) & (u > fac["door_u"][fi]) & (u < fac["door_u"][fi] + 1.3)
        a[door] = (0.12, 0.08, 0.06)
        alb[wall] = a
        if look.lamps_on:
            lit = win & (_hash01(fac["lit"][fi], floor.astype(np.int64) + 64, col.astype(np.int64) + 4096) < 0.35)
            emit = np.zeros_like(alb)
            emit[wall[lit]] = (1.2, 0.9, 0.5)
    if look.foliage is not None:
        leaf = mat == FOLIAGE
        alb[leaf] = 0.5 * alb[leaf] + 0.5 * np.asarray(look.foliage, dtype=np.float32)
    if look.snow:
        up = (n[:, 2] > 0.7) & (mat != GLASS)
        alb[up] = np.where((mat[up] == ROAD)[:, None] | (mat[up] == MARKING)[:, None], 0.55, 0.92)
    if look.rain:
        alb *= 0.75       # wet surfaces are darker

    sun = np.asarray(look.sun_dir, dtype=np.float32)
    light = np.asarray(look.ambient, dtype=np.float32) * (0.55 + 0.45 * np.clip(n[:, 2], 0.0, 1.0))[:, None]
    if any(look.sun_color):
        ndl = np.clip(_dot3(n, sun), 0.0, None)
        if look.shadows:
            idx = np.nonzero(ndl > 0)[0]
            blocked = scene.occluded(p[idx] + n[idx] * 0.05, np.broadcast_to(sun, (len(idx), 3)))
            ndl[idx[blocked]] = 0.0
        light += np.asarray(look.sun_color, dtype=np.float32) * ndl[:, None]
    if look.lamps_on:
        light += _artificial_light(p, n, lamps, t_map_base)
        if emit is None:
            emit = np.zeros_like(alb)
        emit[mat == LAMP] = (3.0, 2.8, 2.2)
    shaded = alb * light
    if emit is not None:
        shaded += emit
    color = np.empty((len(d), 3), dtype=np.float32)
    color[hit] = shaded
    # Sky: gradient from horizon to zenith, sun disc on clear days.
    sky = np.nonzero(~hit)[0]
    dz = d[sky, 2]
    elev = np.sqrt(np.clip(dz, 0.0, 1.0))[:, None]
    color[sky] = (np.asarray(look.sky_horizon, dtype=np.float32) * (1 - elev)
                  + np.asarray(look.sky_zenith, dtype=np.float32) * elev)
    if look.shadows:
        disc = _dot3(d[sky], sun) > 0.9995
        color[sky[disc]] = (4.0, 3.8, 3.3)
    if np.isfinite(look.fog_distance_m):
        f = np.exp(-np.where(hit, dist, 1e9) / look.fog_distance_m).astype(np.float32)[:, None]
        color = color * f + np.asarray(look.fog_color, dtype=np.float32) * (1 - f)
    gain = np.float32(look.exposure) * np.asarray(look.white_balance, dtype=np.float32)
    img = color.reshape(cam.height, cam.width, 3) * gain
    if look.rain:
        img = _rain_streaks(img, rng)
    img = img / (1.0 + 0.15 * img)               # soft shoulder keeps highlights from clipping hard
    img = np.clip(img, 0.0, 1.0) ** np.float32(1 / 2.2)
    # Read noise plus shot noise (grows with signal), one Gaussian draw.
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img += noise * (np.float32(look.noise_sigma) * (1.0 + np.sqrt(img)))
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _artificial_light(p: np.ndarray, n: np.ndarray, lamps: np.ndarray, t_map_base: np.ndarray) -> np.ndarray:
    """Street lights (nearest 12, no shadows) plus the vehicle's headlights, irradiance [K, 3]."""
    out = np.zeros_like(p)
    car = t_map_base[:3, 3]
    if len(lamps):
        near = lamps[np.argsort(np.linalg.norm(lamps[:, :2] - car[:2], axis=1))[:12]].astype(np.float32)
        acc = np.zeros(len(p), dtype=np.float32)
        for q in near:
            v = q - p
            r2 = np.einsum("ij,ij->i", v, v)
            acc += np.clip(np.einsum("ij,ij->i", n, v), 0.0, None) / np.sqrt(r2) * 8.0 / (r2 + 4.0)
        out += acc[:, None] * np.array((1.0, 0.85, 0.6), dtype=np.float32)
    fwd = t_map_base[:3, 0].astype(np.float32)
    head = (car + fwd * 2.0 + np.array([0.0, 0.0, 0.7])).astype(np.float32)
    v = p - head
    r2 = np.einsum("ij,ij->i", v, v)
    r = np.sqrt(r2)
    cone = np.clip((_dot3(v, fwd) / np.maximum(r, 1e-6) - 0.8) / 0.2, 0.0, 1.0) ** 2
    cos = np.clip(-np.einsum("ij,ij->i", n, v) / np.maximum(r, 1e-6), 0.0, None)
    out += (cone * cos * 35.0 / (r2 + 4.0))[:, None] * np.array((1.0, 0.97, 0.9), dtype=np.float32)
    return out


def _rain_streaks(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright short vertical streaks at random places (drops near the lens)."""
    h, w, _ = img.shape
    out = img.copy()
    # Drops reflect the scene's light: faint at night, bright by day.
    level = 0.35 * min(1.0, float(img.mean()) * 2.0 + 0.05)
    count = (h * w) // 400
    ys = rng.integers(0, h, count)
    xs = rng.integers(0, w, count)
    ln = rng.integers(3, max(4, h // 12), count)
    for y, x, n in zip(ys, xs, ln):
        out[y:y + n, x] = out[y:y + n, x] * 0.6 + level
    return out
