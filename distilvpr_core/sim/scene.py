"""Triangulate solids into one trimesh + per-face attributes, ray-cast with Embree.

Triangles come from ``trimesh.creation``; all intersection work is done by
Embree through ``embreex`` (the backend of ``trimesh.ray.ray_pyembree``),
called directly so a frame does not pay for hit locations it never uses.
Nothing here intersects rays with geometry by hand.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any

import numpy as np
import trimesh
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from .world import WALL, Solid

def _proto(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """Plain arrays of a unit primitive standing on z = 0 (no TrackedArray overhead)."""
    v = np.array(mesh.vertices, dtype=np.float64)
    v[:, 2] += 0.5
    return v, np.array(mesh.faces, dtype=np.int64)


_BOX = _proto(trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
_SPHERE = _proto(trimesh.creation.icosphere(subdivisions=1, radius=0.5))


@dataclass
class Scene:
    """A triangulated world.

    ``albedo`` float32 [F, 3] linear RGB, ``material`` int16 [F],
    ``facade`` int32 [F] (-1 unless a building wall), ``tangent`` float32 [F, 3]
    horizontal unit vector along a wall, ``u0`` float32 [F] wall start along
    the tangent, ``z0`` float32 [F] wall bottom (m), ``normal`` float32 [F, 3].
    """
    mesh: trimesh.Trimesh
    albedo: np.ndarray
    material: np.ndarray
    facade: np.ndarray
    tangent: np.ndarray
    u0: np.ndarray
    z0: np.ndarray
    normal: np.ndarray
    embree: Any                 # embreex EmbreeScene over vertices - origin (float32)
    origin: np.ndarray          # float64 [3]; keeps float32 coordinates small and precise

    def cast(self, origins: np.ndarray, dirs: np.ndarray,
             max_dist: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """First hit of each ray (map frame, unit ``dirs``; ``origins`` [R, 3] or one shared point [3]).

        Returns ``(face int64 [R] (-1 = miss), distance float64 [R] in metres, inf on a miss)``.
        """
        o = _local(origins, self.origin, len(dirs))
        d = np.ascontiguousarray(dirs, dtype=np.float32)
        dists = None if max_dist is None else np.full(len(o), max_dist, dtype=np.float32)
        res = self.embree.run(o, d, dists=dists, output=1)
        face = res["primID"].astype(np.int64)
        dist = np.where(face >= 0, res["tfar"].astype(np.float64), np.inf)
        return face, dist

    def occluded(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """bool [R]: does each ray hit anything (shadow rays)."""
        if len(origins) == 0:
            return np.zeros(0, dtype=bool)
        o = _local(origins, self.origin, len(dirs))
        return self.embree.run(o, np.ascontiguousarray(dirs, dtype=np.float32), query="OCCLUDED") >= 0


def _local(origins: np.ndarray, origin: np.ndarray, n: int) -> np.ndarray:
    """float32 [n, 3] ray origins relative to the scene origin; ``origins`` is [n, 3] or one point [3]."""
    origins = np.asarray(origins)
    if origins.ndim == 1:
        return np.ascontiguousarray(np.broadcast_to((origins - origin).astype(np.float32), (n, 3)))
    return (origins - origin).astype(np.float32)


def build_scene(solids: list[Solid]) -> Scene:
    """Triangulate ``solids`` (map frame) and build the Embree acceleration structure."""
    verts, faces, albedo, material, facade, u0, z0, owner = [], [], [], [], [], [], [], []
    offset = 0
    for k, s in enumerate(solids):
        pv, pf = _SPHERE if s.shape == "sphere" else _BOX
        c, sz = np.asarray(s.center), np.asarray(s.size)
        cy, sy = np.cos(s.yaw), np.sin(s.yaw)
        rot = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        v = (pv * sz) @ rot.T + c
        f = pf + offset
        offset += len(v)
        verts.append(v)
        faces.append(f)
        nf = len(f)
        albedo.append(np.tile(np.asarray(s.color, dtype=np.float32), (nf, 1)))
        material.append(np.full(nf, s.material, dtype=np.int16))
        is_wall = s.material == WALL
        facade.append(np.full(nf, s.facade if is_wall else -1, dtype=np.int32))
        z0.append(np.full(nf, c[2], dtype=np.float32))
        owner.append(np.full(nf, k, dtype=np.int64))
        # Facade u starts at the left corner of each wall seen from outside;
        # computed below from the wall's own vertices.
        u0.append(np.zeros(nf, dtype=np.float32))
    mesh = trimesh.Trimesh(vertices=np.vstack(verts), faces=np.vstack(faces), process=False)
    # np.array (not astype) drops trimesh's TrackedArray subclass, which is slow in hot loops.
    normal = np.array(mesh.face_normals, dtype=np.float32)
    tangent = np.cross(np.array([0.0, 0.0, 1.0], dtype=np.float32), normal)
    tn = np.linalg.norm(tangent, axis=1, keepdims=True)
    tangent = np.where(tn > 1e-3, tangent / np.maximum(tn, 1e-6), 0.0).astype(np.float32)
    fac = np.concatenate(facade)
    # Each wall = two triangles of the same solid with the same normal; its u0 is the
    # smallest projection of its vertices on the tangent.
    proj = np.einsum("fvk,fk->fv", np.array(mesh.vertices)[np.array(mesh.faces)], tangent).min(axis=1)
    u0a = np.concatenate(u0)
    wall_idx = np.nonzero(fac >= 0)[0]
    if len(wall_idx):
        key = np.round(normal[wall_idx] * 1000).astype(np.int64)
        group = np.concatenate(owner)[wall_idx] * 10_000_000 + (key[:, 0] + 1000) * 3000 + (key[:, 1] + 1000)
        _, inv = np.unique(group, return_inverse=True)
        gmin = np.full(inv.max() + 1, np.inf)
        np.minimum.at(gmin, inv, proj[wall_idx])
        u0a[wall_idx] = gmin[inv]
    origin = mesh.bounds.mean(axis=0)
    embree = rtcore_scene.EmbreeScene()
    TriangleMesh(scene=embree, vertices=(mesh.vertices - origin).astype(np.float32),
                 indices=mesh.faces.astype(np.int32))
    return Scene(mesh=mesh, albedo=np.vstack(albedo), material=np.concatenate(material), facade=fac,
                 tangent=tangent, u0=u0a, z0=np.concatenate(z0), normal=normal, embree=embree, origin=origin)


def with_dynamic(static: Scene, dynamic: Scene | None) -> Scene:
    """A scene whose rays see ``static`` plus a small per-frame ``dynamic`` scene (moving cars).

    Face ids of dynamic triangles follow the static ones; both Embree scenes
    are queried and the nearer hit wins.
    """
    if dynamic is None:
        return static
    return _Layered(static, dynamic)


class _Layered(Scene):
    def __init__(self, static: Scene, dynamic: Scene) -> None:
        self.mesh = static.mesh
        self._static, self._dynamic = static, dynamic
        self._n = len(static.material)
        for name in ("albedo", "material", "facade", "tangent", "u0", "z0", "normal"):
            setattr(self, name, np.concatenate([getattr(static, name), getattr(dynamic, name)]))
        self.embree, self.origin = static.embree, static.origin

    def cast(self, origins: np.ndarray, dirs: np.ndarray,
             max_dist: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        f1, d1 = self._static.cast(origins, dirs, max_dist)
        f2, d2 = self._dynamic.cast(origins, dirs, max_dist)
        nearer = d2 < d1
        return np.where(nearer, f2 + self._n, f1), np.where(nearer, d2, d1)

    def occluded(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        return self._static.occluded(origins, dirs) | self._dynamic.occluded(origins, dirs)
