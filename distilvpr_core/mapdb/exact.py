"""Exact inner-product top-k over a contiguous float32 matrix.

One query: FAISS's SIMD kernel ``fvec_inner_products_ny`` run directly on
the map's rows (no copy), split across a few threads for large maps (the
SWIG call releases the GIL), then a sampled-threshold top-k (topk.py).  On
this machine that kernel reads the matrix 1.5-2.5x faster than numpy's
OpenBLAS sgemv ``X @ q``, while FAISS's own ``IndexFlatIP.search`` adds a
per-row heap and is slower than both.  A batch: one numpy sgemm per chunk of
queries, ~2x faster here than FAISS's batched flat search.  All measured by
``distilvpr bench map`` (docs/map.md).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from .topk import topk

# Below this many rows one thread is faster than handing work to the pool.
_PARALLEL_MIN_ROWS = 1 << 18
_MAX_THREADS = 4
_pool: ThreadPoolExecutor | None = None


def _threads() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_MAX_THREADS, cpus))


def inner_products(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """float32 [N] = vectors float32 [N, D] (C-contiguous) @ query float32 [D]."""
    global _pool
    n, d = vectors.shape
    out = np.empty(n, np.float32)
    q = np.ascontiguousarray(query, dtype=np.float32)
    if not vectors.flags.c_contiguous or vectors.dtype != np.float32:
        return np.asarray(vectors @ q, dtype=np.float32)

    def part(a: int, b: int) -> None:
        faiss.fvec_inner_products_ny(faiss.swig_ptr(out[a:b]), faiss.swig_ptr(q),
                                     faiss.swig_ptr(vectors[a:b]), d, b - a)
    threads = _threads()
    if n < _PARALLEL_MIN_ROWS or threads == 1:
        if n:
            part(0, n)
        return out
    if _pool is None:  # created on first use: no threads at import time
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="distilvpr-ip")
    bounds = [int(v) for v in np.linspace(0, n, threads + 1)]
    list(_pool.map(lambda ab: part(*ab), zip(bounds[:-1], bounds[1:])))
    return out

# Score matrices of batched exact search are capped at this many bytes.
_GEMM_BYTES = 256 << 20


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                 masks: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (FAISS kernel for one query, numpy sgemm for several).

    vectors float32 [N, D]; queries float32 [Q, D]; masks: per query a bool [N]
    of allowed rows or None.  Returns (rows int64 [Q, k], scores float32 [Q, k]),
    -1 / -inf padded.
    """
    q = queries.shape[0]
    n = vectors.shape[0]
    rows = np.full((q, k), -1, np.int64)
    scores = np.full((q, k), -np.inf, np.float32)
    if n == 0:
        return rows, scores
    chunk = max(1, _GEMM_BYTES // (4 * n))
    for a in range(0, q, chunk):
        block = queries[a:a + chunk]
        # Several queries: one sgemm [N, Qc], transposed so each query's scores are contiguous.
        s = inner_products(vectors, block[0])[None] if block.shape[0] == 1 \
            else np.ascontiguousarray((vectors @ block.T).T)
        for j in range(block.shape[0]):
            sj = s[j]
            mask = masks[a + j]
            if mask is not None:
                sj[~mask] = -np.inf
            r, v = topk(sj, k)
            rows[a + j, :r.shape[0]] = r
            scores[a + j, :v.shape[0]] = v
    return rows, scores


def subset_search(vectors: np.ndarray, query: np.ndarray, k: int,
                   allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the allowed rows only. Returns rows/scores [k] padded."""
    idx = np.flatnonzero(allowed)
    rows = np.full(k, -1, np.int64)
    scores = np.full(k, -np.inf, np.float32)
    if idx.shape[0]:
        r, v = topk(vectors[idx] @ query, k)
        rows[:r.shape[0]], scores[:v.shape[0]] = idx[r], v
    return rows, scores
