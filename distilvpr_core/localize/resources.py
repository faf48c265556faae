"""Load the Embedder and the PriorMap together, failing fast with file names.

The one loader for the node, the offline evaluation and the benchmarks.
Start-up order: both paths must exist, then the model is loaded (its
fingerprint, descriptor dim and preprocessing contract are needed), then the
map is loaded and checked against all three; a mismatch names both values.
Nothing here imports torch unless ``backend == "torch"``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..foundation.contract import check_contract
from ..foundation.errors import UserError
from ..infer import load_embedder
from ..mapdb import PriorMap
from .ports import PlaceEmbedder


def load_model_and_map(map_path: str | Path, model_path: str | Path, backend: str = "onnxruntime",
                       engine_cache_dir: str = "", intra_op_threads: int = 0,
                       names: tuple[str, str] = ("map_path", "model_path")) -> tuple[PlaceEmbedder, PriorMap]:
    """(Embedder, PriorMap); raises UserError naming the file and the setting.

    ``names``: how the two paths are called where the user gave them (node
    parameters by default; the CLI passes ``("--map", "--model")``).
    """
    map_name, model_name = names
    if not Path(map_path).is_dir():
        raise UserError(f"{map_name} {str(map_path)!r}: no such map directory; build one with "
                        "'distilvpr map build' or fix the path")
    if not Path(model_path).is_file():
        raise UserError(f"{model_name} {str(model_path)!r}: no such model file; export one with "
                        "'distilvpr export' or fix the path")
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
        raise UserError(f"{model_name} {str(model_path)!r}: cannot be loaded with backend {backend!r}: "
                        f"{type(exc).__name__}: {exc}") from None
    try:
        prior_map = PriorMap.load(map_path, expect_fingerprint=embedder.fingerprint, expect_dim=embedder.dim)
        check_contract(prior_map.contract, embedder.contract.to_dict(), str(map_path), str(model_path))
    except BaseException:
        embedder.close()
        raise
    return embedder, prior_map

