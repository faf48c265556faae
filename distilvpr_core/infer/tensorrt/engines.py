"""ONNX model -> cached TensorRT engine: the one function the backend and ``build-engine`` share."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...foundation.errors import UserError
from .calibration import CalibrationSource, source_digest
from ..model_meta import read_model_info
from .engine_cache import EngineCache, sha256_file
from .engine_key import DEFAULT_CALIB_BATCH, DEFAULT_WORKSPACE_MB, EngineKey, EngineSpec, GpuFacts, build_recipe


def default_cache_dir() -> Path:
    """$DISTILVPR_ENGINE_CACHE, else $XDG_CACHE_HOME/distilvpr/engines (~/.cache/...)."""
    env = os.environ.get("DISTILVPR_ENGINE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "distilvpr" / "engines"


@dataclass(frozen=True)
class EngineResult:
    """What :func:`ensure_engine` returns: the engine file, whether it was built now, why (``hit`` when
    reused) and its cache key."""
    engine: Path
    built: bool
    reason: str      # "hit" or why it was (re)built
    key: EngineKey


def ensure_engine(onnx_path: str | Path, precision: str = "fp16", cache_dir: str | Path | None = None,
                  batch: tuple[int, int, int] = (1, 1, 8), calib: CalibrationSource | None = None,
                  facts: GpuFacts | None = None, builder: Callable[..., bytes] | None = None,
                  workspace_mb: int = DEFAULT_WORKSPACE_MB, calib_batch: int = DEFAULT_CALIB_BATCH,
                  prune: bool = True, reject: str | None = None) -> EngineResult:
    """Reuse or build the engine for ``onnx_path`` on this GPU.

    ``facts``/``builder`` default to the real TensorRT (``trt_build``); tests
    inject them to exercise the cache without a GPU.  After a build, entries
    no request can reach any more are pruned (``EngineCache.prune``).  The
    INT8 calibration table is named after the engine key (a retrained model
    never inherits old scales) and its sha256 is recorded in the sidecar.
    ``reject``: sha256 of a cached engine TensorRT could not deserialise; it
    is rebuilt and replaced (``EngineCache.get_or_build``).
    """
    info = read_model_info(onnx_path)  # corrupt / no metadata -> UserError naming the file
    if info.precision != "fp32":
        raise UserError(f"{onnx_path}: is a {info.precision} ONNX Runtime model; build TensorRT "
                        "engines from the fp32 export (int8 comes from TensorRT calibration)")
    if precision == "int8" and calib is None:
        raise UserError("precision int8 needs calibration images: pass --calib DIR "
                        "(or a dataset root with --calib-traversal)")
    if precision == "int8" and calib is not None and calib.limit < calib_batch:
        raise UserError(f"INT8 calibration: {calib.limit} images is less than one calibration batch "
                        f"({calib_batch}); use at least {calib_batch} (--calib-count)")
    c = info.contract
    spec = EngineSpec(sha256_file(onnx_path), precision, (c.height, c.width), tuple(batch),
                      source_digest(calib) if (calib is not None and precision == "int8") else "")
    if facts is None or builder is None:
        from . import build as trt_build
        facts = facts or trt_build.current_facts()
        builder = builder or trt_build.build_engine
    cache = EngineCache(cache_dir or default_cache_dir())
    recipe = build_recipe(precision, workspace_mb, calib_batch)
    key = EngineKey(spec, facts, recipe)
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", facts.gpu_name).strip("_")
    timing = cache.root / f"timing-trt{facts.trt_version}-{gpu}-sm{''.join(map(str, facts.compute_capability))}.cache"
    stem = Path(onnx_path).stem
    onnx_resolved = str(Path(onnx_path).resolve())
    extra: dict[str, Any] = {"contract": c.to_dict(), "fingerprint": info.fingerprint,
                             "onnx": onnx_resolved}
    calib_table = cache.paths(key, stem)[0].with_suffix(".calib")

    def build() -> bytes:
        blob = builder(onnx_path, spec, c, recipe=recipe, timing_cache=timing, calib=calib,
                       calib_cache=calib_table if precision == "int8" else None)
        if precision == "int8":
            extra["calib_table"] = calib_table.name
            extra["calib_table_sha256"] = sha256_file(calib_table) if calib_table.is_file() else None
        return blob

    path, built, why = cache.get_or_build(key, build, stem=stem, extra=extra, reject=reject)
    if built and prune:
        cache.prune(facts, {onnx_resolved: spec.onnx_sha256})
    return EngineResult(path, built, why, key)
