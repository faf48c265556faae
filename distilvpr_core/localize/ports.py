"""What the localization engine needs from the things plugged into it.

The engine, the geometric verifier and the loader type their collaborators
with these protocols instead of ``Any``, so a reader (and a type checker)
sees what crosses the seam.  ``infer.Embedder`` backends and
``mapdb.PriorMap`` satisfy them; so can a test double with the same shape.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..features.types import Features, Intrinsics
from ..foundation.contract import PreprocessContract
from ..mapdb.priormap import SearchResult


@runtime_checkable
class PlaceEmbedder(Protocol):
    """Image -> place descriptor: ``embed(uint8 [H, W, 3] or a list) -> float32 [B, dim]``,
    L2-normalised rows."""

    backend: str
    fingerprint: str
    contract: PreprocessContract

    @property
    def dim(self) -> int: ...

    def embed(self, images: Any) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class KeyframeFeatures(Protocol):
    """Local features of the map's keyframes (row = keyframe id); ``points`` only
    on maps built with depth (3D points in the map frame, NaN where none)."""

    camera: Intrinsics
    kind: str
    #: The camera's pose on base_link, float64 [7] x y z qx qy qz qw, or None without points.
    T_base_camera: np.ndarray | None

    @property
    def has_points(self) -> bool: ...

    def get(self, kid: int) -> Features: ...

    def points(self, kid: int) -> np.ndarray | None: ...

    def append(self, feats: Features | None, points: np.ndarray | None = None) -> None: ...


@runtime_checkable
class PlaceMap(Protocol):
    """The prior map as the engine uses it: search, online add, keyframe metadata."""

    @property
    def contract(self) -> dict[str, Any]: ...

    @property
    def stamps_ns(self) -> np.ndarray: ...

    @property
    def poses(self) -> np.ndarray: ...

    @property
    def features(self) -> KeyframeFeatures | None: ...

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, query_stamp_ns: Any = None,
               exclude_within_s: float = 0.0, exclude_last_n: int = 0,
               center_xyz: Any = None, radius_m: float | None = None) -> SearchResult: ...

    def add(self, desc: np.ndarray, stamps_ns: Any, poses: Any, source: str,
            frame_index: Any) -> np.ndarray: ...

    def save(self, path: str | Path, overwrite: bool = True) -> Path: ...


__all__ = ["KeyframeFeatures", "PlaceEmbedder", "PlaceMap"]
