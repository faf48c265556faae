"""Load the Embedder and the PriorMap for the node, failing fast with file names.

Start-up order: both paths must exist, then the model is loaded (its
fingerprint and descriptor dim are needed), then the map is loaded and
checked against them; PriorMap.load names both values on a mismatch.
Nothing here imports torch unless ``backend == "torch"`` (the Embedder's
onnxruntime and tensorrt backends do not).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from distilvpr_core.errors import UserError


def load_embedder_and_map(map_path: str, model_path: str, backend: str,
                          engine_cache_dir: str = "", intra_op_threads: int = 0) -> tuple[Any, Any]:
    """(Embedder, PriorMap) for the node; raises UserError naming the file."""
    if not Path(map_path).is_dir():
        raise UserError(f"map_path {map_path!r}: no such map directory; build one with "
                        "'distilvpr map build' or fix the path")
    if not Path(model_path).is_file():
        raise UserError(f"model_path {model_path!r}: no such model file; export one with "
                        "'distilvpr export' or fix the path")
    from distilvpr_core.infer import load_embedder
    from distilvpr_core.mapdb import PriorMap

    options: dict[str, Any] = {}
    if backend == "tensorrt" and engine_cache_dir:
        options["cache_dir"] = engine_cache_dir
    if backend == "onnxruntime":
        options["intra_op_threads"] = intra_op_threads
    try:
        embedder = load_embedder(model_path, backend=backend, **options)
    except UserError:
        raise
    except Exception as exc:  # a corrupt file surfaces as the runtime's own error type
        raise UserError(f"model_path {model_path!r}: cannot be loaded with backend {backend!r}: "
                        f"{type(exc).__name__}: {exc}") from None
    prior_map = PriorMap.load(map_path, expect_fingerprint=embedder.fingerprint, expect_dim=embedder.dim)
    return embedder, prior_map
