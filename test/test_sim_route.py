"""Route geometry and rotation helpers."""
from __future__ import annotations

import numpy as np

from distilvpr_core.sim.config import TownConfig, approx_route_length
from distilvpr_core.sim.route import Loop, loop_nodes, matrix_to_quat, quat_to_matrix, traversal_poses, yaw_to_quat
from distilvpr_core.sim.world import build_world


def test_loop_visits_each_street_once():
    for bx, by in [(2, 1), (3, 2), (4, 3), (5, 4)]:
        nodes = loop_nodes(bx, by)
        assert nodes[0] == nodes[-1] == (0, 0)
        edges = [frozenset(e) for e in zip(nodes[:-1], nodes[1:])]
        assert len(edges) == len(set(edges))
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(nodes[:-1], nodes[1:]))


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    q = yaw_to_quat(*rng.uniform(-np.pi, np.pi, (3, 50)))
    for qi in q:
        back = matrix_to_quat(quat_to_matrix(qi))
        assert np.allclose(back, qi) or np.allclose(back, -qi)


def test_world_loop_is_long_enough_and_poses_follow_it():
    town = TownConfig()
    world = build_world(town, 3)
    assert world.loop.length >= approx_route_length(town)
    poses, s, rev = traversal_poses(world.loop, 400, 1.5, town.street_width_m, 0.0, 0.25, 0.0, 0, 0.0,
                                    np.random.default_rng(0))
    assert rev.sum() == 100 and not rev[:300].any()
    # heading follows the direction of travel (forward part) and flips on the reversed part
    yaw = np.arctan2(quat_to_matrix(poses[:, 3:])[:, 1, 0], quat_to_matrix(poses[:, 3:])[:, 0, 0])
    step = np.diff(poses[:, :2], axis=0)
    move = np.arctan2(step[:, 1], step[:, 0])
    ok = np.cos(yaw[:-1] - move) > 0.9
    assert ok[:290].mean() > 0.95 and ok[305:].mean() > 0.95
    # vehicles keep right: the loop centre line is to the left of the car
    centre, tangent = Loop.at(world.loop, s)
    heading = np.stack([np.cos(yaw), np.sin(yaw)], 1)
    left = np.stack([-heading[:, 1], heading[:, 0]], 1)
    assert (np.einsum("ij,ij->i", centre - poses[:, :2], left) > 1.0).mean() > 0.9
