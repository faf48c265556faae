"""Settings of ``distilvpr map build`` (YAML + ``--set``, checked strictly)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import ConfigError, spec
from ..foundation.errors import UserError


@dataclass
class KeyframeConfig:
    """When a frame becomes a map keyframe (see mapdb.keyframes)."""

    min_distance_m: float = field(default=1.0, metadata=spec(
        "path length travelled since the last keyframe, metres (0 = off)", ge=0))
    min_interval_s: float = field(default=0.0, metadata=spec(
        "time since the last keyframe, seconds (0 = off)", ge=0))
    combine: str = field(default="or", metadata=spec(
        "'or': either enabled criterion makes a keyframe; 'and': all must hold", choices=["or", "and"]))


@dataclass
class IndexConfig:
    """Which FAISS index the map uses; params override that type's defaults."""

    type: str = field(default="flat", metadata=spec(
        "flat (exact, up to ~1M keyframes), hnsw or ivfpq (larger maps)", choices=["flat", "hnsw", "ivfpq"]))
    params: dict[str, int] = field(default_factory=dict, metadata=spec(
        "hnsw: M, ef_construction, ef_search; ivfpq: nlist, m, nbits, nprobe, rerank"))

    def __post_init__(self) -> None:
        from .index import resolve_params
        try:
            resolve_params(self.type, self.params)
        except UserError as exc:
            raise ConfigError(f"index: {exc}") from None


@dataclass
class DepthConfig:
    """How keyframe features get their 3D points from the mapping drive's LiDAR
    (mapdb/points3d.py, mapdb/depth_aggregate.py)."""

    frames: int = field(default=8, metadata=spec(
        "also project the scans of the frames within +-N of a keyframe (their poses known) into it, "
        "with an occlusion test; 0 = the keyframe's own scan only (8: chosen on validation drives, "
        "docs/local_features.md)", ge=0, le=50))
    prefer: bool = field(default=True, metadata=spec(
        "extract twice the feature budget and keep the features with a 3D point first"))


@dataclass
class MapBuildConfig:
    """Everything ``distilvpr map build`` needs besides its inputs and model."""

    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    sync_tolerance_s: float = field(default=0.05, metadata=spec(
        "bag input: an image takes the pose with the nearest stamp if within this many seconds", gt=0))
    batch_size: int = field(default=32, metadata=spec("images embedded per batch", ge=1))
