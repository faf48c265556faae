"""The one ``Embedder`` interface: camera frames in, L2-normalised descriptors out.

A backend only implements ``_forward`` (network input -> raw descriptors);
preprocessing, batching and normalisation live here once, so every backend
answers identically up to its numerics.
"""
from __future__ import annotations

import abc

import numpy as np

from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract
from ..foundation.preprocess import ImageInput, preprocess


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of float32 [N, D] scaled to unit L2 norm (an all-zero row stays zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class Embedder(abc.ABC):
    """Base of every backend; see docs/contracts.md.

    Attributes: ``contract`` (PreprocessContract), ``fingerprint`` (sha256 hex
    of the student weights), ``dim`` (D), ``backend`` (name), ``max_batch``
    (larger inputs are split into chunks of this size).
    """
    backend: str = ""

    def __init__(self, contract: PreprocessContract, fingerprint: str, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise UserError(f"max_batch: must be >= 1, got {max_batch}")
        self.contract = contract
        self.fingerprint = fingerprint
        self.max_batch = int(max_batch)

    @property
    def dim(self) -> int:
        return self.contract.descriptor_dim

    def embed(self, images: ImageInput) -> np.ndarray:
        """uint8 [H,W,3] | [N,H,W,3] | list (mono [H,W] and RGBA ok), any size -> float32 [N, D], rows L2-normalised."""
        return self.embed_preprocessed(preprocess(images, self.contract))

    def embed_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Network input float32 [N, 3, H, W] (from :func:`preprocess`) -> float32 [N, D], L2-normalised."""
        c = self.contract
        if x.ndim != 4 or x.shape[1:] != (3, c.height, c.width) or x.dtype != np.float32:
            raise UserError(f"input: expected float32 [N, 3, {c.height}, {c.width}], "
                            f"got {x.dtype} {list(x.shape)}")
        if len(x) <= self.max_batch:
            raw = self._forward(x)
        else:
            raw = np.concatenate([self._forward(x[i:i + self.max_batch])
                                  for i in range(0, len(x), self.max_batch)])
        return l2_normalize(raw)

    @abc.abstractmethod
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W] with B <= max_batch -> raw float32 [B, D]."""

    def close(self) -> None:
        """Release backend resources (sessions, GPU memory); idempotent."""

    def __enter__(self) -> "Embedder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backend={self.backend!r}, dim={self.dim}, "
                f"input_size={self.contract.input_size}, fingerprint={self.fingerprint[:12]}...)")
