"""ONNX model -> cached TensorRT engine: the one function the backend and ``build-engine`` share."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..infer.calibration import CalibrationSource, source_digest
from ..infer.model_meta import read_model_info
from .engine_cache import EngineCache, EngineKey, EngineSpec, GpuFacts, sha256_file


def default_cache_dir() -> Path:
    """$DISTILVPR_ENGINE_CACHE, else $XDG_CACHE_HOME/distilvpr/engines (~/.cache/...)."""
    env = os.environ.get("DISTILVPR_ENGINE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "distilvpr" / "engines"


@dataclass(frozen=True)
class EngineResult:
    engine: Path
    built: bool
    reason: str      # "hit" or why it was (re)built
    key: EngineKey


def ensure_engine(onnx_path: str | Path, precision: str = "fp16", cache_dir: str | Path | None = None,
                  batch: tuple[int, int, int] = (1, 1, 8), calib: CalibrationSource | None = None,
                  facts: GpuFacts | None = None,
                  builder: Callable[..., bytes] | None = None) -> EngineResult:
    """Reuse or build the engine for ``onnx_path`` on this GPU.

    ``facts``/``builder`` default to the real TensorRT (``trt_build``); tests
    inject them to exercise the cache without a GPU.
    """
    info = read_model_info(onnx_path)  # corrupt / no metadata -> UserError naming the file
    if info.precision != "fp32":
        raise UserError(f"{onnx_path}: is a {info.precision} ONNX Runtime model; build TensorRT "
                        "engines from the fp32 export (int8 comes from TensorRT calibration)")
    if precision == "int8" and calib is None:
        raise UserError("precision int8 needs calibration images: pass --calib DIR "
                        "(or a dataset root with --calib-traversal)")
    c = info.contract
    spec = EngineSpec(sha256_file(onnx_path), precision, (c.height, c.width), tuple(batch),
                      source_digest(calib) if (calib is not None and precision == "int8") else "")
    if facts is None or builder is None:
        from . import trt_build
        facts = facts or trt_build.current_facts()
        builder = builder or trt_build.build_engine
    cache = EngineCache(cache_dir or default_cache_dir())
    key = EngineKey(spec, facts)
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", facts.gpu_name).strip("_")
    timing = cache.root / f"timing-trt{facts.trt_version}-{gpu}-sm{''.join(map(str, facts.compute_capability))}.cache"
    stem = Path(onnx_path).stem
    extra: dict[str, Any] = {"contract": c.to_dict(), "fingerprint": info.fingerprint,
                             "onnx": str(Path(onnx_path).resolve())}

    def build() -> bytes:
        return builder(onnx_path, spec, c, timing_cache=timing, calib=calib,
                       calib_cache=cache.root / f"{stem}-{spec.calib_digest[:20]}.calib")

    path, built, why = cache.get_or_build(key, build, stem=stem, extra=extra)
    return EngineResult(path, built, why, key)
