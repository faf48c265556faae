"""Exact correspondences between two renders of the synthetic town.

A *view* is one camera pose rendered with one traversal's look (time of day,
weather, season) and that traversal's geometry (moved cars, changed buildings,
leafless winter trees), by the same renderer as ``distilvpr synth``
(sim/camera.py), plus the depth of every pixel along its ray (the renderer's
own Embree scene).  For a pixel of view A, its depth gives the 3D point in the
map frame; projected into view B it is the corresponding pixel when B sees the
same surface there (B's depth at that pixel agrees, else the point is
occluded or the geometry changed).  Two views of one pose under two looks are
pixel-aligned; a second pose (shifted a few metres, turned a few degrees) adds
a real change of viewpoint with parallax.

Frames: camera = ROS optical frame (z forward, x right, y down); poses are
float64 [4, 4] camera -> map; pixel (0, 0)'s centre is at coordinate 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Depth agreement for a visible correspondence: |d_B - |X_B|| <= REL * d + ABS (m).
DEPTH_REL, DEPTH_ABS = 0.02, 0.05
#: Only surfaces where the fog leaves at least this much of the scene's light count.
MIN_FOG_TRANSMISSION = 0.1


@dataclass
class View:
    """One render: ``rgb`` uint8 [H, W, 3]; ``depth`` float32 [H, W] metres along each
    pixel's ray (inf: sky, or beyond what the look's fog lets through); ``T_map_cam``
    float64 [4, 4]; ``look`` the traversal name whose appearance it has."""
    rgb: np.ndarray
    depth: np.ndarray
    T_map_cam: np.ndarray
    look: str


class TownRenderer:
    """Renders views of one synthetic town (a SynthConfig) under its traversals' looks."""

    def __init__(self, cfg):
        from ..sim import camera
        from ..sim.plan import plan_traversals
        from ..sim.world import build_world
        self.cfg = cfg
        self.world = build_world(cfg.town, cfg.seed)
        self.plans = plan_traversals(cfg, self.world)
        self.names = [p.cfg.name for p in self.plans]
        self.rays = camera.pixel_rays(cfg.camera).astype(np.float32)
        k = camera.intrinsics(cfg.camera)
        self.K = np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1.0]])
        self._scenes: dict[int, tuple] = {}

    def _scene(self, ti: int) -> tuple:
        if ti not in self._scenes:
            from ..sim.camera import facade_arrays
            from ..sim.conditions import look_for
            from ..sim.scene import build_scene
            from ..sim.variation import traversal_solids
            plan = self.plans[ti]
            solids, facades = traversal_solids(self.world, self.cfg, ti, plan.cfg, plan.poses)
            self._scenes[ti] = (build_scene(solids), facade_arrays(facades),
                                look_for(plan.cfg, self.cfg.camera.shadows))
        return self._scenes[ti]

    def base_poses(self) -> np.ndarray:
        """float64 [N, 4, 4] base_link -> map of every frame of every traversal (where to look)."""
        from ..sim.route import quat_to_matrix
        poses = np.concatenate([p.poses for p in self.plans])
        out = np.tile(np.eye(4), (len(poses), 1, 1))
        out[:, :3, :3] = quat_to_matrix(poses[:, 3:])
        out[:, :3, 3] = poses[:, :3]
        return out

    def render(self, ti: int, T_map_base: np.ndarray, rng: np.random.Generator) -> View:
        """View of traversal ``ti``'s look and geometry from base_link pose ``T_map_base``."""
        from ..sim import camera
        scene, fac, look = self._scene(ti)
        rgb = camera.render(scene, fac, look, self.cfg.camera, self.rays, T_map_base, self.world.lamps, rng)
        T = T_map_base @ camera.base_from_camera(self.cfg.camera)
        _, dist = scene.cast(T[:3, 3], camera.rotate(self.rays, T[:3, :3]))
        if np.isfinite(look.fog_distance_m):
            dist = np.where(dist <= -np.log(MIN_FOG_TRANSMISSION) * look.fog_distance_m, dist, np.inf)
        depth = dist.reshape(self.cfg.camera.height, self.cfg.camera.width).astype(np.float32)
        return View(rgb, depth, T, self.names[ti])


def correspond(a: View, b: View, K: np.ndarray, pts_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of view ``b`` that see the surfaces under integer pixels ``pts_a`` int [N, 2]
    (x, y) of view ``a``: (float32 [N, 2] x, y in ``b``, bool [N] valid: a surface in ``a``,
    in front of ``b``'s camera, inside its image and not occluded there)."""
    pts_a = np.asarray(pts_a, np.int64).reshape(-1, 2)
    h, w = a.depth.shape
    d = a.depth[pts_a[:, 1], pts_a[:, 0]].astype(np.float64)
    ray = np.c_[(pts_a[:, 0] - K[0, 2]) / K[0, 0], (pts_a[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(pts_a))]
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    finite = np.isfinite(d)
    x_cam_a = ray * np.where(finite, d, 1.0)[:, None]
    x_map = x_cam_a @ a.T_map_cam[:3, :3].T + a.T_map_cam[:3, 3]
    T_b = np.linalg.inv(b.T_map_cam)
    x_b = x_map @ T_b[:3, :3].T + T_b[:3, 3]
    z = x_b[:, 2]
    front = finite & (z > 0.1)
    uv = (x_b[:, :2] / np.where(front, z, 1.0)[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    inside = front & (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
    ui = np.clip(np.rint(uv[:, 0]).astype(np.int64), 0, w - 1)
    vi = np.clip(np.rint(uv[:, 1]).astype(np.int64), 0, h - 1)
    seen = b.depth[vi, ui].astype(np.float64)
    dist_b = np.linalg.norm(x_b, axis=1)
    visible = inside & np.isfinite(seen) & (np.abs(seen - dist_b) <= DEPTH_REL * dist_b + DEPTH_ABS)
    return uv.astype(np.float32), visible


def perturb(T_map_base: np.ndarray, rng: np.random.Generator, forward_m: float, lateral_m: float,
            yaw_deg: float) -> np.ndarray:
    """``T_map_base`` moved by uniform draws within +-forward_m, +-lateral_m (base_link x, y)
    and turned by +-yaw_deg about z: the second viewpoint of a place."""
    dx, dy = rng.uniform(-forward_m, forward_m), rng.uniform(-lateral_m, lateral_m)
    yaw = np.deg2rad(rng.uniform(-yaw_deg, yaw_deg))
    step = np.eye(4)
    step[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    step[:3, 3] = (dx, dy, 0.0)
    return T_map_base @ step
