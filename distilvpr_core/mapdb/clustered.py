"""Synthetic clustered unit descriptors for benchmarks and tests.

Real place descriptors are clustered (neighbouring keyframes look alike) and
queries are revisits: noisy copies of mapped places.  Uniform random vectors
would make every ANN index look worse and every exact search look the same,
so the map benchmark uses this model instead.
"""
from __future__ import annotations

import numpy as np

_CHUNK = 65_536  # rows generated at a time: bounds the float32 temporaries


def clustered_descriptors(n: int, dim: int, clusters: int, spread: float = 0.5,
                          seed: int = 0) -> np.ndarray:
    """float32 [n, dim] unit rows: random cluster centres plus isotropic noise.

    spread: noise norm relative to the (unit) centre; 0.5 gives a typical
    within-cluster cosine of ~0.8.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    scale = np.float32(spread / np.sqrt(dim))
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        block = out[a:b]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        block *= scale
        block += centres[rng.integers(0, clusters, b - a)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def revisit_queries(x: np.ndarray, q: int, noise: float = 0.3, seed: int = 1) -> np.ndarray:
    """float32 [q, dim] unit queries: random rows of ``x`` perturbed by ``noise`` (relative norm)."""
    rng = np.random.default_rng(seed)
    rows = x[rng.choice(x.shape[0], q, replace=False)]
    out = rows + rng.standard_normal(rows.shape, dtype=np.float32) * np.float32(noise / np.sqrt(x.shape[1]))
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
