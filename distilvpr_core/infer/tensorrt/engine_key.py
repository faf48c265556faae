"""What identifies a TensorRT engine: the request (``EngineSpec``), the build machine
(``GpuFacts``) and how the builder is driven (``BuildRecipe``), hashed together as
``EngineKey``.  engine_cache.py stores and serves engines under this key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from ...foundation.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")
# Bump whenever build.py changes what it asks the builder for: old engines are then
# never served again (and pruned).  3: the GeM head is pinned to fp32 by position.
RECIPE_VERSION = 3
# One default for the backend and ``build-engine``: the calibration set is part of the
# engine key, so two defaults would mean CLI-built INT8 engines are never reused.
DEFAULT_CALIB_COUNT = 128
DEFAULT_CALIB_BATCH = 8
DEFAULT_WORKSPACE_MB = 1024


@dataclass(frozen=True)
class GpuFacts:
    """The build machine: TensorRT version, GPU name, compute capability (major, minor),
    streaming multiprocessor count and total device memory (MiB; 0 = unknown)."""
    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    sm_count: int = 0
    total_memory_mib: int = 0

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability))
        return (f"TensorRT {self.trt_version} on {self.gpu_name!r} (compute {cc}, "
                f"{self.sm_count} SMs, {self.total_memory_mib} MiB)")


@dataclass(frozen=True)
class BuildRecipe:
    """How trt_build drives the builder; part of the key so a changed builder never serves old engines.

    ``tf32``: TF32 tactics allowed (off for fp32 engines, so "fp32" means fp32
    on Ampere and later); ``pool_fp32``: GeM pooling layers pinned to fp32;
    ``calib_batch``: INT8 calibration batch (0 for fp engines).
    """
    version: int
    workspace_mb: int
    tf32: bool
    pool_fp32: bool
    calib_batch: int


def build_recipe(precision: str, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 calib_batch: int = DEFAULT_CALIB_BATCH) -> BuildRecipe:
    """The recipe trt_build uses for ``precision``."""
    if workspace_mb < 1 or calib_batch < 1:
        raise UserError(f"workspace_mb and calib_batch must be >= 1, got {workspace_mb}, {calib_batch}")
    low = precision != "fp32"
    return BuildRecipe(RECIPE_VERSION, int(workspace_mb), tf32=low, pool_fp32=low,
                       calib_batch=int(calib_batch) if precision == "int8" else 0)


@dataclass(frozen=True)
class EngineSpec:
    """What is asked for: model bytes, precision, input H x W, batch (min, opt, max), int8 calibration."""
    onnx_sha256: str
    precision: str
    input_hw: tuple[int, int]
    batch: tuple[int, int, int] = (1, 1, 8)
    calib_digest: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"precision: must be one of {list(PRECISIONS)}, got {self.precision!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise UserError(f"batch (min, opt, max) must satisfy 1 <= min <= opt <= max, got {self.batch}")
        if self.precision == "int8" and not self.calib_digest:
            raise UserError("precision int8 needs calibration data (--calib DIR or a dataset traversal)")
        if self.precision != "int8" and self.calib_digest:
            object.__setattr__(self, "calib_digest", "")  # calibration cannot change an fp engine


@dataclass(frozen=True)
class EngineKey:
    """Spec, GPU facts and build recipe of one engine; ``digest()`` is the sha256 of their JSON (sorted
    keys) that names the engine in the cache."""
    spec: EngineSpec
    facts: GpuFacts
    recipe: BuildRecipe | None = None  # None: build_recipe(spec.precision)

    def __post_init__(self) -> None:
        if self.recipe is None:
            object.__setattr__(self, "recipe", build_recipe(self.spec.precision))

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self.spec), **asdict(self.facts), "recipe": asdict(self.recipe)}
        return json.loads(json.dumps(d))  # tuples -> lists, as read back from JSON

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
