"""The procedural town: a seed -> a list of simple solids with materials.

The world is described as plain records (``Solid``) so a traversal can copy
it and change parts (moved cars, repainted buildings, leafless trees) before
it is triangulated by ``sim.scene``.  Everything is in the ``map`` frame
(ENU, metres, z up); the ground is z = 0.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .config import TownConfig
from .route import Loop, chaikin, loop_nodes

# Material ids; shading and LiDAR reflectivity are looked up by these.
GROUND, ROAD, MARKING, WALL, ROOF, TRUNK, FOLIAGE, POLE, LAMP, CAR, GLASS, FENCE, SIGN, SIDEWALK, BRANCH = range(15)
MATERIAL_NAMES = ("ground", "road", "marking", "wall", "roof", "trunk", "foliage", "pole", "lamp",
                  "car", "glass", "fence", "sign", "sidewalk", "branch")
# Diffuse LiDAR reflectivity in [0, 1]; markings and signs are retro-reflective.
REFLECTIVITY = np.array([0.25, 0.12, 0.8, 0.45, 0.35, 0.3, 0.35, 0.5, 0.6, 0.55, 0.1, 0.4, 0.9, 0.3, 0.3],
                        dtype=np.float32)


@dataclass
class Facade:
    """Procedural facade pattern of one building (evaluated per pixel in shading)."""
    wall: tuple[float, float, float]
    window: tuple[float, float, float]
    floor_h: float
    win_spacing: float
    win_w: float          # fraction of win_spacing
    win_h: float          # fraction of floor_h
    sign: tuple[float, float, float] | None
    door_u: float
    lit_seed: int


@dataclass
class Solid:
    """An oriented box: centre (x, y, z-bottom), size (along, across, height), yaw (rad)."""
    kind: str                       # building | road | marking | tree_trunk | crown | pole | lamp | car | ...
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float
    material: int
    color: tuple[float, float, float]
    facade: int = -1                # index into World.facades for buildings
    shape: str = "box"              # box | sphere
    tag: int = -1                   # stable id (building / car / tree index)


@dataclass
class World:
    """All static solids plus what traversals may change."""
    solids: list[Solid]
    facades: list[Facade]
    loop: Loop
    lamps: np.ndarray                # float64 [L, 3] street-light positions
    kerbs: list[tuple[np.ndarray, np.ndarray, float]]   # street edges (a, b, side) for parked cars
    street_width: float
    extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)   # xmin ymin xmax ymax
    edges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def _rand_color(rng: np.random.Generator, base: tuple[float, float, float],
                spread: float) -> tuple[float, float, float]:
    c = np.clip(np.asarray(base) + rng.uniform(-spread, spread, 3), 0.02, 0.98)
    return tuple(float(v) for v in c)


WALL_PALETTE = ((0.75, 0.7, 0.62), (0.62, 0.35, 0.28), (0.85, 0.85, 0.82), (0.45, 0.47, 0.5),
                (0.8, 0.68, 0.45), (0.55, 0.6, 0.66), (0.35, 0.3, 0.28), (0.9, 0.78, 0.7))


def random_facade(rng: np.random.Generator) -> Facade:
    """A random facade pattern and palette."""
    wall = _rand_color(rng, WALL_PALETTE[rng.integers(len(WALL_PALETTE))], 0.07)
    window = _rand_color(rng, (0.18, 0.24, 0.3), 0.08)
    sign_bases = ((0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.9, 0.7, 0.1), (0.1, 0.6, 0.3))
    sign = _rand_color(rng, sign_bases[rng.integers(4)], 0.1) if rng.random() < 0.4 else None
    return Facade(wall=wall, window=window, floor_h=float(rng.uniform(2.9, 3.8)),
                  win_spacing=float(rng.uniform(2.2, 4.5)), win_w=float(rng.uniform(0.35, 0.7)),
                  win_h=float(rng.uniform(0.35, 0.6)), sign=sign, door_u=float(rng.uniform(1.0, 5.0)),
                  lit_seed=int(rng.integers(1 << 30)))


def _junctions(town: TownConfig, rng: np.random.Generator) -> np.ndarray:
    bx, by, b = town.blocks_x, town.blocks_y, town.block_size_m
    grid = np.stack(np.meshgrid(np.arange(bx + 1), np.arange(by + 1), indexing="ij"), -1).astype(np.float64) * b
    return grid + rng.uniform(-town.junction_jitter_m, town.junction_jitter_m, grid.shape)


def _street_side(rng: np.random.Generator, town: TownConfig, length: float) -> list[dict]:
    """Building records along one street side, in metres from the usable start."""
    out, pos = [], float(rng.uniform(*town.building_gap_m))
    while True:
        width = float(rng.uniform(*town.building_width_m))
        if pos + width > length:
            break
        out.append({"u": pos, "width": width, "depth": float(rng.uniform(8.0, 16.0)),
                    "height": float(rng.uniform(*town.building_height_m)), "facade": None})
        pos += width + float(rng.uniform(*town.building_gap_m))
    return out


def build_world(town: TownConfig, seed: int) -> World:
    """Generate the static town for ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, 1])
    nodes = _junctions(town, rng)
    bx, by = town.blocks_x, town.blocks_y
    w = town.street_width_m
    edges = [((i, j), (i + 1, j)) for i in range(bx) for j in range(by + 1)]
    edges += [((i, j), (i, j + 1)) for i in range(bx + 1) for j in range(by)]
    solids: list[Solid] = []
    facades: list[Facade] = []
    lamps: list[tuple[float, float, float]] = []
    kerbs = []
    lo = nodes.reshape(-1, 2).min(0) - 80.0
    hi = nodes.reshape(-1, 2).max(0) + 80.0
    centre = (lo + hi) / 2
    solids.append(Solid("ground", (centre[0], centre[1], -0.2), (hi[0] - lo[0], hi[1] - lo[1], 0.2), 0.0,
                        GROUND, (0.3, 0.42, 0.2)))
    # Junction squares so that crossing roads join without gaps.
    for i in range(bx + 1):
        for j in range(by + 1):
            p = nodes[i, j]
            # Heights differ by >= 5 mm so no two coplanar surfaces fight:
            # ground 0, junction pavement 0.005, road 0.01, junction road 0.015,
            # markings 0.02, raised sidewalks 0.12.
            solids.append(Solid("road", (p[0], p[1], -0.1), (w + 2 * 2.5, w + 2 * 2.5, 0.105), 0.0, SIDEWALK,
                                (0.55, 0.55, 0.53)))
            solids.append(Solid("road", (p[0], p[1], -0.1), (w, w, 0.115), 0.0, ROAD, (0.22, 0.22, 0.23)))
    sides = []
    for (ia, ja), (ib, jb) in edges:
        a, b = nodes[ia, ja], nodes[ib, jb]
        d = b - a
        length = float(np.linalg.norm(d))
        t = d / length
        n = np.array([-t[1], t[0]])
        yaw = float(np.arctan2(t[1], t[0]))
        mid = (a + b) / 2
        solids.append(Solid("road", (mid[0], mid[1], -0.1), (length, w, 0.11), yaw, ROAD, (0.22, 0.22, 0.23)))
        for side in (-1, 1):
            # Sidewalks stop at the junction squares so they never cross a road.
            sw = mid + side * n * (w / 2 + 1.25)
            solids.append(Solid("sidewalk", (sw[0], sw[1], -0.1), (max(length - w - 5.0, 1.0), 2.5, 0.22), yaw,
                                SIDEWALK, (0.55, 0.55, 0.53)))
        # Dashed centre line: 3 m dashes every 9 m.
        for u in np.arange(w, length - w, 9.0):
            c = a + t * (u + 1.5)
            solids.append(Solid("marking", (c[0], c[1], -0.1), (3.0, 0.15, 0.12), yaw, MARKING, (0.92, 0.92, 0.88)))
        margin = w / 2 + town.setback_m + 2.0
        usable = length - 2 * margin
        for side in (-1, 1):
            kerbs.append((a + t * margin, b - t * margin, float(side)))
            if usable > town.building_width_m[0]:
                sides.append((a, t, n, yaw, side, margin, usable, _street_side(rng, town, usable)))
        # Street furniture along this edge.
        for side in (-1, 1):
            u = margin + float(rng.uniform(0, town.tree_spacing_m))
            while u < length - margin:
                p = a + t * u + side * n * (w / 2 + 1.6)
                tid = len(solids)
                h = float(rng.uniform(2.0, 3.5))
                r = float(rng.uniform(1.6, 2.8))
                solids.append(Solid("trunk", (p[0], p[1], 0.0), (0.35, 0.35, h + r * 0.5), 0.0, TRUNK,
                                    (0.3, 0.22, 0.15), tag=tid))
                solids.append(Solid("crown", (p[0], p[1], h), (2 * r, 2 * r, 2 * r * float(rng.uniform(0.9, 1.4))),
                                    float(rng.uniform(0, np.pi)), FOLIAGE, _rand_color(rng, (0.2, 0.42, 0.15), 0.06),
                                    shape="sphere", tag=tid))
                u += town.tree_spacing_m * float(rng.uniform(0.6, 1.4))
        side = 1 if rng.random() < 0.5 else -1
        for u in np.arange(margin, length - margin, town.pole_spacing_m):
            side = -side
            p = a + t * u + side * n * (w / 2 + 0.4)
            solids.append(Solid("pole", (p[0], p[1], 0.0), (0.22, 0.22, 6.5), yaw, POLE, (0.35, 0.36, 0.38)))
            head = p - side * n * 1.2
            solids.append(Solid("lamp", (head[0], head[1], 6.2), (0.7, 2.4, 0.25), yaw, LAMP, (0.9, 0.9, 0.8)))
            lamps.append((head[0], head[1], 6.0))
        if rng.random() < 0.35:   # a traffic sign
            u = float(rng.uniform(margin, max(margin + 1, length - margin)))
            s = 1 if rng.random() < 0.5 else -1
            p = a + t * u + s * n * (w / 2 + 0.6)
            solids.append(Solid("signpost", (p[0], p[1], 0.0), (0.1, 0.1, 2.6), yaw, POLE, (0.5, 0.5, 0.5)))
            solids.append(Solid("sign", (p[0], p[1], 2.0), (0.08, 0.9, 0.9), yaw, SIGN,
                                ((0.85, 0.1, 0.1), (0.1, 0.3, 0.85), (0.95, 0.8, 0.1))[rng.integers(3)]))
    # Perceptual aliasing: some street sides copy the facades, widths and
    # spacing of another side (heights vary a little), like repeated blocks.
    n_sides = len(sides)
    n_copy = int(round(town.repeat_fraction * n_sides))
    copies = rng.permutation(n_sides)[:n_copy] if n_sides > 1 else []
    for side_rec in sides:
        for bld in side_rec[7]:
            bld["facade"] = len(facades)
            facades.append(random_facade(rng))
    for k in copies:
        src = int(rng.integers(n_sides))
        if src == k:
            continue
        a, t, n, yaw, side, margin, usable, _ = sides[k]
        copied = []
        for bld in sides[src][7]:
            if bld["u"] + bld["width"] > usable:
                break
            copied.append(dict(bld, height=bld["height"] * float(rng.uniform(0.8, 1.2))))
        sides[k] = (a, t, n, yaw, side, margin, usable, copied)
    for a, t, n, yaw, side, margin, usable, blds in sides:
        for bld in blds:
            front = w / 2 + town.setback_m
            c = a + t * (margin + bld["u"] + bld["width"] / 2) + side * n * (front + bld["depth"] / 2)
            fac = facades[bld["facade"]]
            tag = len(solids)
            solids.append(Solid("building", (c[0], c[1], 0.0), (bld["width"], bld["depth"], bld["height"]), yaw,
                                WALL, fac.wall, facade=bld["facade"], tag=tag))
            gap_u = margin + bld["u"] + bld["width"]
            if rng.random() < town.fence_prob:
                p = a + t * (gap_u + 1.5) + side * n * (front + 0.2)
                solids.append(Solid("fence", (p[0], p[1], 0.0), (3.0, 0.08, 1.3), yaw, FENCE, (0.25, 0.2, 0.15)))
    pts = np.array([nodes[i, j] for i, j in loop_nodes(bx, by)])
    loop = Loop(chaikin(_densify_corners(pts, 8.0), 3))
    edge_list = [(nodes[ia, ja].copy(), nodes[ib, jb].copy()) for (ia, ja), (ib, jb) in edges]
    return World(solids=solids, facades=facades, loop=loop, lamps=np.array(lamps, dtype=np.float64).reshape(-1, 3),
                 kerbs=kerbs, street_width=w, extent=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                 edges=edge_list)


def _densify_corners(pts: np.ndarray, r: float) -> np.ndarray:
    """Insert points ``r`` metres before and after each corner so corner cutting stays local."""
    out = [pts[0]]
    for k in range(len(pts) - 1):
        a, b = pts[k], pts[k + 1]
        d = b - a
        length = np.linalg.norm(d)
        if length > 3 * r:
            out.append(a + d / length * r)
            out.append(b - d / length * r)
        out.append(b)
    return np.array(out)


def parked_cars(world: World, rng: np.random.Generator, prob: float) -> list[Solid]:
    """Parked cars along the kerbs, one chance per 7 m slot (``prob``)."""
    cars = []
    for a, b, side in world.kerbs:
        d = b - a
        length = float(np.linalg.norm(d))
        if length < 7:
            continue
        t = d / length
        n = np.array([-t[1], t[0]])
        yaw = float(np.arctan2(t[1], t[0]))
        for u in np.arange(3.5, length - 3.5, 7.0):
            if rng.random() >= prob:
                continue
            p = a + t * (u + rng.uniform(-1, 1)) + side * n * (world.street_width / 2 - 1.1)
            cars.extend(car_solids(p, yaw + (np.pi if rng.random() < 0.3 else 0.0), rng, tag=len(cars)))
    return cars


CAR_COLORS = ((0.8, 0.8, 0.82), (0.1, 0.1, 0.12), (0.6, 0.05, 0.05), (0.1, 0.2, 0.5), (0.5, 0.5, 0.52),
              (0.85, 0.75, 0.2))


def car_solids(p: np.ndarray, yaw: float, rng: np.random.Generator, tag: int) -> list[Solid]:
    """A car as two boxes (body + glass cabin) at map position ``p`` (xy, m)."""
    color = _rand_color(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 0.05)
    length = float(rng.uniform(3.8, 4.8))
    return [Solid("car", (p[0], p[1], 0.3), (length, 1.8, 0.85), yaw, CAR, color, tag=tag),
            Solid("car", (p[0], p[1], 1.15), (length * 0.5, 1.6, 0.55), yaw, GLASS, (0.08, 0.1, 0.12), tag=tag)]


def replace(solid: Solid, **changes) -> Solid:
    """A copy of ``solid`` with some fields changed."""
    return dataclasses.replace(solid, **changes)
