"""What changes in the world between traversals: cars, traffic, buildings, trees.

Geometry that LiDAR sees stays mostly the same across drives (buildings,
poles, trunks, road), while things a camera is sensitive to change; a few
real structural changes (rebuilt houses, moved cars, leafless trees) keep the
LiDAR side honest.
"""
from __future__ import annotations

import numpy as np

from .config import SynthConfig, TraversalConfig
from .world import BRANCH, FOLIAGE, WALL, Solid, World, random_facade, car_solids, parked_cars, replace


def traversal_solids(world: World, cfg: SynthConfig, index: int, trav: TraversalConfig,
                     poses: np.ndarray) -> tuple[list[Solid], list]:
    """The solids seen by traversal ``index`` and the facade table it uses.

    ``poses`` float64 [N, 7] are the drive's base_link poses; cars that would
    sit on the drive's own lane (within 2.6 m of a pose) are left out.
    """
    seed = cfg.seed
    base = parked_cars(world, np.random.default_rng([seed, 2]), cfg.town.parked_car_prob)
    rng = np.random.default_rng([seed, 3, index])
    keep_tags = {s.tag for s in base if rng.random() >= trav.moved_cars}
    cars = [s for s in base if s.tag in keep_tags]
    # Re-parked cars: a fresh draw, thinned so the total count stays similar.
    fresh = parked_cars(world, rng, cfg.town.parked_car_prob * trav.moved_cars)
    cars += [replace(s, tag=s.tag + 100_000) for s in fresh]
    if len(poses):
        tags_near = _tags_near_path({s.tag: s.center[:2] for s in cars}, poses[:, :2], 2.6)
        cars = [s for s in cars if s.tag not in tags_near]
    facades = list(world.facades)
    solids = []
    buildings = [i for i, s in enumerate(world.solids) if s.material == WALL]
    changed = set(rng.permutation(buildings)[:trav.changed_buildings].tolist()) if buildings else set()
    for i, s in enumerate(world.solids):
        if i in changed:
            facades.append(random_facade(rng))
            h = s.size[2] * float(rng.uniform(0.5, 1.6))
            s = replace(s, size=(s.size[0], s.size[1], h), facade=len(facades) - 1, color=facades[-1].wall)
        elif s.material == FOLIAGE and trav.season == "winter":
            # Leafless: only the branch skeleton remains, a smaller sparser crown.
            s = replace(s, material=BRANCH, color=(0.3, 0.24, 0.18),
                        size=tuple(v * 0.6 for v in s.size))
        elif s.material == FOLIAGE and trav.season == "autumn":
            c = np.random.default_rng([seed, 5, s.tag]).uniform([0.55, 0.2, 0.02], [0.8, 0.45, 0.1])
            s = replace(s, color=tuple(map(float, c)))
        solids.append(s)
    return solids + cars, facades


def _tags_near_path(centres: dict[int, tuple[float, float]], path_xy: np.ndarray, radius: float) -> set[int]:
    if not centres:
        return set()
    tags = list(centres)
    pts = np.array([centres[t] for t in tags])
    # Brute force is fine: a few hundred cars x a few thousand poses.
    d = np.min(np.linalg.norm(pts[:, None, :] - path_xy[None, :, :], axis=2), axis=1)
    return {t for t, di in zip(tags, d) if di < radius}



def traffic_at(world: World, seed: int, index: int, count: int, t_s: float,
               ego_xy: np.ndarray) -> list[Solid]:
    """Oncoming traffic of traversal ``index`` at ``t_s`` seconds after its start.

    ``count`` cars drive the loop backwards in the opposite lane at 6-12 m/s
    from drive-specific start points; cars within 6 m of the ego vehicle
    (``ego_xy`` float64 [2], map) are left out so they never intersect it.
    """
    rng = np.random.default_rng([seed, 6, index])
    s0 = rng.uniform(0, world.loop.length, count)
    speed = rng.uniform(6.0, 12.0, count)
    cars: list[Solid] = []
    if count == 0:
        return cars
    p, t = world.loop.at(s0 - speed * t_s)
    for k in range(count):
        car_rng = np.random.default_rng([seed, 6, index, k])
        left = np.array([-t[k, 1], t[k, 0]])
        xy = p[k] + left * world.street_width / 4
        if np.linalg.norm(xy - ego_xy) < 6.0:
            continue
        cars += car_solids(xy, float(np.arctan2(-t[k, 1], -t[k, 0])), car_rng, tag=200_000 + k)
    return cars
