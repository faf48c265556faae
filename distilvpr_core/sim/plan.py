"""Everything about a traversal that is decided before rendering: poses, stamps, odometry.

Cheap and deterministic, so every render worker recomputes it from the
config instead of receiving it over a pipe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SynthConfig, TraversalConfig
from .route import quat_to_matrix, traversal_poses, yaw_to_quat
from .world import World

# 2024-06-01T00:00:00Z; traversal k is driven on day k at its time of day.
EPOCH_NS = 1_717_200_000 * 1_000_000_000
HOUR = {"dawn": 6.5, "noon": 12.0, "dusk": 19.5, "night": 23.0}
DETOUR_S = 60.0   # unrecorded drive to the start of a reversed stretch


@dataclass
class TraversalPlan:
    """Ground truth of one drive: arrays have one row per frame."""
    index: int
    cfg: TraversalConfig
    poses: np.ndarray        # float64 [N, 7] base_link in map
    reversed: np.ndarray     # bool [N]
    stamps_ns: np.ndarray    # int64 [N]
    odom: np.ndarray         # float64 [N, 7] base_link in odom (odom = base_link at frame 0)
    twist: np.ndarray        # float64 [N, 6] vx vy vz wx wy wz in base_link
    arc_m: np.ndarray        # float64 [N] arc length of the loop under each frame, metres


def plan_traversals(cfg: SynthConfig, world: World) -> list[TraversalPlan]:
    """Poses, stamps and drifting odometry of every traversal in ``cfg``."""
    out = []
    r = cfg.route
    for k, t in enumerate(cfg.traversals):
        rng = np.random.default_rng([cfg.seed, 7, k])
        poses, arc, rev = traversal_poses(world.loop, cfg.frames_of(t, world.loop.length), r.spacing_m,
                                        cfg.town.street_width_m, t.start_fraction, t.reverse_fraction,
                                        t.lateral_offset_m, t.lane_changes, r.heading_jitter_deg, rng)
        step = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1)
        dt = step / r.speed_mps
        # A jump in position (the unrecorded detour before a reversed stretch) costs DETOUR_S.
        dt = np.where(step > 3 * r.spacing_m, DETOUR_S, dt)
        t_s = np.concatenate([[0.0], np.cumsum(dt)])
        base = EPOCH_NS + k * 86_400 * 1_000_000_000 + int(HOUR[t.time_of_day] * 3600) * 1_000_000_000
        stamps = base + np.round(t_s * 1e9).astype(np.int64)
        odom, twist = _odometry(poses, t_s, cfg.output.odom_drift, np.random.default_rng([cfg.seed, 8, k]))
        out.append(TraversalPlan(index=k, cfg=t, poses=poses, reversed=rev, stamps_ns=stamps, odom=odom, twist=twist,
                                 arc_m=arc))
    return out


def _yaw(poses: np.ndarray) -> np.ndarray:
    m = quat_to_matrix(poses[:, 3:])
    return np.arctan2(m[:, 1, 0], m[:, 0, 0])


def _odometry(poses: np.ndarray, t_s: np.ndarray, drift: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Planar wheel odometry with a scale error and heading random walk.

    Each step's body-frame motion is scaled by (1 + bias + noise) and its yaw
    change gets a bias and noise proportional to ``drift`` (per metre), so
    the error grows with distance like a real odometer.
    """
    yaw = _yaw(poses)
    n = len(poses)
    scale_bias = rng.normal(0.0, drift)
    yaw_bias = rng.normal(0.0, drift * 0.02)          # rad per metre
    ox, oy, oyaw = np.zeros(n), np.zeros(n), np.zeros(n)
    twist = np.zeros((n, 6))
    for i in range(1, n):
        d = poses[i, :2] - poses[i - 1, :2]
        c, s = np.cos(yaw[i - 1]), np.sin(yaw[i - 1])
        fwd, left = c * d[0] + s * d[1], -s * d[0] + c * d[1]
        dist = float(np.hypot(fwd, left))
        dyaw = float(np.angle(np.exp(1j * (yaw[i] - yaw[i - 1]))))
        k = 1.0 + scale_bias + rng.normal(0.0, drift)
        dyaw_o = dyaw + yaw_bias * dist + rng.normal(0.0, drift * 0.01 * np.sqrt(dist + 1e-9))
        co, so = np.cos(oyaw[i - 1]), np.sin(oyaw[i - 1])
        ox[i] = ox[i - 1] + k * (co * fwd - so * left)
        oy[i] = oy[i - 1] + k * (so * fwd + co * left)
        oyaw[i] = oyaw[i - 1] + dyaw_o
        dt = max(t_s[i] - t_s[i - 1], 1e-6)
        twist[i] = (k * fwd / dt, k * left / dt, 0.0, 0.0, 0.0, dyaw_o / dt)
    twist[0] = twist[1] if n > 1 else 0.0
    odom = np.zeros((n, 7))
    odom[:, 0], odom[:, 1] = ox, oy
    odom[:, 3:] = yaw_to_quat(np.zeros(n), np.zeros(n), oyaw)
    return odom, twist
