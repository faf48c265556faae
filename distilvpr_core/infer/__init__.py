"""Inference: one ``Embedder`` interface over torch / ONNX Runtime / TensorRT.

``load_embedder`` imports only the chosen backend, so the ONNX Runtime and
TensorRT paths never import torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract
from .embedder import Embedder, l2_normalize
from ..foundation.preprocess import preprocess

BACKENDS = ("onnxruntime", "torch", "tensorrt")

__all__ = ["BACKENDS", "Embedder", "PreprocessContract", "l2_normalize", "load_embedder", "preprocess"]


def load_embedder(path: str | Path, backend: str = "onnxruntime", **options: Any) -> Embedder:
    """An Embedder for the model at ``path``.

    backend "onnxruntime": ``path`` is an exported ``.onnx``; options
    ``intra_op_threads``, ``providers``, ``max_batch``.
    backend "torch": ``path`` is a student checkpoint ``.pt``; options
    ``device`` ("cpu" | "cuda" | "cuda:N"), ``fp16`` (default: on for CUDA),
    ``cuda_graphs``, ``max_batch``.
    backend "tensorrt": ``path`` is an ``.onnx`` (engine built or reused from
    the cache) or an ``.engine`` with its ``.json`` sidecar; options
    ``precision``, ``cache_dir`` (engines and the timing cache), ``max_batch``,
    ``calib``, ``calib_traversal``, ``calib_count``.
    """
    if backend == "onnxruntime":
        from .ort_backend import OrtEmbedder
        return OrtEmbedder(path, **options)
    if backend == "torch":
        from .torch_backend import TorchEmbedder
        return TorchEmbedder(path, **options)
    if backend == "tensorrt":
        from .tensorrt.backend import TrtEmbedder
        return TrtEmbedder(path, **options)
    raise UserError(f"backend: unknown backend {backend!r}; valid: {list(BACKENDS)}")
