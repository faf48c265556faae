"""Ray-cast views of a textured two-plane scene, for geometric-verification tests.

The scene (in camera A's optical frame: x right, y down, z forward, metres)
is a blocky random texture on the plane z = 4 for x < 0 and on z = 8 for
x >= 0: two depths, so the relative pose is not a homography (a single
plane would make the fundamental matrix degenerate).  A view is rendered
by intersecting each pixel's ray with the planes, so the ground-truth
relative pose of any two views is exact.
"""
from __future__ import annotations

import numpy as np

W, H, F = 320, 240, 250.0
K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
PLANES = ((4.0, lambda x: x < 0), (8.0, lambda x: x >= 0))
TEX_PX_PER_M = 60.0


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _texture(seed: int) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (60, 60), dtype=np.uint8)
    tex = cv2.resize(coarse, (1200, 1200), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(tex, (0, 0), 1.0)


def render(seed: int, R_ab: np.ndarray = np.eye(3), c_b: np.ndarray = np.zeros(3)) -> np.ndarray:
    """uint8 [H, W, 3] view from camera B with orientation ``R_ab`` and centre ``c_b``
    in camera A's frame; scene ``seed`` picks the textures."""
    import cv2
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    d = R_ab @ rays
    best_s = np.full(u.size, np.inf)
    out = np.zeros(u.size, np.float32)
    for k, (z, side) in enumerate(PLANES):
        tex = _texture(seed * 10 + k)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (z - c_b[2]) / d[2]
        p = c_b[:, None] + s * d
        ok = (s > 0) & side(p[0]) & (s < best_s)
        tu = (p[0] + 10.0) * TEX_PX_PER_M
        tv = (p[1] + 10.0) * TEX_PX_PER_M
        val = cv2.remap(tex, tu.reshape(H, W).astype(np.float32), tv.reshape(H, W).astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0).ravel()
        out[ok], best_s[ok] = val[ok], s[ok]
    grey = out.reshape(H, W).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


SEEDS = (10, 11, 12, 13)


def rotation_error_deg(R_est: np.ndarray, R_true: np.ndarray) -> float:
    """Angle (degrees) of the rotation between two 3x3 rotation matrices."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R_est.T @ R_true) - 1) / 2, -1, 1))))


def scene_points(keypoints: np.ndarray) -> np.ndarray:
    """float64 [F, 3] exact 3D points (camera A frame) of pixels float [F, 2] of view A."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    d = (np.linalg.inv(K) @ np.c_[kp, np.ones(len(kp))].T).T
    z = np.where(d[:, 0] < 0, PLANES[0][0], PLANES[1][0])
    return d * z[:, None]


IDENTITY_MOUNT = np.array([0.0, 0, 0, 0, 0, 0, 1])


def build_scene_map(emb, out, features: bool = True, kind: str = "orb", points: bool = False):
    """A prior map (real FAISS, with real local features of ``kind`` unless ``features`` is
    False) of views A of scenes ``SEEDS``, keyframe i at x = 10 i m, embedded with ``emb``;
    saved to ``out``.  ``points``: store each feature's exact 3D point in the map frame
    (the camera is base_link: identity mounting, so map = camera A frame + (10 i, 0, 0))."""
    from distilvpr_core.features import registry, types
    from distilvpr_core.mapdb import PriorMap
    from distilvpr_core.mapdb.features import FeatureStore
    images = [render(s) for s in SEEDS]
    poses = np.zeros((len(SEEDS), 7))
    poses[:, 0], poses[:, 6] = np.arange(len(SEEDS)) * 10.0, 1.0
    m = PriorMap.create(emb.dim, emb.fingerprint, emb.contract)
    m.add(emb.embed(images), np.arange(len(SEEDS), dtype=np.int64) * 10**9 + 1_600_000_000 * 10**9,
          poses, "scenes", np.arange(len(SEEDS)))
    if features:
        store = FeatureStore(types.Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H), 300, kind,
                             T_base_camera=IDENTITY_MOUNT if points else None)
        for i, im in enumerate(images):
            f = registry.extract(kind, im, 300)
            store.append(f, scene_points(f.keypoints) + poses[i, :3] if points else None)
        m.attach_features(store)
    return m.save(out)
